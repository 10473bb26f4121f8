"""--log-to wandb / mlflow on a real tiny sweep, the trackers in their offline modes: every trial
a run with its config and each epoch's validation loss; TensorBoard's event files beside each
trial with no flag. The refusals before Ray starts: tests/unit/test_trackers.py."""

from __future__ import annotations

import struct

import pytest

from results import store
from sweeps.cells import Budget
from tests.e2e.test_sweep_journeys import run
from tests.unit.test_sweep import CELL

pytestmark = pytest.mark.slow
TWO = Budget(trials=2, max_epochs=2, grace_epochs=2, reduction_factor=2, patience=2, eval_k=5,
             eval_seeds=1, fixed={"model/hidden_dim": 16})  # fmt: skip


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """The trackers' offline modes, set before Ray starts (its workers inherit them)."""
    pytest.importorskip("wandb")
    pytest.importorskip("mlflow")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "w"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "w").mkdir()
    return tmp_path


def event_tags(path) -> set[str]:
    """The scalar tags of a TensorBoard event file (TFRecord framing, tensorboardX's protos)."""
    from tensorboardX.proto.event_pb2 import Event

    data, tags, at = path.read_bytes(), set(), 0
    while at < len(data):
        (n,) = struct.unpack("<Q", data[at : at + 8])
        event = Event.FromString(data[at + 12 : at + 12 + n])
        tags |= {v.tag for v in event.summary.value}
        at += 12 + n + 4
    return tags


def test_each_trial_is_a_run_of_each_tracker(offline, ray_local, monkeypatch):
    import mlflow

    storage = offline / "s"
    assert run(storage, TWO, monkeypatch, extra=["--log-to", "wandb", "--log-to", "mlflow"]) == 0
    trials = store.load(str(storage), "trials")
    ids = set(trials.loc[trials["role"] == "search", "trial_id"])
    assert len(ids) == 2

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{storage / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(CELL.name)
    runs = client.search_runs([experiment.experiment_id])
    assert {r.data.tags.get("trial_name", r.info.run_name).split("_")[-1] for r in runs} or runs
    assert len(runs) == 2
    for r in runs:
        assert "train/lr" in " ".join(r.data.params) or "lr" in " ".join(r.data.params)
        history = client.get_metric_history(r.info.run_id, "val_loss")
        assert len(history) >= 1

    offline_runs = list((offline / "w" / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 2
    assert all(any(p.glob("*.wandb")) for p in offline_runs)

    events = list((storage / "ray" / CELL.name).glob("*/events.out.tfevents.*"))
    assert len(events) == 2
    assert all(any(t.endswith("val_loss") for t in event_tags(e)) for e in events)
