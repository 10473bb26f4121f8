"""A sweep's cost before it starts: ``--dry-run`` prints it and exits; a large one is asked about.

    python sweeps/vlae.py --budget paper --dry-run [--gpus 8] [--storage PILOT]

Per selected cell: its trials, the epochs they train under ASHA and the winner's re-trainings,
its evaluations (in epochs: sweeps.engine.cost), GPU-hours (CPU core-hours on a machine with no
GPU); then the epoch time it assumed and a total line with the wall time on the machine it would
run on: ``--gpus N`` (a described one), else the attached cluster (--address, RAY_ADDRESS or a
`ray start` here: its resources now, read over a connection; never a cluster started for it),
else this machine. Nothing is started (no embedded Ray) and nothing is written: no storage
folder, no lease.

The epoch time of a family is measured where --storage holds a previous sweep's trials of it (its
rows' wall seconds per epoch, per training image: results.rows), else assumed: the one whole epoch
the project has measured (REFERENCE_EPOCH), which the models other than the MLP VAE exceed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import textwrap
from dataclasses import dataclass

from results import store
from sweeps.cells import Budget, Cell
from sweeps.engine import cost
from sweeps.engine.nodes import cluster_address, connect, local_shape, ray_attached, requested
from sweeps.engine.preflight import Refusal, grid_trials
from sweeps.engine.settings import Settings

NAME_WIDTH = 50  # a cell's name in the table; a longer one is cut in its middle
NOTE_WIDTH = 100  # the notes under it are wrapped to this
LARGE_HOURS = 24.0
"""A sweep over this many GPU-hours, or this many hours of wall time, is asked about first."""
REFERENCE_EPOCH = (5.06, 54_000, 2)
"""(seconds, images, CPU threads): our trainer's epoch of the VLAE paper's MLP VAE
(784-500-500-50, batch 128), `python benchmarks/trainer.py` on the project's 2-core machine,
2026-11-22 (docs/benchmarks.md). No GPU epoch has been measured: on a GPU the same time is
assumed. VLAE, SA-VAE and the hierarchical VAEs take 2-124x the VAE's step on a CPU
(docs/benchmarks.md), so without a pilot the estimate is low for them."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The cost flags of every sweep script (sweeps.engine.cli.parse_args)."""
    p.add_argument("--dry-run", action="store_true",
                   help="print each cell's trials, epochs and estimated GPU-hours and wall time, "
                   "and exit: nothing is started or written")  # fmt: skip
    p.add_argument("--yes", action="store_true",
                   help=f"start a sweep estimated at over {LARGE_HOURS:g} GPU-hours or "
                   f"{LARGE_HOURS:g} wall hours without asking")  # fmt: skip
    p.add_argument("--gpus", type=int, default=None, metavar="N",
                   help="estimate for a machine or cluster of N GPUs (default: the attached "
                   "cluster's, else this machine's)")  # fmt: skip
    p.add_argument("--max-gpu-hours", type=float, default=None, metavar="H",
                   help="start no trial that would take the sweep's GPU-hours (spent, committed "
                   "to running trials, and the trial's) past H; stop, saved, when none runs "
                   "(exit 3); --resume with a higher H goes on. Trials with no GPU: never binds "
                   "(docs/running-sweeps.md)")  # fmt: skip


def read_flags(args: argparse.Namespace) -> None:
    """The cost flags checked; a bad value: Refusal (one error line)."""
    if args.gpus is not None and args.gpus < 1:
        raise Refusal(f"--gpus must be at least 1, got {args.gpus}")
    hours = args.max_gpu_hours
    if hours is not None and not (hours > 0 and math.isfinite(hours)):
        raise Refusal(f"--max-gpu-hours must be a number of GPU-hours above 0, got {hours:g}")


@dataclass(frozen=True)
class Machine:
    gpus: float
    cpus: float
    where: str


