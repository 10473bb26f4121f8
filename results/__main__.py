"""python -m results table <paper> --storage DIR [--format md|latex|csv]
python -m results plot spvae_lowdata --storage DIR
python -m results check --storage DIR [--study-storage URL] [--repair]

``table`` regenerates a paper's table (or, for a sweep group such as ``hyperspherical``, each of its
papers' tables) from the Parquet store, writes it as Markdown, LaTeX and CSV under
<storage>/tables/, and prints the chosen format; a storage that disagrees with itself is said so
under the table. ``plot`` draws the low-data experiment's test bound against the training fraction
into <storage>/plots/<paper>.png. ``check`` reconciles the Parquet rows with Tune's records and the
Optuna studies, prints every difference and exits 1 if there is one; with ``--repair`` it rebuilds
what they still hold. None of them creates a storage: on a path with no sweep they say so.
"""

from __future__ import annotations

import argparse
import sys

from results import check, store
from results.papers import GROUPS, PAPERS, paper_tables
from results.tables import layout, numbers, render

EXTENSIONS = {"md": "md", "latex": "tex", "csv": "csv"}
FIGURES = ("spvae_lowdata",)
"""Tables whose variants are training fractions: ``plot`` draws them."""


def require_results(storage: str, tables) -> None:
    """Refuse (StorageError) a storage with no sweep, or with no rows for any of these tables."""
    if not store.exists(storage):
        raise store.StorageError(f"no sweep under {storage}")
    trials = store.load(storage, "trials")
    papers = set(trials["paper"]) if not trials.empty else set()
    wanted = [t.key for t in tables]
    if not papers & set(wanted):
        held = f"it holds results for {sorted(papers)}" if papers else "it holds no trial yet"
        names = "/".join(wanted)
        raise store.StorageError(f"no results for table {names} under {storage} ({held})")


def consistency_note(storage: str) -> str | None:
    """A line for under the table when the storage disagrees with itself, else None."""
    diffs, running = check.summary(check.check(storage))
    parts = [f"{len(diffs)} differences between its records"] if diffs else []
    parts += [f"{len(running)} trials not finished"] if running else []
    if not parts:
        return None
    return (
        f"WARNING: this storage is not a finished, consistent record ({', '.join(parts)}); "
        f"see `python -m results check --storage {storage}`"
    )


def table(paper: str, storage: str, fmt: str) -> int:
    tables = paper_tables(paper)
    require_results(storage, tables)
    warning = consistency_note(storage)
    fs, root = store.filesystem(storage)
    shown = []
    for t in tables:
        long = numbers(storage, t)  # the CSV: one row per number, in columns of numbers
        wide, notes = layout(long, t)
        notes = notes + ([warning] if warning else [])
        frames = {"md": wide, "latex": wide, "csv": long}
        fs.create_dir(f"{root}/tables", recursive=True)
        for f, ext in EXTENSIONS.items():
            with fs.open_output_stream(f"{root}/tables/{t.key}.{ext}") as out:
                out.write(render(frames[f], notes, t.title, f).encode())
        shown.append(render(frames[fmt], notes, t.title, fmt))
    print("\n".join(shown), end="")
    if warning:
        print(warning, file=sys.stderr)
    return 0


def plot(paper: str, storage: str) -> int:
    if paper not in FIGURES:
        print(f"error: no figure for {paper!r}; figures: {list(FIGURES)}", file=sys.stderr)
        return 2
    from results.plots import fraction_figure  # matplotlib: only when drawing

    require_results(storage, [PAPERS[paper]])
    png = fraction_figure(storage, PAPERS[paper])
    fs, root = store.filesystem(storage)
    fs.create_dir(f"{root}/plots", recursive=True)
    path = f"{root}/plots/{paper}.png"
    with fs.open_output_stream(path) as f:
        f.write(png)
    print(f"wrote {path}")
    return 0


def run_check(storage: str, study_url: str | None, repair: bool) -> int:
    states = check.check(storage, study_url)
    if repair:
        for state in states.values():
            for line in check.repair(storage, state):
                print(f"repaired: {line}")
        states = check.check(storage, study_url)
    diffs, running = check.summary(states)
    for d in diffs:
        print(d.line())
    for r in running:
        print(f"{r}: not finished (the sweep is running, or --resume continues it)")
    fixable = sum(bool(d.repair) for d in diffs)
    print(
        f"{len(states)} cells, {len(diffs)} differences"
        + (f" ({fixable} repairable: add --repair)" if fixable and not repair else "")
        + f", {len(running)} trials not finished"
    )
    return 1 if diffs else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m results")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("table", help="regenerate a paper's comparison table")
    t.add_argument("paper", help=f"one of {sorted([*PAPERS, *GROUPS])}")
    t.add_argument("--storage", default="sweep-results", help="the sweep's --storage")
    t.add_argument("--format", choices=sorted(EXTENSIONS), default="md")
    pl = sub.add_parser("plot", help="draw a fraction experiment's figure (PNG)")
    pl.add_argument("paper", help=f"one of {sorted(FIGURES)}")
    pl.add_argument("--storage", default="sweep-results", help="the sweep's --storage")
    c = sub.add_parser("check", help="reconcile Parquet, Tune's records and the Optuna studies")
    c.add_argument("--storage", default="sweep-results", help="the sweep's --storage")
    c.add_argument("--study-storage", default=None, help="the sweep's --study-storage, if any")
    c.add_argument("--repair", action="store_true", help="rebuild what Tune's records still hold")
    args = p.parse_args(argv)
    try:
        if args.command == "plot":
            return plot(args.paper, args.storage)
        if args.command == "check":
            return run_check(args.storage, args.study_storage, args.repair)
        return table(args.paper, args.storage, args.format)
    except (ValueError, store.StorageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
