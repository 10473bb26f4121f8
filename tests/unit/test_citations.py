"""Every citation in the repository resolves inside it.

Comments, docstrings and docs cite the papers' specifications as ``docs/specs/<paper>.md`` or
``docs/specs/<paper>.md#<anchor>``. This test fails, naming file:line, on
(a) a ``docs/<...>.md`` citation (or a relative Markdown link to a ``.md`` page) whose file does not
    exist or whose anchor is not the slug of one of that file's headings;
(b) any path into the developers' notes folder beside the repository (``..`` then ``/shared``);
(c) the old citation forms of those notes: "spec <number>", "reference <name>.md", and
    ``spvae.md``, ``vlae.md``, ``hyperspherical.md``, ``hierarchical.md`` not written as
    ``docs/specs/<name>.md``.
"""

from __future__ import annotations

import re
import subprocess
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".cfg"}
NAMES = {"Makefile"}
SPEC_PAGES = "spvae|vlae|hyperspherical|hierarchical"

DOCS_CITATION = re.compile(r"(?<![\w./-])docs/[\w./-]*?\.md(?:#[\w-]+)?")
MD_LINK = re.compile(r"\]\(([^)\s#]+\.md)(#[^)\s]*)?\)")  # [text](page.md#anchor), in .md files
OUTSIDE = ".." + "/shared"  # written in two pieces so this file does not cite it
SHARED = re.compile(re.escape(OUTSIDE))
OLD_SPEC = re.compile(r"\b[Ss]pec(?:\s+section)?\s+(?:\d|[\w-]+\.md\b)")
OLD_REFERENCE = re.compile(  # "reference vlae.md", "reference 11.3", "reference sec. 4", ...
    r"\b[Rr]eference(?:'s)?:?\s+(?:(?:sec\.|sections?|switch(?:es)?)\s*)?(?:\d|[\w-]+\.md\b|README\b)"
)
PAGE = re.compile(rf"[\w./-]*\b(?:{SPEC_PAGES})\.md")
TABLE_FILE = re.compile(rf"(?:tables\W{{1,5}}|folder )(?:{SPEC_PAGES})\.md")
"""A sweep's tables are written as <storage>/tables/<paper>.md (results/tables.py): those file
names, and the error message about their folder, are outputs, not citations."""
SECTIONS = re.compile(r",? sections? (\d+(?:\.\d+)?(?:(?:,| and|-) ?\d+(?:\.\d+)?)*)")
""""docs/specs/vlae.md, sections 7, 10 and 11": each number must be a numbered heading's."""


