"""The direction of imports (DESIGN.md): sweeps -> training -> models; only sweeps imports ray."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = {"models", "training", "search_spaces", "sweeps", "results"}
# package -> top-level modules it must not import
FORBIDDEN = {
    "models": OURS - {"models"} | {"ray", "optuna", "pandas", "pyarrow"},
    "training": {"ray", "optuna", "sweeps", "results", "search_spaces"},
    "search_spaces": OURS - {"search_spaces"} | {"ray", "torch"},
    "results": {"torch", "ray", "optuna", "models", "training", "sweeps", "search_spaces"},
    "sweeps": set(),
}
EXCEPTIONS = {
    "results/records.py": {"optuna"},
    "results/studies.py": {"optuna"},
    "results/synced_journal.py": {"optuna"},
    "training/replay.py": {"results"},
}
"""`python -m results check` reads each cell's Optuna study (read-only) to reconcile it with the
Parquet rows; only these modules of results may import optuna (records reads the studies,
studies opens them: a database, a journal file, or synced_journal's journal synced to an object
store).
`python -m training replay` reads a stored trial's config and curve from the Parquet store:
results is pandas/pyarrow only and never imports training or torch, so the edge makes no cycle;
only this module of training imports it."""


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_point_the_right_way(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"package {package} has no files"
    names = {str(f.relative_to(ROOT)): f for f in files}
    bad = {
        name: sorted(imported_modules(f) & FORBIDDEN[package] - EXCEPTIONS.get(name, set()))
        for name, f in names.items()
    }
    assert not {f: m for f, m in bad.items() if m}, bad


PAPERS = sorted(p.name for p in (ROOT / "models").iterdir() if (p / "__init__.py").exists())


def imported_dotted(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("paper", PAPERS)
def test_a_papers_models_import_only_the_shared_pieces(paper):
    """models/<paper>/ may import the top of models/ (contract, layers, likelihoods, ...) and
    itself, never another paper's package: a family reads with the shared pieces and its folder."""
    others = {f"models.{p}" for p in PAPERS if p != paper}
    bad = {
        str(f.relative_to(ROOT)): sorted(
            m for m in imported_dotted(f) if any(m == o or m.startswith(o + ".") for o in others)
        )
        for f in sorted((ROOT / "models" / paper).rglob("*.py"))
    }
    assert PAPERS == ["hierarchical", "hyperspherical", "spvae", "vlae"]
    assert not {f: m for f, m in bad.items() if m}, bad


def test_no_module_shadows_the_standard_library():
    """`python sweeps/spvae.py` (and a Ray job's entrypoint) puts sweeps/ first on sys.path: a
    sweeps/concurrent.py once hid the standard library's concurrent package from torch and Ray."""
    import sys

    ours = [p for d in (*OURS, "benchmarks", "cluster") for p in (ROOT / d).glob("*.py")]
    assert len(ours) > 20
    shadowing = sorted(str(p.relative_to(ROOT)) for p in ours if p.stem in sys.stdlib_module_names)
    assert not shadowing, f"rename these: they hide the standard library's modules: {shadowing}"
