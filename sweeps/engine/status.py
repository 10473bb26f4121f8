"""A sweep's progress read from its storage alone: no Ray, no running driver, nothing written.

python sweeps/vlae.py --status --storage DIR
"""

from __future__ import annotations

import optuna
import pandas as pd

from results import records, rows, store
from sweeps.cells import Budget, Cell
from sweeps.engine.preflight import Refusal
from sweeps.engine.settings import Settings

STATUSES = ("completed", "pruned", "errored")


def cell_progress(storage: str, cell: Cell, trials: pd.DataFrame, study_url: str | None) -> dict:
    """One cell's line: its state, trials by status against its target, the best so far."""
    record = store.cell_record(storage, cell.name)
    study = records.study_trials(storage, cell.name, study_url)
    tune = records.tune_trials(storage, cell.name, seeds=False)
    seeds = trials[trials["role"] == rows.SEED] if not trials.empty else trials
    trials = trials[trials["role"] != rows.SEED] if not trials.empty else trials
    counts = trials["status"].value_counts() if not trials.empty else pd.Series(dtype=int)
    done = trials[trials["status"] == "completed"] if not trials.empty else trials
    running = sum(t.state == optuna.trial.TrialState.RUNNING for t in study or [])
    target = record["trials"] if record else None
    if record is None and study is None and tune is None and trials.empty:
        state = "not started"
    elif (
        tune is not None
        and target is not None
        and len(tune) >= target
        and all(t.ended for t in tune.values())
    ):
        state = "done"
    else:
        state = "in progress"
    return {
        "family": cell.family, "dataset": cell.dataset, "likelihood": cell.likelihood,
        "variant": cell.variant, "protocol": cell.protocol, "state": state,
        **{s: int(counts.get(s, 0)) for s in STATUSES},
        "running": running,
        "target": "?" if target is None else target,
        "seeds": int((seeds["status"] == "completed").sum()) if not seeds.empty else 0,
        "best_val_loss": done["best_val_loss"].min() if not done.empty else float("nan"),
    }  # fmt: skip


def progress(storage: str, cells: list[Cell], study_url: str | None = None) -> pd.DataFrame:
    """Per cell: not started / in progress / done, trials completed, pruned, errored and running
    (RUNNING in the Optuna study: asked, not yet told) against the cell's target, the winner's
    completed re-trainings with other seeds (sweeps.engine.seeds), and the best validation loss."""
    trials = store.load(storage, "trials")
    lines = []
    for cell in cells:
        mine = trials[trials["sweep"] == cell.name] if not trials.empty else trials
        lines.append(cell_progress(storage, cell, mine, study_url))
    return pd.DataFrame(lines)


def print_status(settings: Settings, chosen: list[Cell], budget: Budget) -> int:
    """The sweep's progress from --storage alone (read-only: creates nothing)."""
    if not store.exists(settings.storage):
        raise Refusal(f"no sweep under {settings.storage}")
    print(progress(settings.storage, chosen, settings.study_storage).to_string(index=False))
    return 0
