"""Search efficiency against the authors' own search: on one SPVAE cell, the authors' exhaustive
grid replayed (``--sampler grid``) and TPE under ASHA, each a real sweep, and what each paid to
reach the grid's best validation loss.

The sweeps run one after the other (each has the machine or cluster to itself, so their costs
compare), each in its own process with its own embedded Ray unless --address is given, into
``<storage-root>/<search>``: ``grid`` (every configuration once, no pruning, seed 0) and
``tpe-s<seed>`` for each ``--seeds`` (one TPE run is an anecdote). Each is
``sweeps.engine.cli.main`` over the paper's own cells (sweeps/spvae.py) restricted to ``--family``
and ``--variants``: the script has no flag that picks a variant. Each runs with
``--winner-seeds 1``: the winner's re-trainings with other seeds are no part of a search (rows of
role "seed" are left out anyway).

From the Parquet rows (results.store, table ``trials``):
  target    the grid's best validation loss: min best_val_loss over its completed trials
  reached   a search's best completed best_val_loss so far, trials in order of ended_at, is at
            most target + tolerance x |target| (the loss is -ELBO, negative for Gaussian pixels:
            "1% above" is 1% of its magnitude); ``--tolerances``, default 0 (reach or beat), 1%, 5%
  cost      summed over the trials ended by then (every status: a pruned trial was paid for):
            CPU core-hours = cpu_seconds (or wall_seconds x the cell's CPUs per trial, from
            ``cells/<cell>.json``), GPU-hours = gpu_seconds; ``elapsed`` is the clock from the
            search's first trial start to that trial's end (concurrency included)
The grid's total is its price: an exhaustive grid knows its best only once every configuration
ran. Each winner's test evaluation, which every sweep ends with, is not search cost: not counted.

At ``--budget smoke`` an epoch is 10 batches, a trial at most 2 epochs and ASHA's grace period 1
epoch: the comparison checks the machinery end to end, it is not evidence about TPE against the
grid. The evidence is the paper budget on a GPU cluster (the command is printed at the end).

Run:  python benchmarks/search_efficiency.py [--family spvae] [--variants perturbed]
      [--budget smoke] [--datasets fashion_mnist] [--tpe-trials N] [--seeds 0 1 2]
      [--tolerances 0 0.01 0.05] [--storage-root DIR] [--cpus-per-trial 1]
      [--gpus-per-trial G] [--address ADDR] [--study-storage URL_WITH_{search}] [--analyse]
      ray submit cluster/gpu.yaml benchmarks/search_efficiency.py --budget paper --datasets mnist
          --address auto --storage-root s3://BUCKET/search-efficiency
          --study-storage 'sqlite:////home/ray/search_efficiency_{search}.db' --gpus-per-trial 0.5
``--analyse`` reads an earlier run's ``--storage-root`` again without running anything; a search
already in ``--storage-root`` is not run again (so ``--seeds`` can grow between runs).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from search_spaces import GRIDS

SWEEP = (  # sweeps/spvae.py's main over its own cells, restricted to some variants
    "import json, sys; from sweeps import spvae; from sweeps.engine import cli; "
    "variants = json.loads(sys.argv[1]); "
    "cells = [c for c in spvae.CELLS if c.variant in variants]; "
    "sys.exit(cli.main(spvae.PAPER, cells, spvae.BUDGETS, spvae.DEFAULT_DATASETS, "
    "argv=sys.argv[2:], protocols=spvae.PROTOCOLS))"
)


# ---- analysis: pure functions of the trials rows ----


def trial_costs(rows: pd.DataFrame, cpus_per_trial: float) -> pd.DataFrame:
    """The search's rows (not the winner's re-trainings, role "seed") in order of ended_at,
    with each trial's ``cpu_s`` (its ``cpu_seconds`` where the store has them, else
    wall_seconds x cpus_per_trial) and ``gpu_s`` (gpu_seconds)."""
    if "role" in rows:  # a winner's re-trainings with other seeds come after the search
        rows = rows[rows["role"].fillna("search") == "search"]
    t = rows.sort_values(["ended_at", "trial_id"], kind="stable").reset_index(drop=True)
    wall_cpu = t["wall_seconds"].astype(float) * cpus_per_trial
    if "cpu_seconds" in t:
        t["cpu_s"] = t["cpu_seconds"].astype(float).fillna(wall_cpu)
    else:
        t["cpu_s"] = wall_cpu
    t["gpu_s"] = t["gpu_seconds"].astype(float).fillna(0.0)
    return t


def target_loss(grid_rows: pd.DataFrame) -> float:
    """The grid's best validation loss: min best_val_loss over its completed trials."""
    t = trial_costs(grid_rows, 1.0)
    done = t[t["status"] == "completed"]["best_val_loss"].astype(float)
    if done.dropna().empty:
        raise ValueError("the grid has no completed trial: no target")
    return float(done.min())


