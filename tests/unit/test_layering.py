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
    "results": {"torch", "ray", "models", "training", "sweeps", "search_spaces"},
    "sweeps": set(),
}
"""results reads a storage: its Parquet tables, Tune's records and the cells' Optuna studies
(journal files, databases, journals synced to an object store), so it may import optuna, never
torch or Ray."""


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
    bad = {name: sorted(imported_modules(f) & FORBIDDEN[package]) for name, f in names.items()}
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

    ours = [
        p
        for d in (*OURS, "sweeps/engine", "benchmarks", "cluster", "fidelity")
        for p in (ROOT / d).glob("*.py")
    ]
    assert len(ours) > 20
    shadowing = sorted(str(p.relative_to(ROOT)) for p in ours if p.stem in sys.stdlib_module_names)
    assert not shadowing, f"rename these: they hide the standard library's modules: {shadowing}"


def module_graph(root: Path, packages) -> dict[str, set[str]]:
    """Each module of ``packages`` -> the modules of ours it imports, anywhere in the file (an
    import inside a function is still an edge: a lazy import only hides a circle)."""
    files = {
        ".".join(f.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): f
        for p in packages
        for f in (root / p).rglob("*.py")
    }

    def ours(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, f in files.items():
        package = name if f.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(f.read_text(), filename=str(f))):
            if isinstance(node, ast.Import):
                edges |= {ours(a.name) for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                edges |= {ours(f"{base}.{a.name}") or ours(base) for a in node.names}
        graph[name] = edges - {None, name}
    return graph


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    reach, todo = {start}, [start]
    while todo:
        for m in graph.get(todo.pop(), ()):
            if m not in reach:
                reach.add(m)
                todo.append(m)
    return reach


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of ``graph``: its strongly connected parts of two modules or more."""
    seen, found = set(), []
    for start in sorted(graph):
        if start not in seen:
            part = {m for m in reachable(graph, start) if start in reachable(graph, m)}
            seen |= part
            if len(part) > 1:
                found.append(sorted(part))
    return found


def test_the_circle_finder_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle():
    """No module of ours imports, at any depth and however lazily, a module that imports it."""
    graph = module_graph(ROOT, sorted(OURS))
    assert len(graph) > 50 and graph["training.data"], "the graph reads the files"
    assert not circles(graph), circles(graph)
