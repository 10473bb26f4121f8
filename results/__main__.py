"""python -m results table <paper> --storage DIR [--format md|latex|csv]
python -m results plot <paper> --storage DIR [--cell NAME] [--study-storage URL]
python -m results plot samples --storage DIR [--cell NAME]
python -m results check --storage DIR [--study-storage URL] [--repair]
python -m results compare <paper> --storage DIR
python -m results report <paper> --storage DIR [--study-storage URL]
python -m results best <paper> --storage DIR [--selection validation|param-cap] [--defaults]
python -m results export <paper> --storage DIR [--cell NAME] --out DIR
python -m results dashboard --storage DIR [--study-storage URL] [--host H] [--port P]
python -m results pareto <paper> --storage DIR

``table`` regenerates a paper's table (or, for a sweep group such as ``hyperspherical``, each of its
papers' tables) from the Parquet store, writes it as Markdown, LaTeX and CSV under
<storage>/tables/, and prints the chosen format; a storage that disagrees with itself is said so
under the table. ``plot <paper>`` draws each cell's learning curves, search history and
hyperparameter importances into <storage>/plots/<paper>/<cell>-{curves,history,importances}.png
(results.figures), a line for each it cannot draw; for ``spvae_lowdata`` also the test bound
against the training fraction into <storage>/plots/<paper>.png. ``plot samples`` draws each
cell's sample grids (stored by its winner's evaluation under <storage>/samples/,
results.samples) into <storage>/plots/samples/<cell>.png, a row per temperature, skipping a
damaged file with a line naming it. ``check`` reconciles the Parquet rows with Tune's records
and the Optuna studies, prints every difference and exits 1 if there is one; with ``--repair``
it rebuilds what they still hold (and cuts a journal's damaged tail, results.repair). A
damaged record (results.damage) is one line naming the file, what is wrong and the repair: a
``check`` difference; ``table`` refuses a damaged Parquet part and marks a table whose other
records are damaged. ``best`` prints each cell's winner, as the table chooses it, with its
configuration (each key's source), validation and test numbers and checkpoint; ``export`` writes
one winner as a folder that loads without Ray or the storage (results.best, training.export).
``dashboard`` serves every cell's study in one read-only optuna-dashboard (results.dashboard).
``pareto`` prints each setting's Pareto fronts, naming the table's picks, and draws them into
<storage>/plots/<key>-pareto.png (results.pareto).
None of them creates a storage: on a path with no sweep they say so.
"""

from __future__ import annotations

import argparse
import sys

from results import best, check, lease, samples, store
from results import repair as repairs
from results.papers import GROUPS, PAPERS, paper_tables
from results.selection import SELECTIONS
from results.tables import EXTENSIONS, write_files

FIGURES = ("spvae_lowdata",)
"""Tables whose variants are training fractions: ``plot`` draws them."""
SAMPLES = "samples"
"""``plot samples``: the winners' sample grids, one figure per cell."""


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
    """A line for under the table when the storage disagrees with itself, else None.

    A damaged Parquet part refuses the table before this (store.load: a table built without
    its rows could pick another winner). A damaged record the table does not read (a journal,
    Tune's state, a cell record, a checkpoint's JSON) leaves the table's numbers as the rows
    hold them, so the table is printed and marked here, naming the first such file."""
    states = check.check(storage)
    diffs, running = check.summary(states)
    broken = [e for st in states.values() for e in st.broken]
    if broken:
        more = f" (and {len(broken) - 1} more)" if len(broken) > 1 else ""
        return f"WARNING: the numbers above are the Parquet rows' alone; {broken[0]}{more}"
    parts = [f"{len(diffs)} differences between its records"] if diffs else []
    parts += [f"{len(running)} trials not finished"] if running else []
    if not parts:
        return None
    return (
        f"WARNING: this storage is not a finished, consistent record ({', '.join(parts)}); "
        f"see `python -m results check --storage {storage}`"
    )


def table(
    paper: str, storage: str, fmt: str, selection: str = "validation", all_datasets: bool = False
) -> int:
    tables = paper_tables(paper)
    require_results(storage, tables)
    warning = consistency_note(storage)
    extra = [warning] if warning else []
    shown = [write_files(storage, t, extra, selection, all_datasets)[fmt] for t in tables]
    print("\n".join(shown), end="")
    if warning:
        print(warning, file=sys.stderr)
    return 0


