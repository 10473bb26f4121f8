"""What a cell's Optuna study minimises (``--objectives``): validation loss alone, or it and the
trial's cost, each read from what its Parquet row records (results.rows.trial_row).

    values(objectives, row) -> [float]        the values a COMPLETE trial is told
    result_row(result, gpus) -> dict          those columns of a trial's last Tune result
    sampler(objectives, trials, seed)         the Optuna sampler for that many trials

Light: Optuna only (no Ray, no torch), so --help and the preflight checks stay fast.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import optuna

from results.studies import OBJECTIVE
from search_spaces.versions import FittingTPESampler

VAL_LOSS = "val_loss"
OBJECTIVES = (VAL_LOSS, "params", "gpu_hours", "epoch_seconds")
"""The choices of --objectives; the first must be val_loss (ASHA prunes on it: Tune's metric)."""
METRIC_NAMES = {
    VAL_LOSS: OBJECTIVE,  # best validation loss (-ELBO, nats)
    "params": "n_parameters",
    "gpu_hours": "gpu_hours",  # the GPUs the trial held times its wall time
    "epoch_seconds": "epoch_seconds",  # its wall seconds over its epochs
}
"""The name of each objective in the study (optuna-dashboard's axes)."""
NSGA_FROM = 1000
"""From this many trials in a cell, a multi-objective search samples with NSGA-II; below, with
TPE. Optuna's docs: TPE (or GP) is "worth considering" for fewer than 1000 trials, being the more
sample-efficient; NSGA-II's generations of 50 need many more."""
INTERMEDIATE = "intermediate_value/"
"""User attribute prefix of a multi-objective trial's per-epoch val_loss (``intermediate_value/3``
for epoch 3): Optuna's Trial.report is single-objective only."""
PRUNING = "pruning"
PRUNING_NOTE = (
    "PRUNED trials were stopped by Tune's scheduler (ASHA) on val_loss, the first objective; "
    f"their per-epoch val_loss is kept as user attributes {INTERMEDIATE}<epoch>"
)
"""The study user attribute a multi-objective study carries: who pruned, on what."""


def values(objectives: Sequence[str], row: Mapping) -> list[float]:
    """The objectives of a trial from its row's columns (best_val_loss, n_parameters,
    gpu_seconds, wall_seconds, epochs). A trial on CPU held no GPU: 0 GPU-hours (the sweep
    refuses gpu_hours where trials get no GPU: sweeps.engine.preflight.check_objective_costs)."""
    out = []
    for name in objectives:
        if name == VAL_LOSS:
            out.append(float(row["best_val_loss"]))
        elif name == "params":
            out.append(float(row["n_parameters"]))
        elif name == "gpu_hours":
            out.append(float(row["gpu_seconds"]) / 3600)
        elif name == "epoch_seconds":
            epochs = float(row["epochs"])
            out.append(float(row["wall_seconds"]) / epochs if epochs > 0 else math.nan)
        else:
            raise ValueError(f"unknown objective {name!r}; choose from {list(OBJECTIVES)}")
    return out


def result_row(result: Mapping, gpus: float) -> dict:
    """The row columns ``values`` reads, from a trial's last Tune result and the GPUs it held,
    computed as results.rows.trial_row computes them."""
    wall = float(result.get("time_total_s", 0.0))
    return {
        "best_val_loss": result.get("best_val_loss", math.nan),
        "n_parameters": result.get("n_parameters", -1),
        "gpu_seconds": wall * gpus,
        "wall_seconds": wall,
        "epochs": result.get("epoch", 0),
    }


def metric_names(objectives: Sequence[str]) -> list[str]:
    return [METRIC_NAMES[name] for name in objectives]


def sampler(objectives: Sequence[str], trials: int, seed: int,
            space: dict | None = None) -> optuna.samplers.BaseSampler:  # fmt: skip
    """TPE for one objective; for several, TPE below NSGA_FROM trials, NSGA-II from it. TPE
    learns from the study's trials that fit ``space`` (search_spaces.versions.FittingTPESampler:
    the version of the cell's space this run draws from; None: every trial)."""
    if len(objectives) > 1 and trials >= NSGA_FROM:
        return optuna.samplers.NSGAIISampler(seed=seed)
    return FittingTPESampler(seed=seed, space=space)
