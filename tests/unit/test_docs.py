"""The README and docs/: every relative link resolves inside the repository (a file, and a heading
of it for an anchor), the README stays a door (at most 250 lines), and the mkdocs site builds in
strict mode (a broken link or anchor fails it)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
INDENTED = re.compile(r"^(?: {4}|\t).*$", re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def prose(text: str) -> str:
    """The text without code: fenced and indented blocks and inline code spans."""
    return CODE_SPAN.sub("", INDENTED.sub("", FENCE.sub("", text)))


def slug(heading: str) -> str:
    """GitHub's and mkdocs' anchor of a heading: lowercase, only word characters, spaces and
    hyphens kept, spaces to hyphens."""
    text = re.sub(r"[^\w\s-]", "", heading.replace("`", "").strip().lower())
    return re.sub(r"\s", "-", text)


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(prose(page.read_text(encoding="utf-8"))):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")  # GitHub numbers a repeated heading
    return out


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """Each relative link of ``page`` that names no file under ``root``, or no heading of it."""
    problems = []
    for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:, ...
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.is_relative_to(root.resolve()) or not dest.exists():
            problems.append(f"{page.name}: {target}: no such file in the repository")
        elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
            problems.append(f"{page.name}: {target}: no heading '#{anchor}' in {dest.name}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(page):
    assert broken_links(page) == []


def test_link_checker_reports_broken_links(tmp_path):
    (tmp_path / "other.md").write_text("# A heading\n\ntext\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n[fine](other.md#a-heading) [self](#title) [web](https://example.org/x)\n"
        "[gone](missing.md) [bad anchor](other.md#no-such-heading) [out](../elsewhere.md)\n\n"
        "    [in a code block](missing.md)\n"
    )
    problems = broken_links(page, root=tmp_path)
    assert len(problems) == 3, problems
    assert "missing.md" in problems[0]
    assert "no-such-heading" in problems[1]
    assert "../elsewhere.md" in problems[2]


def test_slug():
    assert slug("Each paper's paper budget on a GPU cluster") == (
        "each-papers-paper-budget-on-a-gpu-cluster"
    )
    assert slug("1.7 Convolutional leaves") == "17-convolutional-leaves"
    assert slug("Fixing keys: --set") == "fixing-keys---set"


def test_readme_is_a_door():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= 250, f"README.md has {lines} lines; move the detail into docs/"


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None,
    reason="mkdocs is not installed (pip install -e '.[dev]' installs it)",
)
def test_mkdocs_builds_strict(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict",
         "-f", str(ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
