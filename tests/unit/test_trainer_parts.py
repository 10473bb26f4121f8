"""The trainer's loop in its plain functions (training.trainer): the loop composed by hand from
them trains exactly as ``epochs`` does, and each does its one part."""

from __future__ import annotations

import math

import pytest
import torch

from tests.unit.test_trainer import setup
from training import checkpoint
from training.trainer import (
    DivergedError,
    TrainState,
    begin,
    end_epoch,
    epoch_metrics,
    epochs,
    prepare,
    shuffle,
    train_epoch,
    train_step,
    validate,
    write_checkpoint,
)


def test_the_parts_composed_by_hand_are_the_loop(tiny_data_root, tmp_path):
    cfg, data, model = setup(tiny_data_root, max_epochs=2, lr=3e-3, ema_rate=0.9, grad_clip=5.0)
    run = epochs(model, data, cfg.train)
    by_loop = []
    for metrics, ckpt_dir in run:
        by_loop.append((metrics, checkpoint.load(ckpt_dir)))

    _, _, model = setup(tiny_data_root)
    stepper = prepare(model, data, cfg.train)
    state, best = begin(stepper, data, cfg.train)
    for metrics, saved in by_loop:
        trained = train_epoch(stepper, data, cfg.train, state)
        val = validate(stepper, data, cfg.train)
        if end_epoch(state, trained.loss, val):
            best = stepper.weights()
        mine = epoch_metrics(state, cfg.train, trained, val, resumed_from=0)
        wall = {"epoch_seconds", "epoch_started_at"}
        assert {k: v for k, v in mine.items() if k not in wall} == {
            k: v for k, v in metrics.items() if k not in wall
        }
        state.history.append({k: v for k, v in mine.items() if k != "stop_reason"})
        write_checkpoint(tmp_path, stepper, state, best)
        assert (tmp_path / checkpoint.HISTORY_FILE).is_file()
        ours = checkpoint.load(tmp_path)
        assert list(ours) == list(saved)
        for part in ("model", "best_model"):
            for k, v in saved[part].items():
                assert torch.equal(ours[part][k], v), (part, k)
        assert all(torch.equal(a, b) for a, b in zip(ours["ema"], saved["ema"], strict=True))
        assert torch.equal(ours["rng"]["torch"], saved["rng"]["torch"])  # the same draws
    assert mine["finished"] and mine["stop_reason"] == "max_epochs"


def test_an_epoch_longer_than_the_training_set_shuffles_once_per_pass():
    torch.manual_seed(0)
    perm = shuffle(10, 25, torch.device("cpu"))
    assert perm.shape == (25,)
    assert sorted(perm[:10].tolist()) == sorted(perm[10:20].tolist()) == list(range(10))
    assert len(set(perm[20:].tolist())) == 5  # the third pass, cut short
    assert sorted(shuffle(10, 10, torch.device("cpu")).tolist()) == list(range(10))


def test_end_epoch_keeps_the_early_stopping_state():
    state = TrainState()
    assert end_epoch(state, 1.0, {"elbo": -5.0}) is True
    assert (state.epoch, state.best_val_loss, state.best_epoch, state.bad_epochs) == (1, 5.0, 1, 0)
    assert end_epoch(state, 1.0, {"elbo": -6.0}) is False
    assert (state.epoch, state.best_epoch, state.bad_epochs) == (2, 1, 1)
    assert end_epoch(state, 1.0, {"elbo": -4.0}) is True
    assert (state.best_val_loss, state.best_epoch, state.bad_epochs) == (4.0, 3, 0)
    with pytest.raises(DivergedError, match="loss became nan in epoch 4"):
        end_epoch(state, math.nan, {"elbo": -4.0})
    with pytest.raises(DivergedError, match="loss became -inf in epoch 5"):
        end_epoch(state, 1.0, {"elbo": -math.inf})


def test_a_step_with_a_non_finite_loss_is_skipped_when_asked_and_changes_nothing(tiny_data_root):
    cfg, data, model = setup(tiny_data_root, skip_nan_steps=True)
    stepper = prepare(model, data, cfg.train)
    with torch.no_grad():
        model.decoder[-1].bias.fill_(float("nan"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert train_step(stepper, cfg.train, data.train[:8], beta=1.0) is None
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0, equal_nan=True)


def test_a_step_returns_its_detached_loss_and_moves_the_weights(tiny_data_root):
    cfg, data, model = setup(tiny_data_root, grad_skip=1e6)
    stepper = prepare(model, data, cfg.train)
    before = [p.detach().clone() for p in model.parameters()]
    loss = train_step(stepper, cfg.train, data.train[:8], beta=1.0)
    assert loss is not None and not loss.requires_grad and math.isfinite(loss.item())
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