def plot(paper: str, storage: str, cell: str | None = None, study_url: str | None = None) -> int:
    if paper == SAMPLES:
        return plot_samples(storage, cell)
    if paper not in PAPERS and paper not in GROUPS:
        known = [*sorted([*PAPERS, *GROUPS]), SAMPLES]
        print(f"error: no figure for {paper!r}; figures: {known}", file=sys.stderr)
        return 2
    if paper not in FIGURES:
        return plot_cells(paper, storage, cell, study_url)
    if cell is not None:
        raise ValueError(f"--cell is for `plot {SAMPLES}` and the per-cell figures; the {paper} "
                         "figure draws all its cells")  # fmt: skip
    from results.plots import fraction_figure  # matplotlib: only when drawing

    require_results(storage, [PAPERS[paper]])
    png = fraction_figure(storage, PAPERS[paper])
    fs, root = store.filesystem(storage)
    fs.create_dir(f"{root}/plots", recursive=True)
    path = f"{root}/plots/{paper}.png"
    with fs.open_output_stream(path) as f:
        f.write(png)
    print(f"wrote {store.uri(storage, path)}")
    return plot_cells(paper, storage, None, study_url)


def plot_cells(paper: str, storage: str, cell: str | None, study_url: str | None) -> int:
    """Each cell's learning curves, search history and hyperparameter importances under
    <storage>/plots/<paper>/ (results.figures), a line for each thing it could not draw; 1 if
    it drew nothing."""
    if not store.exists(storage):
        raise store.StorageError(f"no sweep under {storage}")
    from results import figures  # matplotlib: only when drawing

    trials = store.load(storage, "trials")
    cells, lines = figures.coverage(storage, paper_tables(paper), trials)
    if cell is not None:
        if cell not in cells:
            raise store.StorageError(f"no cell {cell} of {paper} under {storage}; cells: {cells}")
        cells, lines = [cell], []
    if not cells:
        raise store.StorageError(f"no cell of {paper} under {storage} ({'; '.join(lines)})")
    _, root = store.filesystem(storage)
    wrote = 0
    for name in cells:
        mine = trials[trials["sweep"] == name] if not trials.empty else trials
        curves = store.load(storage, "curves", name)
        pngs, why = figures.cell_figures(storage, name, mine, curves, study_url)
        for kind, data in pngs.items():
            target = f"{root}/plots/{paper}/{name}-{kind}.png"
            print(f"wrote {store.uri(storage, samples.write_bytes(storage, target, data))}")
            wrote += 1
        for line in why:
            print(f"cell {name}: {line}", file=sys.stderr)
    for line in lines:
        print(line, file=sys.stderr)
    return 0 if wrote else 1


def without_grids(storage: str, drawn: set[str], cell: str | None) -> list[str]:
    """Lines for the cells whose winner was evaluated but left no sample grids."""
    lines = []
    for name in [cell] if cell else store.sweeps(storage):
        if name in drawn or not store.part_paths(storage, "evaluations", name):
            continue
        family = (store.cell_record(storage, name) or {}).get("cell", {}).get("family", "?")
        lines.append(f"{name}: its winner was evaluated without sample grids (family {family}: "
                     "it has no sample, or sampling failed and the sweep printed why)")  # fmt: skip
    return lines


def plot_samples(storage: str, cell: str | None) -> int:
    """One PNG per cell with stored grids (its newest file); StorageError when none can be drawn."""
    if not store.exists(storage):
        raise store.StorageError(f"no sweep under {storage}")
    grids, damaged = samples.latest(storage, cell)
    for path, why in damaged.items():
        print(f"warning: skipped the damaged sample file {path} ({why})", file=sys.stderr)
    if not grids:
        for line in without_grids(storage, set(), cell):
            print(line, file=sys.stderr)
        where = f"for cell {cell} " if cell else ""
        if damaged:
            raise store.StorageError(f"no readable sample grids {where}under {storage}")
        others = sorted(samples.files(storage)) if cell else []
        held = f"; cells with grids: {others}" if others else ""
        raise store.StorageError(
            f"no sample grids {where}under {storage} yet; a winner's evaluation writes them (at "
            f"the end of a sweep, or on its --resume){held}"
        )
    from results.plots import sample_figure  # matplotlib: only when drawing

    _, root = store.filesystem(storage)
    for name, g in sorted(grids.items()):
        target = f"{root}/plots/{SAMPLES}/{name}.png"
        written = samples.write_bytes(storage, target, sample_figure(g))
        print(f"wrote {store.uri(storage, written)}")
    for line in without_grids(storage, set(grids), cell):
        print(line, file=sys.stderr)
    return 0


