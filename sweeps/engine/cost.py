"""What a sweep's budget costs before it runs, in epochs: plain arithmetic, no Ray, no torch.

The sweep's --dry-run and its confirmation (sweeps.engine.estimate) and benchmarks/capacity.py
both compute with it. The model, so that its figures can be checked by hand:

  ASHA      rungs at grace·rf^i below max_epochs; of N trials, round(N / rf^(i+1)) (at least
            one) go on past rung i, the others stop at it; the best runs max_epochs (patience
            never stops it early: an upper bound).
            A cell's own train/max_epochs replaces the budget's; --sampler grid: no pruning.
            --search-seeds N: each trial's epochs times N (its N seeds train one after another
            within each of its epochs: training.lockstep).
  seeds     the winner trained winner_seeds - 1 more times from scratch after the search
            (sweeps.engine.seeds), max_epochs each (an upper bound).
  eval      each of the winner_seeds trained models evaluated with eval_seeds importance-sampling
            seeds; one seed is n_test·k forward passes at a third of a training image's cost
            (no backward pass): n_test·k / (3·epoch images) epochs.
  schedule  a greedy list schedule of those jobs on a number of slots: a cell's re-trainings
            start when its search has ended, its evaluations when its re-trainings have, and
            ahead of any waiting search trial (as the sweep does).
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass

from sweeps.cells import Budget, Cell

IMAGES = {
    "mnist": (60_000, 10_000),
    "fashion_mnist": (60_000, 10_000),
    "static_mnist": (50_000, 10_000),  # its own 10,000-image validation file besides
    "omniglot": (24_345 - 1_345, 8_070),
    "cifar10": (50_000, 10_000),
    "svhn": (73_257, 26_032),
}
"""Images per split of each dataset's files (train file, test file); the validation images come
out of the train file (data/val_size, data/val_fraction, or the dataset's own rule)."""


def asha_epochs(trials: int, grace: int, rf: int, max_epochs: int) -> list[int]:
    """Each trial's epochs under ASHA's expected survival (module docstring), best first."""
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


def epoch_images(dataset: str, fixed: dict) -> int:
    """Training images in one epoch of a trial whose flat config fixes ``fixed``."""
    if fixed.get("train/epoch_batches"):
        return fixed["train/epoch_batches"] * fixed.get("train/batch_size", 128)
    train = IMAGES[dataset][0]
    if fixed.get("data/val_size"):
        return train - fixed["data/val_size"]
    return round(train * (1 - fixed.get("data/val_fraction", 0.1)))


@dataclass(frozen=True)
class CellCost:
    """One cell's work under a budget, each entry in epochs of the cell's training."""

    trials: tuple[int, ...]  # each search trial under ASHA, times its training seeds
    retrainings: tuple[int, ...]  # the winner's other training seeds
    evaluations: tuple[float, ...]  # each (trained model, importance-sampling seed)

    @property
    def training_epochs(self) -> int:
        return sum(self.trials) + sum(self.retrainings)

    @property
    def epochs(self) -> float:
        """Everything, evaluations included."""
        return self.training_epochs + sum(self.evaluations)


def cell_cost(cell: Cell, budget: Budget, trials: int | None = None,
              pruned: bool = True) -> CellCost:  # fmt: skip
    """The work of ``cell`` under ``budget`` (module docstring): ``trials`` instead of the
    budget's, and without ASHA when not ``pruned`` (--sampler grid). The cell's own
    train/max_epochs, where it sets one, is ASHA's top rung, as in sweeps.engine.tuner."""
    config = cell.base_config(budget)
    top = config["train/max_epochs"]
    n = trials or budget.trials
    epochs = (asha_epochs(n, min(budget.grace_epochs, top), budget.reduction_factor, top)
              if pruned else [top] * n)  # fmt: skip
    one = IMAGES[cell.dataset][1] * budget.eval_k / (3 * epoch_images(cell.dataset, config))
    return CellCost(
        tuple(e * budget.search_seeds for e in epochs),
        (top,) * (budget.winner_seeds - 1),
        (one,) * (budget.winner_seeds * budget.eval_seeds),
    )


@dataclass
class Job:
    cell: int  # the cell's rank: lower first
    length: float  # in the schedule's unit (epochs, or seconds)
    phase: int = 0  # 0: search trial, 1: re-training, 2: evaluation


def cell_jobs(rank: int, cost: CellCost, epoch: float = 1.0, rng: random.Random | None = None):
    """``cost`` as jobs of ``epoch`` units per epoch; the search trials in ``rng``'s order (TPE
    does not know which trial ASHA will keep), else best first."""
    trials = list(cost.trials)
    if rng is not None:
        rng.shuffle(trials)
    return ([Job(rank, e * epoch) for e in trials]
            + [Job(rank, e * epoch, 1) for e in cost.retrainings]
            + [Job(rank, e * epoch, 2) for e in cost.evaluations])  # fmt: skip


def schedule(cells: list[list[Job]], slots: int, stretch: float = 1.0, startup: float = 0.0,
             together: bool = True) -> tuple[float, float]:  # fmt: skip
    """(makespan, busy slot-time) of a greedy list schedule of each cell's jobs on ``slots``
    slots, each job ``stretch`` times longer plus ``startup``; ``together``: every cell in
    flight at once, lower cells first, else one cell after another."""
    clock, busy = 0.0, 0.0
    groups = [cells] if together else [[c] for c in cells]
    for group in groups:
        waiting, later, left = [], {}, {}
        for jobs in group:
            phases = [[j for j in jobs if j.phase == p] for p in sorted({j.phase for j in jobs})]
            waiting.append(phases[0])
            later[jobs[0].cell] = phases[1:]
            left[jobs[0].cell] = len(phases[0])
        running: list[tuple[float, int]] = []  # (end, cell)
        ready: list[Job] = []  # a cell's next phase: placed before waiting search trials
        t = clock
        while True:
            while len(running) < slots:
                job = ready.pop(0) if ready else next((w.pop(0) for w in waiting if w), None)
                if job is None:
                    break
                length = job.length * stretch + startup
                busy += length
                heapq.heappush(running, (t + length, job.cell))
            if not running:
                break
            t, cell = heapq.heappop(running)
            left[cell] -= 1
            if left[cell] == 0 and later[cell]:
                ready.extend(later[cell][0])
                left[cell] = len(later[cell].pop(0))
        clock = t
    return clock, busy
