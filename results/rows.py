"""The rows a trial leaves in the Parquet store, built from plain data (no Ray, no torch).

The sweep's writer builds them from Tune's live trial as it ends; ``python -m results check
--repair`` builds the same rows from what Tune and the trial's checkpoint left on disk. One function
serves both, so a rebuilt row cannot differ from the row the sweep would have written.
"""

from __future__ import annotations

import json
import math

import pandas as pd

CURVE_KEYS = ("epoch", "train_loss", "val_loss", "val_log_px_z", "val_kl", "beta",
              "epoch_seconds", "epoch_started_at", "resumed_from", "lr",
              "skipped_steps", "val_loss_std")  # fmt: skip
FAILURE_KEYS = ("diverged", "config_error")
"""Result keys with which a trial reports that it failed on its own (not retried: a rerun of the
same config fails the same way)."""
CELL_FIELDS = ("sweep", "paper", "family", "dataset", "likelihood", "variant", "protocol")
SEARCH, SEED = "search", "seed"
"""A trial row's ``role``: a trial of the cell's search, or a re-training of the search's winner
with another training seed (sweeps.engine.seeds; ``seed_of`` names the winner). Only search trials
compete to be the winner; a table's mean ± std is over the winner and its re-trainings."""

SEED_SPREAD = {"search_seeds": 1, "val_loss_std": math.nan, "seed_best_val_losses": ""}
"""A trials row's spread over its training seeds (--search-seeds, training.lockstep), as a trial
of one seed has it, and rows written before these columns read (results.migrate): with N > 1,
``val_loss_std`` is the seeds' standard deviation (n - 1) at the epoch of the best mean (the row's
best_val_loss) and ``seed_best_val_losses`` a JSON list of each seed's own best, in seed order."""

EVALUATION_DEFAULTS = {
    "test_bpd": math.nan,
    "active_units": math.nan,
    "active_units_per_batch": math.nan,
    "latent_dims": -1,
}
"""An evaluations row's values where a family has no posterior means (NaN fractions, -1
dimensions, as training.evaluate); also what rows written before these columns read as
(results.migrate)."""


def evaluation_row(sweep: str, trial_id: str, seed: int, out: dict, provenance: dict) -> dict:
    """One ``evaluations`` row from training.evaluate.estimate_log_likelihood's dict ``out``
    (with the evaluation's cost: wall_seconds, cpu_seconds, gpu_seconds, when measured)."""
    ids = {"sweep": sweep, "trial_id": trial_id, "seed": seed}
    return {**EVALUATION_DEFAULTS, **out, **ids, **provenance}


def key_sources(config: dict, fixed: dict[str, str], given: set[str]) -> dict[str, str]:
    """Where each key of a trial's flat config came from: what fixed it ("cell", "budget",
    "--set", "winner-seeds", as ``fixed`` says), else the search if Tune passed it in (``given``:
    the keys of the trial's config as Tune gave it, fixed and drawn), else the family's
    default."""
    return {k: fixed.get(k) or ("search" if k in given else "default") for k in sorted(config)}


def retraining_sources(winner_sources, config: dict) -> dict[str, str]:
    """Where the keys of a winner's re-training (sweeps.engine.seeds) came from: as the winner's row
    says (its ``key_sources`` JSON; each key "winner" when it records none, or the row is gone:
    results.check's rebuild), and its ``train/seed`` from ``--winner-seeds``."""
    came = json.loads(winner_sources) if isinstance(winner_sources, str) and winner_sources else {}
    return {**(came or dict.fromkeys(config, "winner")), "train/seed": "winner-seeds"}


def timestamp(seconds: float):
    """Unix seconds as a UTC timestamp (NaT when unknown), for people reading the rows."""
    if seconds is None or not math.isfinite(seconds):
        return pd.NaT
    return pd.Timestamp(seconds, unit="s", tz="UTC")


def seed_spread(last: dict, history: list[dict]) -> dict:
    """SEED_SPREAD of a trial from its last result and its checkpointed curve."""
    seeded = [r for r in history if r.get("seed_val_losses")]
    if not seeded:  # one seed, or none of its epochs ended
        return {**SEED_SPREAD, "search_seeds": int(last.get("search_seeds", 1))}
    best = min(seeded, key=lambda r: r["val_loss"])  # the first at the best, as the trial's
    each = zip(*(r["seed_val_losses"] for r in seeded), strict=True)
    return {
        "search_seeds": len(best["seed_val_losses"]),
        "val_loss_std": best.get("val_loss_std", math.nan),
        "seed_best_val_losses": json.dumps([min(vals) for vals in each]),
    }