def run_compare(paper: str, storage: str) -> int:
    """The equal-budget comparison of each table's families (results.compare): Markdown on
    stdout, <storage>/tables/<key>-compare.{md,csv} and an anytime PNG per dataset setting."""
    tables = paper_tables(paper)
    require_results(storage, tables)
    from results.compare import write as write_comparison  # matplotlib: only when drawing

    for t in tables:
        text, paths = write_comparison(storage, t)
        print(text)
        for path in paths:
            print(f"wrote {store.uri(storage, path)}")
    return 0


def run_report(paper: str, storage: str, study_url: str | None) -> int:
    """One HTML page of a paper's tables, comparison, figures and cells (results.report)."""
    tables = paper_tables(paper)
    require_results(storage, tables)
    warning = consistency_note(storage)
    from results.report import write_report  # matplotlib: only when drawing

    path, missing = write_report(storage, paper, [warning] if warning else [], study_url)
    for line in missing:
        print(line, file=sys.stderr)
    print(f"wrote {store.uri(storage, path)}")
    return 0


def run_pareto(paper: str, storage: str) -> int:
    tables = paper_tables(paper)
    require_results(storage, tables)
    from results import pareto  # matplotlib: only when drawing

    for t in tables:
        text, path = pareto.write(storage, t)
        print(text + (f"\nwrote {store.uri(storage, path)}" if path else ""))
    return 0


def run_check(storage: str, study_url: str | None, repair: bool) -> int:
    if not repair:
        return print_check(check.check(storage, study_url), repair)
    held = lease.acquire(storage)  # --repair writes: never beside a running sweep
    try:
        return repaired(storage, study_url)
    finally:
        held.release()


def repaired(storage: str, study_url: str | None) -> int:
    """Repair what the other records rebuild, then check again."""
    states = check.check(storage, study_url)
    for sweep in states:  # a journal's damaged tail first: the rows are checked against it
        if line := repairs.journal_tail(storage, sweep, study_url):
            print(f"repaired: {line}")
    states = check.check(storage, study_url)
    for state in states.values():
        for line in check.repair(storage, state):
            print(line if line.startswith("cannot ") else f"repaired: {line}")
    states = check.check(storage, study_url)
    return print_check(states, repair=True)


def print_check(states: dict, repair: bool) -> int:
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


def run_dashboard(storage: str, study_url: str | None, host: str, port: int) -> int:
    from results import dashboard

    if study_url is None and not store.exists(storage):
        raise store.StorageError(f"no sweep under {storage}")
    try:
        return dashboard.serve(storage, study_url, host, port)
    except OSError as e:  # the port taken, the address not this machine's
        raise ValueError(f"cannot listen on {host}:{port} ({e.strerror or e}); give another "
                         "--port") from None  # fmt: skip


def winner_commands(sub) -> None:
    """The subcommands ``best`` and ``export`` (results.best)."""
    helps = {"best": "print each cell's winner: config, numbers, checkpoint",
             "export": "write a cell's winner as a folder that loads as a model"}  # fmt: skip
    for name, text in helps.items():
        w = sub.add_parser(name, help=text)
        w.add_argument("paper", help=f"one of {sorted([*PAPERS, *GROUPS])}")
        w.add_argument("--storage", default="sweep-results", help="the sweep's --storage")
        w.add_argument("--selection", choices=SELECTIONS, default="validation",
                       help="how each cell's winner is chosen, as for `table`")  # fmt: skip
        if name == "best":
            w.add_argument("--defaults", action="store_true", help="list the default keys too")
        else:
            w.add_argument("--cell", default=None, help="the cell (needed when there are several)")
            w.add_argument("--out", required=True, help="the folder to create")


