"""--objectives on a real local Ray instance: a multi-objective study told each completed trial's
values, then `results pareto` on what the sweep left (tests/unit/test_objectives.py and
test_pareto.py hold the rest)."""

from __future__ import annotations

import dataclasses

import optuna
import pytest

from results import store
from results.__main__ import main as results_main
from sweeps.engine import cli
from sweeps.engine.tuner import optuna_storage
from tests.unit.test_sweep import CELL, TINY

pytestmark = pytest.mark.slow


def test_a_two_objective_smoke_sweep_and_its_pareto_front(ray_local, tmp_path, capsys):
    budget = dataclasses.replace(TINY, trials=3, eval_seeds=1)
    argv = ["--storage", str(tmp_path), "--datasets", "fashion_mnist",
            "--objectives", "val_loss", "params"]  # fmt: skip
    assert cli.main("vlae", [CELL], {"smoke": budget}, {}, argv=argv) == 0
    rows = store.load(str(tmp_path), "trials").set_index("trial_id")
    study = optuna.load_study(study_name=CELL.name, storage=optuna_storage(str(tmp_path), CELL))
    assert study.metric_names == ["best_val_loss", "n_parameters"] and len(study.trials) == 3
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert done, [t.state for t in study.trials]
    for t in done:
        row = rows.loc[t.user_attrs["tune_trial_id"]]
        assert t.values == pytest.approx([row["best_val_loss"], row["n_parameters"]])
        assert t.user_attrs["intermediate_value/1"] is not None and not t.intermediate_values
    assert store.cell_record(str(tmp_path), CELL.name)["objectives"] == ["val_loss", "params"]
    capsys.readouterr()
    assert results_main(["pareto", "vlae", "--storage", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "FashionMNIST: validation loss vs parameters:" in out and "<- table pick" in out
    assert (tmp_path / "plots" / "vlae-pareto.png").is_file()
