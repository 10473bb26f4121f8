"""A sweep's progress read from its storage alone: no Ray, no running driver needed.

python sweeps/vlae.py --status --storage DIR
"""

from __future__ import annotations

import optuna
import pandas as pd

from results import store
from sweeps.cells import Cell
from sweeps.tune_glue import optuna_storage


def running_trials(storage: str, cell: Cell, study_storage: str | None) -> int:
    """Trials the Optuna study holds as RUNNING (asked, not yet told): in flight right now."""
    try:
        study = optuna.load_study(
            study_name=cell.name, storage=optuna_storage(study_storage or storage, cell)
        )
    except KeyError:  # no study yet: the cell has not started
        return 0
    return sum(t.state == optuna.trial.TrialState.RUNNING for t in study.trials)


def progress(storage: str, cells: list[Cell], study_storage: str | None = None) -> pd.DataFrame:
    """Per cell: trials completed / pruned / errored / running, and the best validation loss."""
    trials = store.load(storage, "trials")
    rows = []
    for cell in cells:
        mine = trials[trials["sweep"] == cell.name] if not trials.empty else trials
        counts = mine["status"].value_counts() if not mine.empty else pd.Series(dtype=int)
        done = mine[mine["status"] == "completed"] if not mine.empty else mine
        rows.append({
            "family": cell.family, "dataset": cell.dataset, "likelihood": cell.likelihood,
            "variant": cell.variant,
            **{s: int(counts.get(s, 0)) for s in ("completed", "pruned", "errored")},
            "running": running_trials(storage, cell, study_storage),
            "best_val_loss": done["best_val_loss"].min() if not done.empty else float("nan"),
        })  # fmt: skip
    return pd.DataFrame(rows)
