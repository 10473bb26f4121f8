"""The sweep's flags parsed once into a frozen Settings (sweeps.engine.settings): read by every
step, changed by none, and sent pickled to the cells' CellControllers actor."""

from __future__ import annotations

import dataclasses
import os
import pickle

import pytest

from sweeps import vlae
from sweeps.engine import cli
from sweeps.engine.settings import Settings
from training.config import ConfigError


def settings(*argv: str) -> Settings:
    return cli.parse_args(list(argv), "vlae", vlae.CELLS, vlae.BUDGETS, vlae.DEFAULT_DATASETS,
                          vlae.PROTOCOLS)  # fmt: skip


def test_the_settings_are_frozen_and_a_change_is_a_new_object():
    s = settings("--storage", "rel/dir")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.max_concurrent = 4  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.study_storage = "sqlite:///x.db"  # type: ignore[misc]
    changed = dataclasses.replace(s, study_storage="sqlite:////abs/x.db")
    assert changed.study_storage == "sqlite:////abs/x.db" and s.study_storage is None


def test_set_items_are_parsed_once_into_typed_values():
    s = settings("--set", "train/lr=0.001", "--set", "model/hidden_dim=16", "--set",
                 "data/root=/data", "--set", "train/lr=1e-4")  # fmt: skip
    assert s.set == ("train/lr=0.001", "model/hidden_dim=16", "data/root=/data", "train/lr=1e-4")
    assert s.overrides == (("train/lr", 0.001), ("model/hidden_dim", 16),
                           ("data/root", "/data"), ("train/lr", 0.0001))  # fmt: skip
    assert isinstance(s.overrides[0][1], float) and isinstance(s.overrides[1][1], int)
    assert s.fixed == {"train/lr": 0.0001, "model/hidden_dim": 16, "data/root": "/data"}
    assert settings().overrides == () and settings().fixed == {}
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        settings("--set", "train/lr")


def test_sequences_are_tuples_and_the_flags_are_filled_as_before():
    s = settings("--storage", "rel/dir", "--families", "vae", "vlae")
    assert s.datasets == ("fashion_mnist",)  # the smoke budget's default
    assert s.families == ("vae", "vlae") and s.set == ()
    assert s.storage == os.path.abspath("rel/dir")
    assert settings("--storage", "s3://bucket/sweep").storage == "s3://bucket/sweep"
    assert settings("--datasets", "mnist", "fashion_mnist").datasets == ("mnist", "fashion_mnist")
    assert settings().families is None
    assert settings("--verbose").verbose and not settings().verbose  # Ray's and Tune's lines
    assert settings("--log-to", "mlflow", "--log-to", "wandb").log_to == ("mlflow", "wandb")
    assert settings().log_to == ()
    assert {f.name for f in dataclasses.fields(Settings)} - {"overrides"} == {
        "budget", "protocol", "storage", "datasets", "families", "address", "cpus_per_trial",
        "gpus_per_trial", "set", "max_concurrent", "cells", "trials", "add_trials",
        "study_storage", "seed", "winner_seeds", "sampler", "resume", "status", "dry_run", "yes",
        "gpus", "max_gpu_hours", "verbose", "log_to", "warm_start", "warm_start_best",
        "warm_start_dataset", "search_seeds", "objectives",
    }  # fmt: skip
    assert settings("--warm-start", "rel/pilot").warm_start == os.path.abspath("rel/pilot")
    assert settings("--warm-start", "s3://b/pilot").warm_start == "s3://b/pilot"
    assert settings().warm_start is None and settings().warm_start_best == 3
    hash(s)
    listed = settings("--set", "model/sizes=[1, 2]")  # a JSON list: hashed by its --set text
    assert listed.fixed == {"model/sizes": [1, 2]}
    assert hash(listed) == hash(dataclasses.replace(listed))


def test_the_settings_pickle_round_trip_equal():
    s = settings("--set", "train/lr=0.001", "--families", "vae", "--gpus-per-trial", "0.5",
                 "--sampler", "grid", "--seed", "7", "--resume")  # fmt: skip
    back = pickle.loads(pickle.dumps(s))
    assert back == s and back.overrides == (("train/lr", 0.001),) and back.gpus_per_trial == 0.5
    assert hash(back) == hash(s)


@pytest.mark.parametrize("argv", [["--budget", "nope"], ["--trials", "abc"], ["--no-such-flag"],
                                  ["--log-to", "tensorbord"]])  # fmt: skip
def test_a_flag_argparse_refuses_is_one_error_line(tmp_path, capsys, argv):
    storage = tmp_path / "s"
    with pytest.raises(SystemExit) as e:
        settings("--storage", str(storage), *argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert err.rstrip().endswith("(see python sweeps/vlae.py --help)") and "usage" not in err
    assert not storage.exists()
