"""The trainer: it learns, stops early, resumes on the same trajectory, and refuses NaNs."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from training import checkpoint
from training.config import Config
from training.data import load_data
from training.evaluate import estimate_log_likelihood
from training.trainer import DivergedError, build_model, fit, kl_weight


def setup(root, **train):
    cfg = Config.from_dict(
        {
            "family": "vae",
            "data/dataset": "fashion_mnist",
            "data/root": str(root),
            "model/latent_dim": 4,
            "model/hidden_dim": 32,
            "train/batch_size": 32,
            **{f"train/{k}": v for k, v in train.items()},
        }
    )
    data = load_data(cfg.data)
    return cfg, data, build_model(cfg, data.x_shape)


class Recorder:
    """A report callable that keeps each epoch's metrics and its checkpoint file."""

    def __init__(self, folder):
        self.metrics, self.folder = [], folder

    def __call__(self, metrics, ckpt_dir):
        self.metrics.append(metrics)
        state = checkpoint.load(ckpt_dir)
        checkpoint.save(self.folder / f"epoch{metrics['epoch']}.pt", state)


def test_training_lowers_the_validation_loss(tiny_data_root, tmp_path):
    cfg, data, model = setup(tiny_data_root, max_epochs=5, lr=3e-3)
    rec = Recorder(tmp_path)
    final = fit(model, data, cfg.train, report=rec)
    losses = [m["val_loss"] for m in rec.metrics]
    assert len(losses) == 5 and losses[-1] < losses[0]
    assert final["finished"] and final["stop_reason"] == "max_epochs"


def test_resume_continues_the_same_trajectory(tiny_data_root, tmp_path):
    cfg, data, straight = setup(tiny_data_root, max_epochs=4)
    fit(straight, data, cfg.train, report=Recorder(tmp_path / "a"))

    cfg2, data, first = setup(tiny_data_root, max_epochs=2)
    fit(first, data, cfg2.train, report=Recorder(tmp_path / "b"))
    _, _, resumed = setup(tiny_data_root)
    torch.manual_seed(12345)  # whatever the process did in between must not matter
    rec = Recorder(tmp_path / "c")
    fit(resumed, data, cfg.train, report=rec, resume=tmp_path / "b" / "epoch2.pt")

    assert [m["epoch"] for m in rec.metrics] == [3, 4]
    for (name, a), b in zip(
        straight.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), f"{name} differs after resume"


def test_early_stopping_stops_after_patience(tiny_data_root, tmp_path):
    # lr so small nothing improves measurably after the first epoch... use a tiny patience
    cfg, data, model = setup(tiny_data_root, max_epochs=50, patience=1, lr=1e-7)
    rec = Recorder(tmp_path)
    final = fit(model, data, cfg.train, report=rec)
    assert final["stop_reason"] == "early_stopping" and final["epoch"] < 50
    assert final["best_epoch"] == final["epoch"] - 1


def test_best_model_is_kept_in_the_checkpoint(tiny_data_root, tmp_path):
    cfg, data, model = setup(tiny_data_root, max_epochs=3, lr=3e-3)
    rec = Recorder(tmp_path)
    fit(model, data, cfg.train, report=rec)
    state = checkpoint.load(tmp_path / "epoch3.pt")
    assert state["train_state"]["best_epoch"] == rec.metrics[-1]["best_epoch"]
    assert set(state["best_model"]) == set(model.state_dict())
    assert state["train_state"]["history"][0]["epoch"] == 1


def test_a_diverging_run_ends_with_a_clear_reason(tiny_data_root):
    cfg, data, model = setup(tiny_data_root, max_epochs=3, lr=1e30)
    with pytest.raises(DivergedError, match=r"loss became (nan|inf).*lower train/lr"):
        fit(model, data, cfg.train)


def test_kl_warmup_is_linear_then_one():
    assert [kl_weight(s, 4) for s in (0, 2, 4, 10)] == [0.0, 0.5, 1.0, 1.0]
    assert kl_weight(0, 0) == 1.0


def test_test_log_likelihood_chunking_agrees(tiny_data_root):
    _, data, model = setup(tiny_data_root)
    x = data.test[:10]
    whole = estimate_log_likelihood(model, x, k=500, seed=0, max_rows=10 * 500)
    chunked = estimate_log_likelihood(model, x, k=500, seed=0, max_rows=37)
    assert whole["n_test"] == chunked["n_test"] == 10 and whole["k"] == 500
    tolerance = 4 * (whole["test_log_likelihood_sem"] + 0.05)
    assert abs(whole["test_log_likelihood"] - chunked["test_log_likelihood"]) < tolerance


