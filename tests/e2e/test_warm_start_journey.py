"""Searches that build on each other, on a real local Ray instance: a pilot sweep seeds a new
storage (--warm-start), then the new cell goes on under a widened space (--add-trials); every
trial once in Tune, Optuna and Parquet throughout (tests/unit/test_warm_start.py holds the rest)."""

from __future__ import annotations

import dataclasses

import optuna
import pytest

import search_spaces
from results import check, store
from results.__main__ import main as results_main
from sweeps.engine import cli, warm_start
from sweeps.engine.tuner import optuna_storage
from tests.unit.test_sweep import CELL, TINY

pytestmark = pytest.mark.slow


def widened(trial):
    """The VAE's space with a latent size it did not offer and a longer warm-up."""
    trial.suggest_categorical("model/latent_dim", [16, 32, 50, 64])
    trial.suggest_categorical("model/hidden_dim", [256, 500, 512])
    trial.suggest_float("train/lr", 1e-4, 3e-3, log=True)
    trial.suggest_categorical("train/batch_size", [64, 128, 256])
    trial.suggest_float("train/warmup_epochs", 0.0, 20.0)


def test_a_pilot_seeds_a_new_storage_which_then_goes_on_under_a_widened_space(
    ray_local, tmp_path, capsys, monkeypatch
):
    budget = dataclasses.replace(TINY, trials=2, eval_seeds=1)
    pilot, main = str(tmp_path / "pilot"), str(tmp_path / "main")
    base = ["--datasets", "fashion_mnist"]
    assert cli.main("vlae", [CELL], {"smoke": budget}, {}, argv=["--storage", pilot, *base]) == 0
    ran = store.load(pilot, "trials")
    done = ran[ran["status"] == "completed"].sort_values("best_val_loss")
    assert len(done) >= 1, ran[["trial_id", "status"]]
    capsys.readouterr()

    argv = ["--storage", main, *base, "--trials", "3", "--warm-start", pilot,
            "--warm-start-best", "1"]  # fmt: skip
    assert cli.main("vlae", [CELL], {"smoke": budget}, {}, argv=argv) == 0
    out = capsys.readouterr().out
    assert f"warm start from {pilot}: {CELL.name}: its best 1 configuration run first" in out
    rows = store.load(main, "trials")
    assert len(rows) == 3 and set(rows["trial_id"]).isdisjoint(ran["trial_id"])
    study = optuna.load_study(study_name=CELL.name, storage=optuna_storage(main, CELL))
    informing = [t for t in study.trials if warm_start.FROM in t.user_attrs]
    assert len(informing) == len(done) and not any("tune_trial_id" in t.user_attrs
                                                   for t in informing)  # fmt: skip
    first = min(
        (t for t in study.trials if "tune_trial_id" in t.user_attrs), key=lambda t: t.number
    )
    best = done.iloc[0]
    assert first.user_attrs[warm_start.OF] == f"{pilot}: {CELL.name} trial {best['trial_id']}"
    row = rows.set_index("trial_id").loc[first.user_attrs["tune_trial_id"]]
    assert row["warm_start"] == first.user_attrs[warm_start.OF]
    assert (rows["warm_start"] == "").sum() == 2  # the sampler drew the others
    assert not [d.line() for s in check.check(main).values() for d in check.differences(s)]
    assert results_main(["table", "vlae", "--storage", main]) == 0
    table = " ".join(capsys.readouterr().out.split())  # its notes wrap
    assert f"{CELL.name}: warm-started from {pilot}: {CELL.name}; its best 1 configuration" in table

    monkeypatch.setitem(search_spaces.SPACES, "vae", widened)
    argv = ["--storage", main, *base, "--add-trials", "2"]
    assert cli.main("vlae", [CELL], {"smoke": budget}, {}, argv=argv) == 0
    out = capsys.readouterr().out
    assert "its search space changed: version 2" in out
    assert "train/warmup_epochs: [0, 10] -> [0, 20]" in out
    record = store.cell_record(main, CELL.name)
    assert [v["version"] for v in record["space_versions"]] == [1, 2]
    study = optuna.load_study(study_name=CELL.name, storage=optuna_storage(main, CELL))
    ours = [t for t in study.trials if "tune_trial_id" in t.user_attrs]
    assert len(ours) == 5 and len(store.load(main, "trials")) == 5
    newest = sorted(ours, key=lambda t: t.number)[-2:]
    assert all(t.user_attrs["space_version"] == 2 for t in newest)
    assert all(t.number >= record["space_versions"][1]["from_trial"] for t in newest)
    assert not [d.line() for s in check.check(main).values() for d in check.differences(s)]
    assert results_main(["table", "vlae", "--storage", main]) == 0
    assert "searched under 2 versions of its space" in " ".join(capsys.readouterr().out.split())

    def categorical(trial):  # a change one study cannot hold: refused before anything starts
        trial.suggest_categorical("model/latent_dim", [16, 128])

    monkeypatch.setitem(search_spaces.SPACES, "vae", categorical)
    assert cli.main("vlae", [CELL], {"smoke": budget}, {}, argv=argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--warm-start " + main in err[0] and "model/latent_dim" in err[0]