def github_slug(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, drop what is not a word character, space or
    hyphen, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def mkdocs_slug(heading: str) -> str:
    """Python-Markdown's toc slugify (mkdocs' default): ASCII only, runs of spaces and hyphens
    become one hyphen. Both forms are accepted: they agree on plain ASCII headings."""
    text = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(markdown: str) -> set[str]:
    """The anchors of a Markdown page's ATX headings (outside fenced code blocks)."""
    found, fenced = set(), False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading and not fenced:
            found |= {github_slug(heading[1]), mkdocs_slug(heading[1])}
    return found


def heading_numbers(markdown: str) -> set[str]:
    """The numbers of a page's numbered headings: "## 3. Data" and "### 3.1 Context" give 3, 3.1."""
    return set(re.findall(r"^#{1,6}\s+(\d+(?:\.\d+)*)\.?\s", markdown, flags=re.M))


def check_target(root: Path, target: Path, anchor: str) -> str | None:
    """Why ``target`` (+ ``#anchor``) does not resolve, or None."""
    if not target.is_file():
        return f"{target.relative_to(root) if target.is_relative_to(root) else target} is missing"
    if anchor and anchor not in anchors(target.read_text(encoding="utf-8")):
        return f"no heading with anchor #{anchor} in {target.relative_to(root)}"
    return None


def scan(path: str, text: str, root: Path = ROOT) -> list[str]:
    """The broken or outside citations of one file's text, as 'path:line: problem'."""
    problems = []
    is_markdown = path.endswith(".md")
    here = (root / path).parent
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{path}:{number}"
        resolved = []  # spans of spec-page citations that resolve to a path in the repository
        for m in DOCS_CITATION.finditer(line):
            cited, _, anchor = m[0].rstrip(".").partition("#")
            problem = check_target(root, root / cited, anchor)
            sections = SECTIONS.match(line, m.end()) if not anchor else None
            if sections and not problem:
                numbers = heading_numbers((root / cited).read_text(encoding="utf-8"))
                missing = set(re.findall(r"\d+(?:\.\d+)?", sections[1])) - numbers
                if missing:
                    problem = f"no section {', '.join(sorted(missing))} in {cited}"
            if problem:
                problems.append(f"{where}: {m[0]}: {problem}")
            resolved.append(m.span())
        if is_markdown:
            for m in MD_LINK.finditer(line):
                if "://" in m[1] or m[1].startswith("docs/"):
                    continue  # a web address, or checked above
                target = (here / m[1]).resolve()
                problem = check_target(root, target, (m[2] or "#")[1:])
                if problem:
                    problems.append(f"{where}: {m[1]}{m[2] or ''}: {problem}")
                resolved.append(m.span(1))  # a link to a page of that name is no old citation
        if SHARED.search(line):
            problems.append(f"{where}: cites {OUTSIDE}, which is outside the repository")
        for pattern in (OLD_SPEC, OLD_REFERENCE):
            for m in pattern.finditer(line):
                problems.append(f"{where}: old citation {m[0]!r}: cite docs/specs/<paper>.md#...")
        for m in PAGE.finditer(line):
            # a path to a page of that name that exists (relative to the file, or to docs/ as
            # in mkdocs.yml's nav) is no old citation
            bases = (here, root / "docs", root)
            if any((base / m[0]).is_file() for base in bases):
                continue
            if any(t.end() == m.end() for t in TABLE_FILE.finditer(line)):
                continue
            if not any(start <= m.start() and m.end() <= end for start, end in resolved):
                if not any(m[0] in p for p in problems if p.startswith(where + ":")):
                    problems.append(f"{where}: {m[0]!r}: cite it as docs/specs/<paper>.md#<anchor>")
    return problems


def tracked_files(root: Path = ROOT) -> list[str]:
    """The files git tracks or would track (untracked ones not ignored), of the scanned kinds."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted(
        {
            p
            for p in out.splitlines()
            if (Path(p).suffix in SUFFIXES or Path(p).name in NAMES) and (root / p).is_file()
        }
    )


def test_every_citation_resolves_inside_the_repository():
    # Only this file is left out: its patterns, messages and examples are the very forms it
    # looks for (a broken citation must appear here for the scanner's own test to feed it).
    this = str(Path(__file__).resolve().relative_to(ROOT))
    problems = []
    for path in tracked_files():
        if path == this:
            continue
        problems += scan(path, (ROOT / path).read_text(encoding="utf-8", errors="replace"))
    assert not problems, f"{len(problems)} citations do not resolve:\n" + "\n".join(problems)


def test_the_scanner_reports_broken_citations(tmp_path):
    docs = tmp_path / "docs" / "specs"
    docs.mkdir(parents=True)
    page = "spvae.md"
    (docs / page).write_text(
        "# SPVAE\n\n## 3. Data and preprocessing\n\n### 3.1 Grey\n\n```\n## 9. No\n```\n"
    )
    good = [
        f"# docs/specs/{page}#3-data-and-preprocessing",
        f"see docs/specs/{page}, and docs/specs/{page}#spvae.",
        f"(docs/specs/{page}, sections 3 and 3.1)",
        f'assert (tmp_path / "tables" / "{page}").is_file()',  # a table file, no citation
    ]
    assert scan("models/x.py", "\n".join(good), tmp_path) == []
    assert scan("docs/index.md", f"[data](specs/{page}#3-data-and-preprocessing)", tmp_path) == []
    bad = [
        f"x  # docs/specs/{page}#4-training",  # no such heading
        f"y  # docs/specs/{page}#9-no",  # a heading in a code block is no heading
        "z  # docs/specs/vlae.md#1-backbone",  # no such file
        "see " + OUTSIDE + "/reference/README.md",
        "lr 1e-2 (spec 4)",
        "(reference hierarchical.md, 3.1)",
        "(reference sec. 4)",
        "(reference switch 4)",
        f"({page} section 6)",
        f"(docs/specs/{page}, sections 3, 4)",  # no section 4
    ]
    problems = scan("models/x.py", "\n".join(bad), tmp_path)
    for number in range(1, len(bad) + 1):
        assert any(p.startswith(f"models/x.py:{number}:") for p in problems), (number, problems)
    linked = scan("docs/index.md", f"[data](specs/{page}#4-training)", tmp_path)
    assert linked and "no heading" in linked[0]


def test_slugs_follow_the_github_and_mkdocs_rule():
    assert github_slug("3. Data and preprocessing") == "3-data-and-preprocessing"
    assert github_slug("1.4 MLP leaf VAEs") == "14-mlp-leaf-vaes"
    assert mkdocs_slug("1.4 MLP leaf VAEs") == "14-mlp-leaf-vaes"
