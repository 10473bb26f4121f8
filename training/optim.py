"""What the trainer steps with: the optimiser, the learning-rate schedule, the EMA of the weights,
and the rule for skipping a step. All off (plain Adam, a constant rate, no EMA, no skipping)
unless a TrainConfig key says otherwise; the hierarchical VAEs' settings
(docs/specs/hierarchical.md#5-training) are what they are for.

    train/optimizer       adam | adamw | adamax, with train/weight_decay (eps 1e-8 throughout)
    train/lr_schedule     constant | cosine: per epoch from train/lr down to train/min_lr over
                          train/lr_cosine_epochs (0 = train/max_epochs), after a linear warm-up
                          over train/lr_warmup_epochs (per step, from lr / warm-up steps)
    train/ema_rate        r in [0, 1): after every step ema <- r ema + (1 - r) weights; validation,
                          test and the best checkpoint use the EMA weights (0 = off)
    train/grad_skip       skip a step whose gradient norm exceeds this (0 = off)
    train/skip_nan_steps  skip a step whose loss is not finite (an epoch of nothing but skipped
                          steps still ends the run as diverged)
    train/loss_scale      nats | bpd (the negative ELBO / (D ln 2), bits per dimension, the scale
                          the papers' clip and skip thresholds assume) | bpd_per_dim (divided by D
                          once more: DCT-VAE's loss_per_pixel on CIFAR-10 and SVHN)
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

OPTIMIZERS = ("adam", "adamw", "adamax")
LR_SCHEDULES = ("constant", "cosine")
LOSS_SCALES = ("nats", "bpd", "bpd_per_dim")


def optimizer(params, cfg, device: torch.device) -> torch.optim.Optimizer:
    """The configured optimiser. Adam and AdamW are fused (one kernel over every parameter,
    CPU and CUDA); Adamax has no fused kernel and uses its foreach one."""
    fused = device.type in ("cpu", "cuda")
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    return torch.optim.Adamax(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def learning_rate(cfg, epoch: int, step: int, steps_per_epoch: int) -> float:
    """The rate of the step numbered ``step`` (0-based, over the run) in epoch ``epoch``."""
    warmup = round(cfg.lr_warmup_epochs * steps_per_epoch)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    if cfg.lr_schedule == "constant":
        return cfg.lr
    span = cfg.lr_cosine_epochs or cfg.max_epochs
    progress = min(epoch, span) / span
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def loss_divisor(cfg, x_shape: tuple[int, ...]) -> float:
    """What the summed negative ELBO per image is divided by for the training loss."""
    dims = math.prod(x_shape)
    return {"nats": 1.0, "bpd": dims * math.log(2), "bpd_per_dim": dims**2 * math.log(2)}[
        cfg.loss_scale
    ]


class EMA:
    """An exponential moving average of a model's parameters (buffers are the model's own)."""

    def __init__(self, model: nn.Module, rate: float):
        self.rate = rate
        self.params = [p for p in model.parameters()]
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1 - self.rate)

    @contextlib.contextmanager
    def weights(self):
        """Within the block, the model's parameters are the EMA's; then its own again."""
        saved = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            torch._foreach_copy_([p.data for p in self.params], self.shadow)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_([p.data for p in self.params], saved)

    def state_dict(self) -> list[torch.Tensor]:
        return [s.clone() for s in self.shadow]

    def load_state_dict(self, state: list[torch.Tensor]) -> None:
        moved = [s.to(p.device) for s, p in zip(state, self.shadow, strict=True)]
        with torch.no_grad():
            torch._foreach_copy_(self.shadow, moved)