def trial_status(last: dict, error: str | None) -> tuple[str, str]:
    """(status, reason) of a finished trial from its last result and its error text, if any."""
    if error is not None:
        lines = [ln for ln in str(error).strip().splitlines() if ln.strip()]
        return "errored", (lines[-1] if lines else "the trial failed")[:2000]
    for key in FAILURE_KEYS:
        if key in last:
            return "errored", last[key]
    if last.get("finished"):
        return "completed", last.get("stop_reason", "")
    return "pruned", f"stopped by the scheduler after epoch {last.get('epoch', 0)}"


def trial_row(
    cell: dict,
    trial_id: str,
    config: dict,
    last: dict,
    history: list[dict],
    *,
    error: str | None,
    retries: int,
    checkpoint_path: str,
    gpus: float,
    provenance: dict,
    times: tuple[float, float] = (math.nan, math.nan),
    cpus: float = math.nan,
    sources: dict[str, str] | None = None,
    optuna_trial: int = -1,
    role: str = SEARCH,
    seed_of: str = "",
    warm_start: str = "",
) -> dict:
    """One ``trials`` row. ``cell`` holds CELL_FIELDS; ``config`` is the flat config that ran;
    ``times``: when Tune first started the trial and when its last result reached the driver
    (Unix seconds, from Tune's record of the trial: ``tune_times``); ``cpus``, ``gpus``: its
    resources; ``checkpoint_path``: relative to the storage (results.store.relative);
    ``sources``: where each config key came from (``key_sources``); ``optuna_trial``: the
    number of its Optuna trial (-1: none, e.g. a seed re-training); ``role``, ``seed_of``: see
    SEARCH and SEED; ``warm_start``: where its configuration came from when another sweep's
    cell gave it (sweeps.engine.warm_start), else "". A trial of N training seeds
    (--search-seeds) has their mean as its validation loss, its spread in SEED_SPREAD's
    columns, and wall time that trained all N."""
    status, reason = trial_status(last, error)
    wall = float(last.get("time_total_s", 0.0))
    best = (
        last.get("best_val_loss", math.nan)
        if status == "completed"
        else min((r["val_loss"] for r in history), default=math.nan)
    )
    return {
        **{k: cell[k] for k in CELL_FIELDS},
        "trial_id": trial_id,
        "role": role,
        "seed_of": seed_of,
        "optuna_trial": optuna_trial,
        "warm_start": warm_start,
        "status": status,
        "reason": reason,
        "best_val_loss": best,
        "best_epoch": last.get("best_epoch", -1),
        "epochs": last.get("epoch", 0),
        "retries": retries,  # restarts after a crash or a lost node
        "wall_seconds": wall,
        "started_at": times[0],
        "trial_started_at": last.get("trial_started_at", math.nan),  # the trial function's start
        "ended_at": times[1],
        "start_time": timestamp(times[0]),  # the same two times, readable
        "end_time": timestamp(times[1]),
        "gpu_seconds": wall * gpus,  # the resources it held, not what it used of them
        "cpu_seconds": wall * cpus,
        "seed": config.get("train/seed", 0),
        **seed_spread(last, history),
        "hardware": last.get("hardware", ""),
        "n_parameters": last.get("n_parameters", -1),
        "checkpoint_path": checkpoint_path,
        **provenance,
        "config_json": json.dumps(config, sort_keys=True),  # exact; columns below may widen
        "key_sources": json.dumps(sources or {}, sort_keys=True),
        **{f"config/{k}": v for k, v in config.items()},
    }


def tune_times(run_metadata: dict) -> tuple[float, float]:
    """(started_at, ended_at) from Tune's run metadata of a trial, live or as its experiment
    state saved it, so that a row rebuilt from the storage has the times the first one had.
    NaN when unknown: Tune's ``last_result_time`` is -inf for a trial that never reported
    (its node lost before its first epoch ended)."""

    def known(t):
        return float(t) if t is not None and math.isfinite(t) else math.nan

    return known(run_metadata.get("start_time")), known(run_metadata.get("last_result_time"))


def curve_rows(sweep: str, trial_id: str, history: list[dict]) -> list[dict]:
    """The ``curves`` rows of a trial: one per epoch of its checkpointed history."""
    return [
        {"sweep": sweep, "trial_id": trial_id, **{k: r.get(k) for k in CURVE_KEYS}} for r in history
    ]