def run_winners(args) -> int:
    found = best.winners(args.storage, args.paper, args.selection)
    if args.command == "export":
        w = best.pick(found, args.cell, args.paper, args.storage)
        return best.export(args.storage, w, args.out, args.selection)
    print("\n\n".join("\n".join(best.describe(w, args.storage, args.defaults)) for w in found))
    return 0


class OneLineParser(argparse.ArgumentParser):
    """argparse whose refusal is one ``error:`` line saying where the flags are listed, exit 2
    (its subcommands' parsers are of this class too)."""

    def error(self, message: str):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="python -m results")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("table", help="regenerate a paper's comparison table")
    t.add_argument("paper", help=f"one of {sorted([*PAPERS, *GROUPS])}")
    t.add_argument("--storage", default="sweep-results", help="the sweep's --storage")
    t.add_argument("--format", choices=sorted(EXTENSIONS), default="md")
    t.add_argument(
        "--selection",
        choices=SELECTIONS,
        default="validation",
        help="how each cell's winner is chosen: validation (best validation loss), or "
        "param-cap (the SPVAE authors' apparent rule, "
        "docs/specs/spvae.md#6-search-space-and-model-selection: SPVAE's winner under "
        "the size of its setting's selected VAE and ConvVAE); written as <paper>-param-cap.*",
    )
    t.add_argument(
        "--all-datasets",
        action="store_true",
        help="also the columns of the datasets only the paper has numbers for (by default a "
        "note under the table names them)",
    )
    pl = sub.add_parser("plot", help="draw each cell's curves, history and importances (PNG)")
    pl.add_argument("paper", help=f"one of {[*sorted([*PAPERS, *GROUPS]), SAMPLES]}")
    pl.add_argument("--storage", default="sweep-results", help="the sweep's --storage")
    pl.add_argument("--cell", default=None, help="draw this cell alone")
    pl.add_argument("--study-storage", default=None, help="the sweep's --study-storage, if any")
    c = sub.add_parser("check", help="reconcile Parquet, Tune's records and the Optuna studies")
    c.add_argument("--storage", default="sweep-results", help="the sweep's --storage")
    c.add_argument("--study-storage", default=None, help="the sweep's --study-storage, if any")
    c.add_argument("--repair", action="store_true", help="rebuild what Tune's records still hold")
    r = sub.add_parser("report", help="one HTML page: tables, comparison, figures, each cell")
    r.add_argument("paper", help=f"one of {sorted([*PAPERS, *GROUPS])}")
    r.add_argument("--storage", default="sweep-results", help="the sweep's --storage")
    r.add_argument("--study-storage", default=None, help="the sweep's --study-storage, if any")
    cm = sub.add_parser("compare", help="families side by side: LL, budget, Welch t-test, PNGs")
    cm.add_argument("paper", help=f"one of {sorted([*PAPERS, *GROUPS])}")
    cm.add_argument("--storage", default="sweep-results", help="the sweep's --storage")
    winner_commands(sub)
    pa = sub.add_parser("pareto", help="each setting's trials on the val loss / size front (PNG)")
    pa.add_argument("paper", help=f"one of {sorted([*PAPERS, *GROUPS])}")
    pa.add_argument("--storage", default="sweep-results", help="the sweep's --storage")
    d = sub.add_parser("dashboard", help="every cell's study in one optuna-dashboard")
    d.add_argument("--storage", default="sweep-results", help="the sweep's --storage")
    d.add_argument("--study-storage", default=None, help="the sweep's --study-storage, if any")
    d.add_argument("--host", default="127.0.0.1", help="the address it listens on")
    d.add_argument("--port", type=int, default=8080)
    args = p.parse_args(argv)
    try:
        if args.command == "dashboard":
            return run_dashboard(args.storage, args.study_storage, args.host, args.port)
        if args.command in ("best", "export"):
            return run_winners(args)
        if args.command == "plot":
            return plot(args.paper, args.storage, args.cell, args.study_storage)
        if args.command == "check":
            return run_check(args.storage, args.study_storage, args.repair)
        if args.command == "report":
            return run_report(args.paper, args.storage, args.study_storage)
        if args.command == "pareto":
            return run_pareto(args.paper, args.storage)
        if args.command == "compare":
            return run_compare(args.paper, args.storage)
        return table(args.paper, args.storage, args.format, args.selection, args.all_datasets)
    except (ValueError, store.StorageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