def cost_to_target(
    rows: pd.DataFrame, target: float, tolerance: float = 0.0, cpus_per_trial: float = 1.0
) -> dict:
    """What a search paid until its best completed validation loss first came within
    ``tolerance`` x |target| of ``target`` (lower is better), trials taken in order of ended_at.

    Returns reached, trials (ended by then, any status), cpu_hours, gpu_hours, elapsed_s (first
    start to that trial's end) and best (the best completed loss then, or at the end if never).
    """
    t = trial_costs(rows, cpus_per_trial)
    threshold = target + tolerance * abs(target)
    best = t["best_val_loss"].astype(float).where(t["status"] == "completed").cummin()
    hit = best.le(threshold)  # NaN (no completed trial yet) is never a hit
    if not hit.any():
        final = best.min()
        return {"reached": False, "trials": None, "cpu_hours": None, "gpu_hours": None,
                "elapsed_s": None, "best": None if pd.isna(final) else float(final)}  # fmt: skip
    i = int(hit.to_numpy().argmax())
    return {
        "reached": True,
        "trials": i + 1,
        "cpu_hours": float(t["cpu_s"].iloc[: i + 1].sum()) / 3600,
        "gpu_hours": float(t["gpu_s"].iloc[: i + 1].sum()) / 3600,
        "elapsed_s": float(t["ended_at"].iloc[i] - t["started_at"].min()),
        "best": float(best.iloc[i]),
    }


def totals(rows: pd.DataFrame, cpus_per_trial: float = 1.0) -> dict:
    """A whole search: trials by status, CPU core-hours, GPU-hours, elapsed, best completed."""
    t = trial_costs(rows, cpus_per_trial)
    status = t["status"].value_counts()
    done = t[t["status"] == "completed"]["best_val_loss"].astype(float)
    return {
        "trials": len(t),
        "completed": int(status.get("completed", 0)),
        "pruned": int(status.get("pruned", 0)),
        "errored": int(status.get("errored", 0)),
        "cpu_hours": float(t["cpu_s"].sum()) / 3600,
        "gpu_hours": float(t["gpu_s"].sum()) / 3600,
        "elapsed_s": float(t["ended_at"].max() - t["started_at"].min()),
        "best": float(done.min()) if not done.dropna().empty else math.nan,
    }


def spread(values: list[float], fmt: str = ".4f") -> str:
    """mean (min to max) of a few numbers, or the one number."""
    if not values:
        return "-"
    if len(values) == 1:
        return format(values[0], fmt)
    mean = sum(values) / len(values)
    return f"{mean:{fmt}} ({min(values):{fmt}} to {max(values):{fmt}})"


# ---- running the sweeps ----


def ray_instances() -> set[str]:
    """The GCS addresses of the Ray instances alive on this machine."""
    from ray._private.services import find_gcs_addresses  # as sweeps.engine.cli: no public API

    return set(find_gcs_addresses())


def join(root: str, name: str) -> str:
    return f"{root.rstrip('/')}/{name}" if "://" in root else str(Path(root) / name)


def sweep_command(args, search: str, storage: str) -> list[str]:
    sampler, seed = ("grid", 0) if search == "grid" else ("tpe", int(search.split("-s")[1]))
    cmd = [sys.executable, "-c", SWEEP, json.dumps(args.variants),
           "--budget", args.budget, "--storage", storage, "--families", args.family,
           "--sampler", sampler, "--seed", str(seed),
           "--cpus-per-trial", str(args.cpus_per_trial)]  # fmt: skip
    if args.datasets:
        cmd += ["--datasets", *args.datasets]
    if sampler == "tpe":
        cmd += ["--trials", str(args.tpe_trials)]
    if len(args.variants) > 1:  # one cell at a time: each search's cells see the same slots
        cmd += ["--cells", "sequential"]
    cmd += ["--winner-seeds", "1"]  # the winner's re-trainings are no part of a search
    for flag in ("address", "gpus_per_trial", "max_concurrent"):
        if getattr(args, flag) is not None:
            cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    if args.study_storage:
        cmd += ["--study-storage", args.study_storage.replace("{search}", search.replace("-", "_"))]
    return cmd


