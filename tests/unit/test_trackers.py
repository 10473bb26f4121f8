"""sweeps.engine.trackers before anything starts: a tracker whose package is missing is one
line and exit 2, nothing created; where each tracker writes. The trackers on a real sweep:
tests/e2e/test_trackers.py."""

from __future__ import annotations

import pytest

from sweeps.engine import cli, trackers
from tests.unit.test_sweep import CELL, TINY


def test_a_tracker_whose_package_is_missing_is_refused_before_anything(tmp_path, monkeypatch,
                                                                       capsys):  # fmt: skip
    monkeypatch.setitem(trackers.TRACKERS, "wandb", "no_such_package_for_wandb")
    storage = tmp_path / "s"
    argv = ["--storage", str(storage), "--log-to", "mlflow", "--log-to", "wandb"]
    assert cli.main("vlae", [CELL], {"smoke": TINY}, {}, argv=argv) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "error: --log-to wandb needs the no_such_package_for_wandb package: pip install "
        "no_such_package_for_wandb (or drop --log-to wandb)"
    ]
    assert not storage.exists()


def test_an_unknown_tracker_is_refused_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.parse_args(["--storage", str(tmp_path), "--log-to", "tensorbord"], "vlae", [CELL],
                       {"smoke": TINY}, {})  # fmt: skip
    assert e.value.code == 2
    assert "invalid choice: 'tensorbord'" in capsys.readouterr().err


def test_where_each_tracker_writes(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert trackers.mlflow_uri(str(tmp_path)) == f"sqlite:///{tmp_path}/mlflow.db"
    assert trackers.mlflow_uri("s3://bucket/sweeps/run+1") is None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert trackers.mlflow_uri(str(tmp_path)) == "http://127.0.0.1:5000"
    assert trackers.project("s3://bucket/sweeps/run+1") == "run-1"
    assert trackers.project(str(tmp_path / "vlae-paper")) == "vlae-paper"
    assert trackers.callbacks((), str(tmp_path), "c") == []
