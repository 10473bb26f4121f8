"""What each paper's `paper` budget costs on a GPU cluster: wall time, GPU-hours, utilisation.

A schedule, computed, not run: no GPU was measured on the machine this was written on. For every
paper the sweep's cells and its `paper` budget give each trial's epochs under ASHA, and each
cell's winner evaluation (eval_seeds tasks of k importance samples over the test set); a list
scheduler then places them on G GPUs at f GPUs per trial, twice:

  sequential  cells one after another, each cell's evaluation before the next cell starts
              (--cells sequential, the platform's old way)
  in flight   every cell at once, lower cells first, each evaluation as soon as its cell ends
              (the default: sweeps.engine.in_flight and sweeps.engine.slots)

Units. Time is in E, one training epoch of the paper's model on one whole GPU, unless
``--epoch-seconds paper=S`` (or ``--pilot STORAGE``: the median epoch_seconds of a sweep's curves,
run on the cluster's GPUs) gives E in seconds, when it prints hours. A trial at f GPUs runs an
epoch in E·max(1, u/f), u = the share of a GPU one trial uses alone (``--gpu-use``, 1.0 = a trial
fills a GPU: sharing then only stretches trials; a small MLP fills far less and sharing gains).

The model, so that its figures can be checked by hand:
  ASHA      rungs at grace·rf^i below max_epochs; of N trials, round(N/rf^i) (at least one) go on
            past rung i; the best runs max_epochs (patience never stops it early: an upper bound).
  eval      one evaluation seed = n_test·k forward passes at a third of a training image's cost
            (no backward pass): n_test·k / (3·epoch images) epochs; seeds run side by side.
  start-up  each trial and evaluation also holds its slot ``--startup-seconds`` (measured by
            benchmarks/utilisation.py: a fresh worker process's imports, the model, the data).
  order     trial lengths are drawn in a seeded random order within each cell (TPE does not
            know which trial ASHA will keep); the figures are the mean over ``--orders`` orders.

Run:  python benchmarks/capacity.py [--papers vlae,...] [--gpus 8,32,128] [--shares 1,0.5,0.25]
                                    [--gpu-use 1.0] [--epoch-seconds vlae=12] [--pilot STORAGE]
"""

from __future__ import annotations

import argparse
import heapq
import importlib
import random
import statistics
from dataclasses import dataclass

PAPERS = ("spvae", "hyperspherical", "vlae", "dct_vae", "dvp_vae")
# images per split of each dataset's files (train file, test file); the validation images come
# out of the train file (data/val_size, data/val_fraction, or the dataset's own rule)
IMAGES = {
    "mnist": (60_000, 10_000),
    "fashion_mnist": (60_000, 10_000),
    "static_mnist": (50_000, 10_000),  # its own 10,000-image validation file besides
    "omniglot": (24_345 - 1_345, 8_070),
    "cifar10": (50_000, 10_000),
    "svhn": (73_257, 26_032),
}


@dataclass
class Job:
    cell: int  # the cell's rank: lower first
    epochs: float  # in E at one whole GPU per trial
    evaluation: bool = False


def asha_epochs(trials: int, grace: int, rf: int, max_epochs: int) -> list[int]:
    """Each trial's epochs under ASHA's expected survival (module docstring)."""
    rungs = []
    r = grace
    while r < max_epochs:
        rungs.append(r)
        r *= rf
    out = []
    for j in range(trials):
        # trial j passes rung i when j < round(trials / rf^(i+1)) (at least the best one)
        passed = [i for i in range(len(rungs)) if j < max(1, round(trials / rf ** (i + 1)))]
        out.append(max_epochs if len(passed) == len(rungs) else rungs[len(passed)])
    return out


def epoch_images(cell, budget) -> int:
    fixed = {**budget.fixed, **cell.fixed}
    if "train/epoch_batches" in fixed:
        return fixed["train/epoch_batches"] * fixed.get("train/batch_size", 128)
    train = IMAGES[cell.dataset][0]
    if fixed.get("data/val_size"):
        return train - fixed["data/val_size"]
    return round(train * (1 - fixed.get("data/val_fraction", 0.1)))


def paper_jobs(paper: str, order_seed: int) -> list[list[Job]]:
    """Per cell (in the sweep's order): its trials, then its evaluation seeds."""
    module = importlib.import_module(f"sweeps.{paper}")
    budget = module.BUDGETS["paper"]
    rng = random.Random(order_seed)
    cells = []
    for rank, cell in enumerate(module.CELLS):
        lengths = asha_epochs(budget.trials, budget.grace_epochs, budget.reduction_factor,
                              budget.max_epochs)  # fmt: skip
        rng.shuffle(lengths)
        eval_epochs = IMAGES[cell.dataset][1] * budget.eval_k / (3 * epoch_images(cell, budget))
        evaluation = [Job(rank, eval_epochs, True) for _ in range(budget.eval_seeds)]
        cells.append([Job(rank, e) for e in lengths] + evaluation)
    return cells


def schedule(cells: list[list[Job]], slots: int, stretch: float, startup: float, together: bool):
    """(makespan, busy slot-time) in E of a greedy list schedule (module docstring)."""
    clock, busy = 0.0, 0.0
    groups = [cells] if together else [[c] for c in cells]
    for group in groups:
        waiting = [[j for j in c if not j.evaluation] for c in group]
        evals = {c[0].cell: [j for j in c if j.evaluation] for c in group}
        left = {c[0].cell: len(waiting[i]) for i, c in enumerate(group)}
        running: list[tuple[float, int, bool]] = []  # (end, cell, evaluation)
        ready: list[Job] = []
        t = clock
        while True:
            while len(running) < slots:
                job = ready.pop(0) if ready else next((w.pop(0) for w in waiting if w), None)
                if job is None:
                    break
                length = job.epochs * stretch + startup
                busy += length
                heapq.heappush(running, (t + length, job.cell, job.evaluation))
            if not running:
                break
            t, cell, evaluation = heapq.heappop(running)
            if not evaluation:
                left[cell] -= 1
                if left[cell] == 0:
                    ready.extend(evals[cell])  # evaluation tasks are placed before trials
        clock = t
    return clock, busy


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