def machine(settings: Settings) -> Machine:
    """Where the sweep would run (module docstring); connects to an existing cluster only."""
    if settings.gpus:
        gpus = f"{settings.gpus} GPU{'s' * (settings.gpus > 1)}"
        return Machine(settings.gpus, math.inf, f"{gpus} (--gpus)")
    if not ray_attached():
        address = cluster_address(settings.address or os.environ.get("RAY_ADDRESS"))
        if address is None:
            here = local_shape()
            return Machine(here["GPU"], here["CPU"], "this machine")
        connect(address)
    import ray

    have = ray.cluster_resources()
    return Machine(have.get("GPU", 0), have.get("CPU", 0), "the Ray cluster, now")


def pilot(storage: str) -> dict[str, tuple[float, int, str]]:
    """Per family of a previous sweep under ``storage``: (median seconds per training image,
    trials, hardware), from its trials' rows (a trial of N --search-seeds trained N images per
    epoch image); {} when there is none. Reads only."""
    if not store.exists(storage):
        return {}
    rows = store.load(storage, "trials")
    if rows.empty:
        return {}
    rows = rows[(rows["epochs"] > 0) & (rows["wall_seconds"] > 0)]
    out = {}
    for family, mine in rows.groupby("family"):
        per_image = [r.wall_seconds / (r.epochs * r.search_seeds
                                       * cost.epoch_images(r.dataset, json.loads(r.config_json)))
                     for r in mine.itertuples()]  # fmt: skip
        hardware = mine["hardware"].mode()
        out[family] = (statistics.median(per_image), len(mine),
                       str(hardware.iloc[0]) if len(hardware) else "?")  # fmt: skip
    return out


@dataclass(frozen=True)
class Estimate:
    lines: list[str]  # a header and one row per cell, then the epoch times' sources
    total: str
    gpu_hours: float
    wall_hours: float

    @property
    def large(self) -> bool:
        return self.gpu_hours > LARGE_HOURS or self.wall_hours > LARGE_HOURS


def estimate(settings: Settings, chosen: list[Cell], budget: Budget) -> Estimate:
    """The cost of ``chosen`` under ``budget`` on ``machine(settings)`` (module docstring)."""
    where = machine(settings)
    trial = requested(settings, {"GPU": where.gpus})
    gpu = trial["gpu"] > 0
    fits = [have / need for have, need in ((where.gpus, trial["gpu"]), (where.cpus, trial["cpu"]))
            if need > 0]  # fmt: skip
    slots = max(1, int(min(fits, default=1) + 1e-9))
    slots = min(slots, settings.max_concurrent or slots)
    measured = pilot(settings.storage)
    seconds, ref_images, threads = REFERENCE_EPOCH
    assumed = seconds / ref_images * (1 if gpu else threads / max(1.0, trial["cpu"]))
    unit = "GPU-h" if gpu else "core-h"
    share = trial["gpu"] if gpu else trial["cpu"]
    rows, jobs, work, epochs, trials = [], [], 0.0, 0.0, 0
    for rank, cell in enumerate(chosen):
        grid = settings.sampler == "grid"  # each configuration once, unpruned (as cell.run_cell)
        n = budget.trials
        if grid and not (settings.trials or settings.add_trials):
            n = grid_trials(cell, budget)
        c = cost.cell_cost(cell, budget, n, pruned=not grid)
        trials += n
        epochs += c.epochs
        per_image = measured[cell.family][0] if cell.family in measured else assumed
        epoch = per_image * cost.epoch_images(cell.dataset, cell.base_config(budget))
        jobs.append(cost.cell_jobs(rank, c, epoch))
        hours = c.epochs * epoch * share / 3600
        work += hours
        rows.append((cell.name, f"{n}", f"{sum(c.trials):,} ({n * max(c.trials):,})",
                     f"{sum(c.retrainings):,}",
                     f"{len(c.evaluations)} ({sum(c.evaluations):,.0f})", f"{epoch:,.1f}",
                     few(hours)))  # fmt: skip
    how = "no pruning" if settings.sampler == "grid" else "ASHA"
    lines = table(rows, ("cell", "trials", f"epochs {how} (at most)", "re-training",
                         "evals (epochs)", "s/epoch", unit))  # fmt: skip
    notes = []
    if budget.search_seeds > 1:
        notes.append(f"--search-seeds {budget.search_seeds}: each search trial trains "
                     f"{budget.search_seeds} seeds, its epochs counted {budget.search_seeds} times")
    for family in sorted({c.family for c in chosen}):
        if family in measured:
            s, n, hardware = measured[family]
            notes.append(f"epoch time of {family}: measured, {s * 1e3:.3f} ms per training image "
                         f"(median of {n} trials under {settings.storage}, on {hardware})")
    if any(c.family not in measured for c in chosen):
        on = "on a GPU" if gpu else f"on {max(1.0, trial['cpu']):g} CPU core(s)"
        which = " of the other families" if measured else ""
        notes.append(
            f"epoch time{which}: assumed {assumed * 54_000:.2f} s per 54,000 images "
            f"{on} (the MLP "
            f"VAE's {seconds} s on {threads} CPU threads, benchmarks/trainer.py; no GPU epoch is "
            "measured, and VLAE, SA-VAE and the hierarchical VAEs cost more): a pilot's trials "
            "in --storage replace it"
        )
    lines += [w for n in notes for w in textwrap.wrap(n, NOTE_WIDTH, subsequent_indent="  ",
                                                        break_on_hyphens=False)]  # fmt: skip
    wall = cost.schedule(jobs, slots, together=settings.cells == "concurrent")[0] / 3600
    gpu_hours = work if gpu else 0.0
    total = (f"total: {len(chosen)} cells, {trials:,} trials, {epochs:,.0f} epochs: about "
             f"{few(work)} {unit}, {few(wall)} h of wall time on {where.where} ({slots} at "
             f"once, {trial['cpu']:g} CPU + {trial['gpu']:g} GPU each)")  # fmt: skip
    return Estimate(lines, total, gpu_hours, wall)


