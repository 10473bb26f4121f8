"""The trainer's optional machinery (training.optim): optimisers, the cosine schedule with warm-up,
the weights' EMA, step skipping and the bits-per-dim loss scale. Each is off by default."""

from __future__ import annotations

import math

import pytest
import torch

from tests.unit.test_trainer import Recorder, setup
from training import checkpoint
from training.config import ConfigError, TrainConfig
from training.optim import learning_rate, loss_divisor
from training.trainer import DivergedError, fit


def test_the_learning_rate_warms_up_linearly_then_follows_the_cosine_per_epoch():
    cfg = TrainConfig(lr=1e-2, lr_schedule="cosine", lr_cosine_epochs=10, min_lr=1e-4,
                      lr_warmup_epochs=2, max_epochs=20)  # fmt: skip
    steps = 5  # per epoch: the warm-up is 10 steps
    assert [learning_rate(cfg, 0, s, steps) for s in (0, 4, 9)] == pytest.approx([1e-3, 5e-3, 1e-2])
    assert learning_rate(cfg, 5, 25, steps) == pytest.approx(1e-4 + (1e-2 - 1e-4) / 2)
    assert learning_rate(cfg, 10, 50, steps) == pytest.approx(1e-4)
    assert learning_rate(cfg, 15, 75, steps) == pytest.approx(1e-4)  # past its length: flat
    assert learning_rate(TrainConfig(lr=3e-3), 7, 70, steps) == 3e-3  # the default: constant


def test_the_loss_scales_divide_by_dimensions_in_bits():
    assert loss_divisor(TrainConfig(), (1, 28, 28)) == 1.0
    assert loss_divisor(TrainConfig(loss_scale="bpd"), (3, 32, 32)) == pytest.approx(
        3072 * math.log(2)
    )
    assert loss_divisor(TrainConfig(loss_scale="bpd_per_dim"), (1, 2, 2)) == pytest.approx(
        16 * math.log(2)
    )


@pytest.mark.parametrize(("key", "value", "match"), [
    ("optimizer", "sgd", r"train/optimizer must be one of \['adam', 'adamw', 'adamax'\]"),
    ("lr_schedule", "step", "train/lr_schedule must be one of"),
    ("loss_scale", "bits", "train/loss_scale must be one of"),
    ("ema_rate", 1.0, r"train/ema_rate must be in \[0, 1\)"),
    ("grad_skip", -1.0, "train/grad_skip must be >= 0"),
    ("min_lr", 1.0, "train/min_lr 1.0 is above train/lr"),
])  # fmt: skip
def test_bad_optimisation_settings_name_the_key(key, value, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**{key: value})


@pytest.mark.parametrize("name", ["adamw", "adamax"])
def test_each_optimiser_trains_and_its_curve_records_the_rate(tiny_data_root, tmp_path, name):
    cfg, data, model = setup(tiny_data_root, max_epochs=3, lr=3e-3, optimizer=name,
                             weight_decay=1e-2, lr_schedule="cosine", min_lr=1e-4)  # fmt: skip
    rec = Recorder(tmp_path)
    fit(model, data, cfg.train, report=rec)
    losses = [m["val_loss"] for m in rec.metrics]
    assert losses[-1] < losses[0]
    assert [m["lr"] for m in rec.metrics] == pytest.approx(
        [learning_rate(cfg.train, e, 0, 1) for e in range(3)]
    )


def test_adam_on_the_bits_per_dim_scale_takes_the_same_steps(tiny_data_root, tmp_path):
    """Adam is invariant to the loss's scale up to its eps (which only weights with near-zero
    gradients notice): the bpd loss changes the unit the clip thresholds are in, not the
    trajectory; the reported losses stay in nats."""
    runs = {}
    for scale in ("nats", "bpd"):
        cfg, data, model = setup(tiny_data_root, max_epochs=1, loss_scale=scale)
        runs[scale] = (fit(model, data, cfg.train), model)
    (a, model_a), (b, model_b) = runs["nats"], runs["bpd"]
    assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3)
    a_flat = torch.cat([p.detach().flatten() for p in model_a.parameters()])
    b_flat = torch.cat([p.detach().flatten() for p in model_b.parameters()])
    close = torch.isclose(a_flat, b_flat, rtol=1e-3, atol=1e-5).float().mean().item()
    assert close > 0.99, close


def test_with_an_ema_validation_and_the_best_checkpoint_use_the_averaged_weights(
    tiny_data_root, tmp_path
):
    cfg, data, model = setup(tiny_data_root, max_epochs=2, lr=3e-3, ema_rate=0.9)
    rec = Recorder(tmp_path)
    fit(model, data, cfg.train, report=rec)
    saved = checkpoint.load(tmp_path / "epoch2.pt")
    names = [n for n, _ in model.named_parameters()]
    ema = dict(zip(names, saved["ema"], strict=True))
    raw = dict(model.named_parameters())
    assert any(not torch.equal(ema[n], raw[n].detach()) for n in names)  # EMA != the weights
    if rec.metrics[-1]["best_epoch"] == 2:
        for n in names:
            torch.testing.assert_close(saved["best_model"][n], ema[n])
    resumed_cfg, resumed_data, resumed = setup(tiny_data_root, max_epochs=3, lr=3e-3,
                                               ema_rate=0.9)  # fmt: skip
    fit(resumed, resumed_data, resumed_cfg.train, resume=tmp_path / "epoch2.pt")  # EMA restored


def test_test_last_epoch_tests_the_last_epochs_averaged_weights(tiny_data_root, tmp_path):
    """train/test_last_epoch (the DVP-VAE authors' choice): the last epoch's EMA weights, with
    the model's buffers; the default is the best-validation weights."""
    cfg, data, model = setup(tiny_data_root, max_epochs=2, lr=3e-3, ema_rate=0.9)
    fit(model, data, cfg.train, report=Recorder(tmp_path))
    saved = checkpoint.load(tmp_path / "epoch2.pt")
    last = checkpoint.test_weights(saved, last_epoch=True)
    assert set(last) == set(saved["model"])
    for name, shadow in zip(saved["param_names"], saved["ema"], strict=True):
        assert torch.equal(last[name], shadow)
        assert not torch.equal(last[name], saved["model"][name])
    assert checkpoint.test_weights(saved) is saved["best_model"]
    model.load_state_dict(last)  # a whole state dict
    del saved["param_names"]
    with pytest.raises(checkpoint.RunDirError, match="test its best weights instead"):
        checkpoint.test_weights(saved, last_epoch=True)


def test_a_run_whose_every_step_is_skipped_ends_as_diverged(tiny_data_root):
    cfg, data, model = setup(tiny_data_root, max_epochs=2, grad_skip=1e-12)
    with pytest.raises(DivergedError, match=r"every one of the \d+ steps of epoch 1 was skipped"):
        fit(model, data, cfg.train)


def test_skipped_steps_are_counted_and_the_others_train(tiny_data_root, tmp_path):
    cfg, data, model = setup(tiny_data_root, max_epochs=2, lr=3e-3, grad_skip=1e6)
    rec = Recorder(tmp_path)
    fit(model, data, cfg.train, report=rec)
    assert [m["skipped_steps"] for m in rec.metrics] == [0, 0]
    cfg, data, model = setup(tiny_data_root, max_epochs=1, skip_nan_steps=True)
    with torch.no_grad():
        model.decoder[-1].bias.fill_(float("nan"))  # every loss is NaN: every step is skipped
    with pytest.raises(DivergedError, match="was skipped"):
        fit(model, data, cfg.train)