def run_sweep(args, search: str, storage: str, log: Path) -> float:
    """One search as a sweep in a fresh process; its output to ``log``; returns its seconds.

    Without --address the sweep starts an embedded Ray instance of its own
    (sweeps.engine.nodes.connect: it joins only a live `ray start` cluster); other Ray instances on
    this machine still share its cores, so they are named, and the load average is printed before
    and after.
    """
    before = ray_instances() if args.address is None else set()
    if before:
        print(f"warning: {len(before)} other Ray instance(s) running here; this search starts "
              "its own but shares the cores with them (see the load averages)")  # fmt: skip
    cmd = sweep_command(args, search, storage)
    print(f"[{search}] {shlex.join(cmd[:2])} '<sweeps.spvae main>' {shlex.join(cmd[3:])}")
    print(f"[{search}] log: {log}; load average before: {load()}", flush=True)
    start = time.time()
    with log.open("w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    seconds = time.time() - start
    print(f"[{search}] exit {rc} after {seconds / 60:.1f} min; load average after: {load()}")
    if rc != 0:
        tail = log.read_text().splitlines()[-15:]
        raise SystemExit(f"error: the {search} sweep failed (exit {rc}); its log ends:\n"
                         + "\n".join(tail))  # fmt: skip
    if args.address is None:
        time.sleep(2)  # the embedded instance's processes take a moment to go
        if left := ray_instances() - before:
            print(f"warning: a Ray instance started during the {search} sweep is still alive "
                  f"({sorted(left)}): the sweep's own, or another user's", flush=True)  # fmt: skip
    return seconds


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# ---- the report ----


def cells_of(args) -> list:
    from sweeps import spvae

    datasets = args.datasets or spvae.DEFAULT_DATASETS[args.budget]
    return [
        c
        for c in spvae.CELLS
        if c.family == args.family and c.variant in args.variants and c.dataset in datasets
    ]


def grid_size(args, cell) -> int:
    from sweeps import spvae
    from sweeps.engine import preflight

    return preflight.grid_trials(cell, spvae.BUDGETS[args.budget])


def search_rows(storage: str, cell) -> tuple[pd.DataFrame, float]:
    """A search's trials rows of one cell and its CPUs per trial (the cell's record)."""
    from results import store

    rows = store.load(storage, "trials", sweep=cell.name)
    record = store.cell_record(storage, cell.name) or {}
    return rows, float(record.get("resources", {}).get("cpu", 1.0))


def ran_before(storage: str, cells: list) -> bool:
    """Whether a search's storage holds every cell's record and trials rows (an earlier run of
    this script with another --seeds): its sweep is not run again."""
    from results import store

    return all(
        store.cell_record(storage, c.name) is not None
        and not store.load(storage, "trials", sweep=c.name).empty
        for c in cells
    )


def whole_table(whole: dict[str, dict]) -> pd.DataFrame:
    """One row per search: its trials by status, total cost, elapsed and best."""
    return pd.DataFrame(
        {
            s: {
                "trials (done/pruned/err)": f"{w['trials']} "
                f"({w['completed']}/{w['pruned']}/{w['errored']})",
                "CPU core-h": f"{w['cpu_hours']:.4f}",
                "GPU-h": f"{w['gpu_hours']:.4f}",
                "elapsed min": f"{w['elapsed_s'] / 60:.1f}",
                "best val loss": f"{w['best']:.4f}",
            }
            for s, w in whole.items()
        }
    ).T


def reach_table(reach: dict[tuple[str, float], dict], grid_cpu_hours: float) -> pd.DataFrame:
    """One row per (search, tolerance): the cost to reach the target, or how close it came."""
    lines = {}
    for (s, tol), r in reach.items():
        if not r["reached"]:
            lines[(s, f"{tol:.0%}")] = {"trials": f"not reached: best {r['best']:.4f}"}
            continue
        lines[(s, f"{tol:.0%}")] = {
            "trials": r["trials"],
            "CPU core-h": f"{r['cpu_hours']:.4f}",
            "GPU-h": f"{r['gpu_hours']:.4f}",
            "elapsed min": f"{r['elapsed_s'] / 60:.1f}",
            "of the grid's CPU": f"{r['cpu_hours'] / grid_cpu_hours:.0%}",
        }
    return pd.DataFrame(lines).T.fillna("")


def seeds_summary(reach: dict, whole: dict, tpe: list[str], tolerances: list[float]) -> None:
    print(f"\nTPE+ASHA over {len(tpe)} seeds: mean (min-max) over the seeds that reached it")
    for tol in tolerances:
        hits = [reach[(s, tol)] for s in tpe if reach[(s, tol)]["reached"]]
        print(
            f"  {tol:.0%}: reached {len(hits)}/{len(tpe)}; "
            f"trials {spread([h['trials'] for h in hits], '.1f')}; "
            f"CPU core-h {spread([h['cpu_hours'] for h in hits])}; "
            f"GPU-h {spread([h['gpu_hours'] for h in hits])}"
        )
    print(
        f"  whole search per seed: CPU core-h {spread([whole[s]['cpu_hours'] for s in tpe])}, "
        f"best {spread([whole[s]['best'] for s in tpe], '.2f')}"
    )


def report_cell(args, cell, searches: list[str]) -> None:
    runs = {s: search_rows(join(args.storage_root, s), cell) for s in searches}
    target = target_loss(runs["grid"][0])
    print(f"\n== {cell.name}: target = the grid's best validation loss {target:.4f}")
    whole = {s: totals(rows, cpus) for s, (rows, cpus) in runs.items()}
    print(whole_table(whole).to_string())
    reach = {
        (s, tol): cost_to_target(rows, target, tol, cpus)
        for s, (rows, cpus) in runs.items()
        for tol in args.tolerances
    }
    print(
        "\nto reach the target (its loss + tolerance x |loss|; cost of the trials ended by then):"
    )
    print(reach_table(reach, whole["grid"]["cpu_hours"]).to_string())
    tpe = [s for s in searches if s != "grid"]
    if len(tpe) > 1:
        seeds_summary(reach, whole, tpe, args.tolerances)


def paper_command(args) -> str:
    return (
        "ray submit cluster/gpu.yaml benchmarks/search_efficiency.py --budget paper "
        f"--datasets mnist --family {args.family} --variants {' '.join(args.variants)} "
        f"--seeds {' '.join(map(str, args.seeds))} --address auto "
        "--storage-root s3://BUCKET/search-efficiency "
        "--study-storage 'sqlite:////home/ray/search_efficiency_{search}.db' --gpus-per-trial 0.5"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--family", default="spvae", choices=sorted(GRIDS),
                   help="a family with an authors' grid")  # fmt: skip
    p.add_argument("--variants", nargs="+", default=["perturbed"],
                   choices=["perturbed", "discrete"])  # fmt: skip
    p.add_argument("--budget", choices=["smoke", "paper"], default="smoke")
    p.add_argument("--datasets", nargs="+", default=None, help="default: the budget's")
    p.add_argument("--tpe-trials", type=int, default=None,
                   help="TPE trials per seed (default: a third of the grid)")  # fmt: skip
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="TPE sampler seeds")
    p.add_argument("--tolerances", type=float, nargs="+", default=[0.0, 0.01, 0.05])
    p.add_argument("--storage-root", default=None, help="default: a new temporary folder")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, default=None)
    p.add_argument("--max-concurrent", type=int, default=None)
    p.add_argument("--address", default=None, help="a Ray cluster to run on (e.g. auto)")
    p.add_argument("--study-storage", default=None,
                   help="Optuna RDB URL with {search} in it: one database per search")  # fmt: skip
    p.add_argument("--analyse", action="store_true",
                   help="only report on --storage-root's earlier sweeps")  # fmt: skip
    args = p.parse_args()
    if args.study_storage and "{search}" not in args.study_storage:
        p.error("--study-storage must contain {search}: each search needs its own studies")
    if args.analyse and not args.storage_root:
        p.error("--analyse needs --storage-root")
    cells = cells_of(args)
    if not cells:
        p.error(f"no {args.family} cell on {args.datasets} in {args.variants}")
    size = grid_size(args, cells[0])
    args.tpe_trials = args.tpe_trials or math.ceil(size / 3)
    args.storage_root = args.storage_root or tempfile.mkdtemp(prefix="search_efficiency_")
    searches = ["grid", *(f"tpe-s{s}" for s in args.seeds)]
    print(f"{len(cells)} cell(s) {[c.name for c in cells]}, budget {args.budget}: grid of {size} "
          f"trials, TPE+ASHA {args.tpe_trials} trials x seeds {args.seeds}; "
          f"{args.cpus_per_trial:g} CPU per trial; storage {args.storage_root}")  # fmt: skip
    print(f"{os.cpu_count()} cores, load average {load()}")
    if not args.analyse:
        if "://" not in args.storage_root:
            Path(args.storage_root).mkdir(parents=True, exist_ok=True)
        logs = Path(args.storage_root if "://" not in args.storage_root else tempfile.mkdtemp())
        for search in searches:  # one after the other: each has the machine (or cluster) alone
            storage = join(args.storage_root, search)
            if ran_before(storage, cells):
                print(f"[{search}] already in {storage}: its rows are reused (delete it to rerun)")
                continue
            run_sweep(args, search, storage, logs / f"{search}.log")
    for cell in cells:
        report_cell(args, cell, searches)
    if args.budget == "smoke":
        print("\nsmoke budget: 10-batch epochs, at most 2 per trial, ASHA's grace 1 epoch; these "
              "figures check the machinery, they are not evidence about the searches.")  # fmt: skip
    print(f"load average at the end: {load()}")
    print(f"\nthe same at the paper's budget (MNIST, GPU cluster):\n  {paper_command(args)}")


if __name__ == "__main__":
    main()