def few(hours: float) -> str:
    """Hours as read: whole above 100 (1,401), else to two significant digits (14, 0.12)."""
    return f"{hours:,.0f}" if hours >= 100 else f"{hours:.2g}"


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> list[str]:
    """``rows`` under ``header`` in aligned columns: the first (a cell's name, cut in its middle
    past NAME_WIDTH) to the left, the numbers to the right."""
    cut = [(r[0] if len(r[0]) <= NAME_WIDTH else r[0][:23] + "..." + r[0][-24:], *r[1:])
           for r in rows]  # fmt: skip
    widths = [max(len(x) for x in col) for col in zip(header, *cut, strict=True)]
    return ["  ".join(x.ljust(w) if i == 0 else x.rjust(w)
                      for i, (x, w) in enumerate(zip(r, widths, strict=True))).rstrip()
            for r in (header, *cut)]  # fmt: skip


def dry_run(settings: Settings, chosen: list[Cell], budget: Budget) -> int:
    """--dry-run: the estimate printed, nothing started or written; exit 0."""
    e = estimate(settings, chosen, budget)
    print(f"dry run: --budget {settings.budget}, {len(chosen)} cells; nothing started or written")
    print("\n".join(e.lines))
    print(e.total)
    if e.large:
        print(f"over {LARGE_HOURS:g} GPU-hours or wall hours: the sweep asks before it starts "
              "(--yes: it does not)")  # fmt: skip
    return 0


def confirmed(settings: Settings, chosen: list[Cell], budget: Budget) -> bool:
    """Whether the sweep may start: yes for a small one, --yes or --resume (asked when it
    started); a large one prints its total line, then asks when stdin is a terminal."""
    if settings.yes or settings.resume:
        return True
    e = estimate(settings, chosen, budget)
    if not e.large:
        return True
    print(f"estimate: {e.total} (--dry-run: per cell)", file=sys.stderr)
    if not sys.stdin.isatty():
        return True
    try:
        return input("Continue? [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False
