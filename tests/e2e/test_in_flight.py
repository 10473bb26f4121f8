"""Cells in flight together (sweeps.engine.in_flight): each still its own experiment, study and
winner. The slots they share: tests/unit/test_slots.py."""

from __future__ import annotations

import itertools
import shutil
import threading
import time

import optuna
import pandas as pd
import pytest

from results import store
from sweeps.cells import Budget, Cell
from sweeps.engine import cli, in_flight
from sweeps.engine.tuner import optuna_storage

CELLS = [
    Cell("vlae", family, "fashion_mnist", "bernoulli", fixed={"data/binarize": True})
    for family in ("vae", "vae_hf", "vae_iaf")
]
BUDGET = Budget(
    trials=2,
    max_epochs=3,
    grace_epochs=1,
    reduction_factor=2,
    patience=3,
    eval_k=3,
    eval_seeds=1,
    # Each step padded to 0.3 s (a slower device): trials last seconds, long enough that the
    # second cell's first trial starts while the first cell's are running.
    fixed={
        "model/hidden_dim": 16,
        "train/batch_size": 32,
        "train/epoch_batches": 3,
        "train/step_seconds": 0.3,
    },
)


def intervals(curves: pd.DataFrame) -> pd.DataFrame:
    """Each trial's training span: its first epoch's start to its last epoch's end."""
    c = curves.assign(end=curves["epoch_started_at"] + curves["epoch_seconds"])
    return c.groupby(["sweep", "trial_id"]).agg(
        start=("epoch_started_at", "min"), end=("end", "max")
    )


def most_at_once(spans: pd.DataFrame) -> int:
    events = sorted([(s, 1) for s in spans["start"]] + [(e, -1) for e in spans["end"]])
    return max(itertools.accumulate(d for _, d in events))


@pytest.mark.slow
def test_cells_in_flight_together_keep_their_own_trials_studies_and_winners(
    ray_local, tmp_path, monkeypatch
):
    monkeypatch.setattr(in_flight, "CELLS_PER_PROCESS", 2)  # two controller processes: 2 + 1
    argv = ["--storage", str(tmp_path), "--datasets", "fashion_mnist", "--max-concurrent", "3"]
    assert cli.main("vlae", CELLS, {"smoke": BUDGET}, {}, argv=argv) == 0
    trials = store.load(str(tmp_path), "trials")
    evaluations = store.load(str(tmp_path), "evaluations")
    spans = intervals(store.load(str(tmp_path), "curves"))
    for cell in CELLS:
        mine = trials[trials["sweep"] == cell.name]
        assert len(mine) == BUDGET.trials and mine["trial_id"].is_unique
        assert (mine["family"] == cell.family).all()
        assert (mine["status"] == "completed").any()  # ASHA of this cell let its best finish
        study = optuna.load_study(
            study_name=cell.name, storage=optuna_storage(str(tmp_path), cell)
        ).trials
        ran = [t for t in study if "duplicate_of" not in t.user_attrs]
        assert {t.user_attrs["tune_trial_id"] for t in ran} == set(mine["trial_id"])
        assert all(t.user_attrs["tune_experiment"].endswith(cell.name) for t in ran)
        # The winner is this cell's best completed trial, whatever the other cells found.
        done = mine[mine["status"] == "completed"]
        best = done.loc[done["best_val_loss"].idxmin(), "trial_id"]
        assert set(evaluations[evaluations["sweep"] == cell.name]["trial_id"]) == {best}
    # One cap for all cells: never more than 3 trials trained at once ...
    assert most_at_once(spans) <= 3
    # ... and cells overlapped: the first cell's 2 trials left the third slot to the second.
    by_cell = spans.reset_index().groupby("sweep").agg(start=("start", "min"), end=("end", "max"))
    overlaps = [
        a.end > b.start and b.end > a.start
        for (_, a), (_, b) in itertools.combinations(by_cell.iterrows(), 2)
    ]
    assert any(overlaps), by_cell
    # The driver's clock: every trial started before it ended.
    assert (trials["ended_at"] > trials["started_at"]).all()


@pytest.mark.slow
def test_a_storage_that_stops_being_writable_mid_sweep_ends_with_a_clear_error(
    ray_local, tmp_path, capsys
):
    """The results folder is replaced by a file once the first trial's row is written: the
    cells' writers fail, and the sweep ends (no hang) saying which file it could not write."""
    storage = tmp_path / "s"
    results = storage / "results"

    def break_storage():
        deadline = time.time() + 600
        while time.time() < deadline:
            if list((results / "trials").glob("*/*.parquet")):
                shutil.move(results, tmp_path / "moved")
                results.write_text("not a folder any more")
                return
            time.sleep(0.05)

    breaker = threading.Thread(target=break_storage, daemon=True)
    breaker.start()
    argv = ["--storage", str(storage), "--datasets", "fashion_mnist", "--max-concurrent", "2"]
    code = cli.main("vlae", CELLS[:2], {"smoke": BUDGET}, {}, argv=argv)
    breaker.join(timeout=1)
    err = capsys.readouterr().err
    assert code != 0
    assert "cannot write" in err and str(results) in err, err[-3000:]