def run_cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_single_run_command_line_prints_one_json_line(tiny_data_root, tmp_path):
    out = run_cli(
        "--family",
        "vae",
        "--dataset",
        "fashion_mnist",
        "--set",
        f"data/root={tiny_data_root}",
        "--set",
        "model/hidden_dim=16",
        "--set",
        "train/max_epochs=2",
        "--run-dir",
        str(tmp_path / "run"),
        "--test-k",
        "5",
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == "completed" and result["epoch"] == 2 and result["k"] == 5
    assert result["config"]["model"]["hidden_dim"] == 16
    assert (tmp_path / "run" / "state.pt").is_file()
    # Running again with a larger budget resumes from the checkpoint instead of restarting.
    again = run_cli(
        "--family",
        "vae",
        "--set",
        f"data/root={tiny_data_root}",
        "--set",
        "model/hidden_dim=16",
        "--set",
        "train/max_epochs=3",
        "--run-dir",
        str(tmp_path / "run"),
    )
    assert again.returncode == 0, again.stderr
    assert '"epoch": 1,' not in again.stderr and json.loads(again.stdout)["epoch"] == 3


@pytest.mark.parametrize(
    "args,message",
    [
        (["--family", "gan"], "unknown model family 'gan'"),
        (["--family", "vae", "--set", "model/latent=3"], "model/latent"),
        (["--family", "vae", "--set", "data/root=/nonexistent"], "not found: looked for"),
    ],
)
def test_command_line_bad_input_is_one_clear_line(args, message):
    out = run_cli(*args)
    assert out.returncode == 2 and message in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("epoch_batches", [3, 25])
def test_epoch_batches_fixes_the_steps_per_epoch(tiny_data_root, tmp_path, epoch_batches):
    """train/epoch_batches = n: n batches per epoch, also when that is more than one pass over
    the 270 training images (25 x 32 = 800: three shuffles, each image at most 3 times)."""
    cfg, data, model = setup(tiny_data_root, max_epochs=2, epoch_batches=epoch_batches)
    rec = Recorder(tmp_path)
    fit(model, data, cfg.train, report=rec)
    state = checkpoint.load(tmp_path / "epoch2.pt")["train_state"]
    assert state["step"] == 2 * epoch_batches
    assert [m["epoch"] for m in rec.metrics] == [1, 2]


def test_epoch_batches_zero_is_one_full_pass(tiny_data_root, tmp_path):
    cfg, data, model = setup(tiny_data_root, max_epochs=1)
    fit(model, data, cfg.train, report=Recorder(tmp_path))
    steps = checkpoint.load(tmp_path / "epoch1.pt")["train_state"]["step"]
    assert steps == -(-data.train.shape[0] // 32)


def logit_setup(root, **train):
    """A Gaussian VAE on data/logit pixels (the VLAE authors' optional preprocessing)."""
    cfg = Config.from_dict(
        {
            "family": "vae",
            "model/likelihood": "gaussian",
            "model/latent_dim": 4,
            "model/hidden_dim": 32,
            "data/dataset": "fashion_mnist",
            "data/root": str(root),
            "data/logit": True,
            "train/batch_size": 32,
            **{f"train/{k}": v for k, v in train.items()},
        }
    )
    data = load_data(cfg.data)
    return cfg, data, build_model(cfg, data.x_shape)


def test_gaussian_variance_is_initialised_from_the_logit_data(tiny_data_root, monkeypatch):
    """fit() initialises the head from data.train, the transformed centred training set
    (docs/specs/vlae.md#7-data-and-preprocessing: l = log mean (x - mean)^2 on the preprocessed
    training set)."""
    cfg, data, model = logit_setup(tiny_data_root, max_epochs=1)
    seen = {}
    initialise = model.initialise

    def spy(x_train):
        initialise(x_train)
        seen["x"], seen["log_var"] = x_train, model.p_x.log_var.item()

    monkeypatch.setattr(model, "initialise", spy)
    final = fit(model, data, cfg.train)
    x = data.train.flatten(1)
    expected = torch.log((x - x.mean(0)).square().mean()).item()
    assert seen["x"] is data.train and seen["log_var"] == pytest.approx(expected, rel=1e-5)
    levels = data.train_levels.flatten(1)  # not the grey levels' variance
    assert abs(expected - torch.log((levels - levels.mean(0)).square().mean()).item()) > 1
    assert math.isfinite(final["train_loss"]) and math.isfinite(final["val_loss"])


def test_a_short_fit_on_logit_data_has_finite_losses_and_resumes_alike(tiny_data_root, tmp_path):
    cfg, data, straight = logit_setup(tiny_data_root, max_epochs=2, epoch_batches=4)
    rec = Recorder(tmp_path / "a")
    final = fit(straight, data, cfg.train, report=rec)
    assert all(math.isfinite(m["train_loss"]) and math.isfinite(m["val_loss"]) for m in rec.metrics)
    assert final["epoch"] == 2
    # The per-batch noise comes from the RNG state the checkpoint keeps: a resumed run matches.
    _, _, resumed = logit_setup(tiny_data_root)
    fit(resumed, data, cfg.train, resume=tmp_path / "a" / "epoch1.pt")
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
