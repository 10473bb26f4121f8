"""What each paper's `paper` budget costs on a GPU cluster: wall time, GPU-hours, utilisation.

A schedule, computed, not run: no GPU was measured on the machine this was written on. For every
paper the sweep's cells and its `paper` budget give each trial's epochs under ASHA, the winner's
re-trainings with other seeds and the evaluations (winner_seeds x eval_seeds tasks of k importance
samples over the test set); a list scheduler then places them on G GPUs at f GPUs per trial,
twice:

  sequential  cells one after another, each cell's evaluation before the next cell starts
              (--cells sequential, the platform's old way)
  in flight   every cell at once, lower cells first, each evaluation as soon as its cell ends
              (the default: sweeps.engine.in_flight and sweeps.engine.slots)

Units. Time is in E, one training epoch of the paper's model on one whole GPU, unless
``--epoch-seconds paper=S`` (or ``--pilot STORAGE``: the median epoch_seconds of a sweep's curves,
run on the cluster's GPUs) gives E in seconds, when it prints hours. A trial at f GPUs runs an
epoch in E·max(1, u/f), u = the share of a GPU one trial uses alone (``--gpu-use``, 1.0 = a trial
fills a GPU: sharing then only stretches trials; a small MLP fills far less and sharing gains).

The model (ASHA, re-trainings, evaluations, the list schedule) is sweeps.engine.cost's, which
the sweeps' --dry-run uses too; its docstring has the arithmetic. Here besides:
  start-up  each trial and evaluation also holds its slot ``--startup-seconds`` (measured by
            benchmarks/utilisation.py: a fresh worker process's imports, the model, the data).
  order     trial lengths are drawn in a seeded random order within each cell (TPE does not
            know which trial ASHA will keep); the figures are the mean over ``--orders`` orders.

Run:  python benchmarks/capacity.py [--papers vlae,...] [--gpus 8,32,128] [--shares 1,0.5,0.25]
                                    [--gpu-use 1.0] [--epoch-seconds vlae=12] [--pilot STORAGE]
"""

from __future__ import annotations

import argparse
import importlib
import random
import statistics

from sweeps.engine.cost import Job, cell_cost, cell_jobs, schedule

PAPERS = ("spvae", "hyperspherical", "vlae", "dct_vae", "dvp_vae")


def paper_jobs(paper: str, order_seed: int) -> list[list[Job]]:
    """Per cell (in the sweep's order): its trials, re-trainings, evaluations (cost.cell_jobs)."""
    module = importlib.import_module(f"sweeps.{paper}")
    budget = module.BUDGETS["paper"]
    rng = random.Random(order_seed)
    return [cell_jobs(rank, cell_cost(cell, budget), rng=rng)
            for rank, cell in enumerate(module.CELLS)]  # fmt: skip


def span(x: float, epoch_seconds: float | None, prefix: str = "") -> str:
    """x epochs in hours when E is known in seconds, else in E."""
    if epoch_seconds:
        return f"{x * epoch_seconds / 3600:,.0f} {prefix}h"
    return f"{x:,.0f} {prefix}E"


def pilot_epoch_seconds(storage: str) -> dict[str, float]:
    from results import store

    curves, trials = store.load(storage, "curves"), store.load(storage, "trials")
    paper = trials.set_index("trial_id")["paper"]
    curves = curves.assign(paper=curves["trial_id"].map(paper))
    return curves.groupby("paper")["epoch_seconds"].median().to_dict()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--papers", default=",".join(PAPERS))
    ap.add_argument("--gpus", default="8,32,128")
    ap.add_argument("--shares", default="1,0.5,0.25", help="GPUs per trial")
    ap.add_argument("--gpu-use", type=float, default=1.0, help="u: a lone trial's share of a GPU")
    ap.add_argument(
        "--startup-seconds",
        type=float,
        default=0.0,
        help="slot time per trial outside its epochs (benchmarks/utilisation.py)",
    )
    ap.add_argument("--epoch-seconds", default="", help="paper=S,...: E in seconds, on one GPU")
    ap.add_argument("--pilot", help="a sweep's storage run on the cluster: E from its curves")
    ap.add_argument("--orders", type=int, default=5)
    args = ap.parse_args(argv)
    papers = args.papers.split(",")
    if unknown := sorted(set(papers) - set(PAPERS)):
        ap.error(f"unknown paper(s) {unknown}; choose from {list(PAPERS)}")
    try:
        pairs = [kv.split("=") for kv in args.epoch_seconds.split(",") if kv]
        seconds = {k: float(v) for k, v in pairs}
    except ValueError:
        ap.error(f"--epoch-seconds {args.epoch_seconds!r}: give paper=seconds,... (vlae=12.5)")
    if args.pilot:
        from results import store

        if not store.exists(args.pilot):
            ap.error(f"--pilot: no sweep under {args.pilot}")
        try:
            seconds = {**pilot_epoch_seconds(args.pilot), **seconds}
        except (OSError, store.StorageError) as e:
            ap.error(f"--pilot: {e}")
    print("paper | GPUs | GPUs/trial | in flight: wall, util | sequential: wall, util | work")
    for paper in papers:
        orders = [paper_jobs(paper, s) for s in range(args.orders)]
        e = seconds.get(paper)
        for gpus in map(int, args.gpus.split(",")):
            for share in map(float, args.shares.split(",")):
                slots, stretch = int(gpus / share), max(1.0, args.gpu_use / share)
                startup = args.startup_seconds / e if e else 0.0
                res = {}
                for together in (True, False):
                    runs = [schedule(o, slots, stretch, startup, together) for o in orders]
                    wall = statistics.mean(r[0] for r in runs)
                    work = statistics.mean(r[1] for r in runs) * share
                    res[together] = (wall, work / (gpus * wall), work)
                (w1, u1, work), (w0, u0, _) = res[True], res[False]
                print(f"{paper} | {gpus} | {share:g} | {span(w1, e)}, {u1:.0%} | "
                      f"{span(w0, e)}, {u0:.0%} | {span(work, e, 'GPU-')}")  # fmt: skip


if __name__ == "__main__":
    main()
