"""The lines a sweep ends on, after its tables: what it took, what it cost, where things are, what
to run next.

    summary_lines(storage, paper, cells, wall_s, command, study_url, ray_logs) -> [line, ...]

Read from the storage alone (Parquet rows, cell records, Tune's records), as `--status` is; the
cost is what results.tables puts in its GPU-h and CPU core-h columns (results.selection.cost:
the resources the trials and evaluations held), summed over every cell of the run.
"""

from __future__ import annotations

import shlex
import sys

from results import check, rows, store
from results.papers import paper_tables
from results.selection import cost
from results.tables import EXTENSIONS
from sweeps.cells import Cell
from sweeps.engine.console import duration, fit
from sweeps.engine.status import STATUSES, progress


def ray_logs() -> str | None:
    """The folder of this Ray session's logs when it lies on this machine, else None."""
    try:
        import ray

        node = ray._private.worker._global_node  # no public API names the session's folder
        return node.get_logs_dir_path() if node is not None else None
    except Exception:  # noqa: BLE001 - a hint in a summary, never worth an error
        return None


def watch_lines(storage: str, argv: list[str]) -> list[str]:
    """Where to watch the sweep while it runs: the Ray dashboard at the address this session's
    dashboard really has (8265, or the next free port when another Ray holds it), the sweep's
    optuna-dashboard and --status."""
    s = shlex.quote(storage)
    where = [f"python -m results dashboard --storage {s}   (every cell's Optuna study)",
             f"python {argv[0]} --status --storage {s}"]  # fmt: skip
    try:
        from ray._private.worker import get_dashboard_url  # the URL ray.init printed

        if url := get_dashboard_url():
            where.insert(0, f"the Ray dashboard at http://{url.removeprefix('http://')}")
    except Exception:  # noqa: BLE001 - a hint, never worth an error (no dashboard, Ray Client)
        pass
    return [("watch: " if i == 0 else " " * 7) + w for i, w in enumerate(where)]


def resume_command(argv: list[str]) -> str:
    """The command that ran this sweep, with --resume: ``argv`` is sys.argv."""
    args = [a for a in argv[1:] if a != "--resume"]
    return " ".join(["python", *(shlex.quote(a) for a in [argv[0], *args]), "--resume"])


def summary_lines(storage: str, paper: str, cells: list[Cell], wall_s: float, command: list[str],
                  study_url: str | None = None, logs: str | None = None) -> list[str]:  # fmt: skip
    """The sweep's closing lines (each cut to console.WIDTH, but for a long path or command).
    ``command``: sys.argv of the run; ``logs``: Ray's log folder (ray_logs)."""
    names = [c.name for c in cells]
    trials = store.load(storage, "trials")
    evals = store.load(storage, "evaluations")
    trials = trials[trials["sweep"].isin(names)] if not trials.empty else trials
    ids = set(trials["trial_id"]) if not trials.empty else set()
    evals = evals[evals["trial_id"].isin(ids)] if not evals.empty else evals
    search = trials[trials["role"] != rows.SEED] if not trials.empty else trials
    counts = search["status"].value_counts() if not search.empty else {}
    by_status = ", ".join(f"{int(counts.get(s, 0))} {s}" for s in STATUSES)
    seeds = len(trials) - len(search)
    gpu_h, cpu_h = (cost(trials, evals, c) or 0.0 for c in ("gpu_seconds", "cpu_seconds"))
    states = progress(storage, cells, study_url)["state"] if cells else []
    unfinished = sum(s != "done" for s in states)
    s = shlex.quote(storage)
    keys = [t.key for t in paper_tables(paper)]
    files = ", ".join(f"{k}.{ext}" for k in keys for ext in EXTENSIONS.values())
    lines = [
        fit(f"== sweep ended in {duration(wall_s)}: {plural(len(cells), 'cell')}, {len(search)} "
            f"search trials ({by_status}), {seeds} winner re-trainings, "
            f"{plural(len(evals), 'test evaluation')}"),
        fit(f"   cost: {gpu_h:.3g} GPU-hours, {cpu_h:.3g} CPU core-hours (the resources the "
            "trials and evaluations held)"),
        f"   tables: {storage}/tables/ ({files})",
        f"   report: {storage}/report/{paper}.html (the first command below writes it)",
        f"   logs: Tune's under {storage}/ray/<cell>/",
        f"         Ray's under {logs or 'its session folder (ray.init prints it with --verbose)'}",
        f"   next: python -m results report {paper} --storage {s}",
        f"         python -m results table {paper} --storage {s}",
    ]  # fmt: skip
    if unfinished:
        lines.append(f"         {resume_command(command)}  ({plural(unfinished, 'cell')} "
                     "unfinished)")  # fmt: skip
    return lines


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def report_failures(storage: str, cells: list[Cell]) -> list[str]:
    """Print and return the cells that ended with no completed trial, with why their trials
    failed: such a sweep has nothing to put in the table, and exits non-zero."""
    failed = []
    for cell in cells:
        rows = store.load(storage, "trials", sweep=cell.name)
        if not rows.empty and (rows["status"] == "completed").any():
            continue
        counts = rows["status"].value_counts().to_dict() if not rows.empty else {}
        errored = rows[rows["status"] == "errored"] if not rows.empty else rows
        reasons = errored["reason"].value_counts().head(3) if not errored.empty else {}
        why = "; ".join(f"{r} (x{n})" for r, n in dict(reasons).items())
        summary = ", ".join(f"{n} {s}" for s, n in counts.items()) or "no trial ran"
        print(f"error: cell {cell.name} has no completed trial: {summary}. {why}", file=sys.stderr)
        failed.append(cell.name)
    return failed


def report_differences(storage: str, cells: list[Cell], study_url: str | None) -> None:
    for cell in cells:
        for d in check.differences(check.read_sweep(storage, cell.name, study_url)):
            print(f"warning: {d.line()}", file=sys.stderr)
