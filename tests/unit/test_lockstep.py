"""Several training seeds of one configuration in lockstep (training.lockstep, --search-seeds):
each seed trains as its lone run would, the run reports their mean, a checkpoint resumes them
all."""

from __future__ import annotations

import math
import shutil
import statistics

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from training import checkpoint, lockstep
from training.config import Config
from training.data import load_data
from training.trainer import build_model, fit


def config(root, **train):
    return Config.from_dict({
        "family": "vae", "data/dataset": "fashion_mnist", "data/root": str(root),
        "model/latent_dim": 4, "model/hidden_dim": 32, "train/batch_size": 32,
        "train/epoch_batches": 2,
        **{f"train/{k}": v for k, v in train.items()},
    })  # fmt: skip


def lockstep_run(cfg, data, n, resume=None, keep=None):
    """The models and each epoch's metrics of ``n`` seeds in lockstep; ``keep``: a folder each
    epoch's checkpoint folder is copied into (``keep``/epoch<e>)."""
    models = [build_model(cfg, data.x_shape), *lockstep.more_models(cfg, data.x_shape, n)]
    out = []
    for metrics, folder in lockstep.epochs(models, data, cfg.train, resume):
        out.append(metrics)
        if keep is not None:
            shutil.copytree(folder, keep / f"epoch{metrics['epoch']}")
    return models, out


def lone_run(cfg, data, seed):
    """A lone run of ``cfg`` with train/seed ``seed``: its model and each epoch's metrics."""
    cfg = lockstep.with_seed(cfg, seed)
    model, out = build_model(cfg, data.x_shape), []
    fit(model, data, cfg.train, report=lambda m, _: out.append(m))
    return model, out


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    return all(torch.equal(x, y) for x, y in pairs)


def test_each_seed_trains_as_its_lone_run_and_the_run_reports_their_mean(tiny_data_root):
    cfg = config(tiny_data_root, max_epochs=2, seed=7, lr=3e-3)
    data = load_data(cfg.data)
    models, metrics = lockstep_run(cfg, data, 2)
    lone = [lone_run(cfg, data, s) for s in (7, 8)]

    assert not same_weights(models[0], models[1])  # two seeds, two different models
    for model, (alone, _) in zip(models, lone, strict=True):
        assert same_weights(model, alone)
    for e, m in enumerate(metrics):
        vals = [out[e]["val_loss"] for _, out in lone]
        assert m["seed_val_losses"] == vals
        assert m["val_loss"] == pytest.approx(statistics.fmean(vals), rel=1e-12)
        assert m["val_loss_std"] == pytest.approx(statistics.stdev(vals), rel=1e-12)
    assert metrics[-1]["finished"] and metrics[-1]["stop_reason"] == "max_epochs"
    assert metrics[-1]["best_val_loss"] == min(m["val_loss"] for m in metrics)


def test_a_checkpoint_resumes_every_seed_on_its_trajectory(tiny_data_root, tmp_path):
    cfg = config(tiny_data_root, max_epochs=3, seed=3, lr=3e-3)
    data = load_data(cfg.data)
    straight, straight_metrics = lockstep_run(cfg, data, 2, keep=tmp_path)
    folder = tmp_path / "epoch2"
    assert (folder / checkpoint.CHECKPOINT_FILE).exists()
    assert (folder / "seed-1" / checkpoint.CHECKPOINT_FILE).exists()
    assert [h["epoch"] for h in lockstep.read_history(folder)] == [1, 2]

    torch.manual_seed(999)  # whatever the process did in between must not matter
    resumed, metrics = lockstep_run(cfg, data, 2, resume=folder)
    assert [m["epoch"] for m in metrics] == [3] and metrics[0]["resumed_from"] == 2
    assert metrics[0]["val_loss"] == straight_metrics[-1]["val_loss"]
    for a, b in zip(straight, resumed, strict=True):
        assert same_weights(a, b)


def test_a_run_restored_after_its_end_trains_no_more(tiny_data_root, tmp_path):
    cfg = config(tiny_data_root, max_epochs=1)
    data = load_data(cfg.data)
    _, metrics = lockstep_run(cfg, data, 2, keep=tmp_path)
    models = [build_model(cfg, data.x_shape), *lockstep.more_models(cfg, data.x_shape, 2)]
    run = lockstep.epochs(models, data, cfg.train, tmp_path / "epoch1")
    with pytest.raises(StopIteration) as end:
        next(run)
    assert end.value.value["epoch"] == 1 and end.value.value["finished"]


def test_seeds_are_the_runs_own_and_the_next():
    assert lockstep.seeds(5, 3) == [5, 6, 7]
    assert lockstep.seeds(0, 1) == [0]


class Train:
    max_epochs, patience = 100, 3


@given(st.lists(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=2), min_size=1, max_size=8))
def test_early_stopping_follows_the_mean(curves):
    history: list[dict] = []
    for vals in curves:
        each = [{"val_loss": v, "train_loss": v, "val_log_px_z": 0.0, "val_kl": 0.0,
                 "epoch_seconds": 1.0, "skipped_steps": 0} for v in vals]  # fmt: skip
        m = lockstep.mean_metrics(each, history, Train, 0)
        history.append(m)
        if m["finished"]:
            break
    means = [statistics.fmean(v) for v in curves[: len(history)]]
    best = min(means)
    last = history[-1]
    assert last["best_val_loss"] == best and last["best_epoch"] == means.index(best) + 1
    assert last["finished"] == (len(means) - last["best_epoch"] >= Train.patience)
    assert last["epoch_seconds"] == 2.0 and math.isfinite(last["val_loss_std"])
