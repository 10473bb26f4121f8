"""How much memory a config's training needs, estimated before anything is allocated, and the
checks that refuse a config whose model cannot be built or does not fit.

    need = estimate(cfg, x_shape)            # bytes: parameters, gradients, optimiser, activations
    check_model(cfg)                         # ConfigError: the model cannot be built for the data
    check_fits(cfg, x_shape, device)         # ConfigError: the estimate exceeds the device's memory

The model is built on the meta device (shapes only, no memory, no compute) and one training batch
of meta tensors is passed through it with torch.autograd.graph.saved_tensors_hooks adding up the
bytes of every tensor autograd saves for the backward pass (each once, parameters excluded): what
one training batch holds between forward and backward. The backward pass then holds about as much
again in the gradients of those tensors while it runs, so activations = BACKWARD_FACTOR x that
sum. (Meta tensors need torch's Python meta kernels: the first estimate in a process imports
torch._dynamo, a few seconds.) A forward pass with data-dependent control flow (the von
Mises-Fisher rejection sampler) stops on the meta device; its activations are then those counted
before it stopped, a lower bound, and the message says so. Parameters count once, their
gradients once, the optimiser's state (Adam's and AdamW's two moments, Adamax's moment and
infinity norm) twice, and an EMA of the weights once more. The data splits are not counted.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import torch

import models
from training.config import Config, ConfigError
from training.data import image_shape

BACKWARD_FACTOR = 2
"""Activations of one training step = this x the bytes autograd saves in the forward pass."""
OPTIMISER_COPIES = 2
"""Tensors of the parameters' size the optimiser keeps (adam, adamw, adamax: two each)."""


@dataclass(frozen=True)
class Estimate:
    parameters: int
    gradients: int
    optimiser: int
    ema: int
    activations: int
    complete: bool = True
    """False: the forward pass could not run to its end on the meta device (data-dependent
    control flow), and the activations are those of the part before: a lower bound."""

    @property
    def total(self) -> int:
        return self.parameters + self.gradients + self.optimiser + self.ema + self.activations

    def parts(self) -> str:
        ema = f", EMA {size(self.ema)}" if self.ema else ""
        bound = "" if self.complete else "at least "
        return (
            f"parameters {size(self.parameters)}, gradients {size(self.gradients)}, optimiser "
            f"state {size(self.optimiser)}{ema}, activations of one batch {bound}"
            f"{size(self.activations)}"
        )


class _SavedBytes:
    """Adds up the bytes of the tensors autograd saves for the backward pass (each once; the
    parameters, counted apart, excluded)."""

    def __init__(self, model: torch.nn.Module):
        self.bytes, self._seen = 0, {id(p) for p in model.parameters()}

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        if id(t) not in self._seen:
            self._seen.add(id(t))
            self.bytes += t.numel() * t.element_size()
        return t


def build_meta(cfg: Config, x_shape: tuple[int, ...]) -> torch.nn.Module:
    """The config's model on the meta device; what only the image shape decides (a hierarchy
    with more scales than the image can be halved, a patch larger than the image) is a
    ConfigError naming the model key."""
    try:
        with torch.device("meta"):
            return models.build(cfg.family, dataclasses.asdict(cfg.model), tuple(x_shape))
    except ValueError as e:
        raise ConfigError(f"model/{e} (for {cfg.data.dataset}'s {list(x_shape)} images)") from None


def check_model(cfg: Config) -> torch.nn.Module:
    """The model builds for the data's image shape (on the meta device); returns it."""
    return build_meta(cfg, image_shape(cfg.data))


def estimate(cfg: Config, x_shape: tuple[int, ...] | None = None) -> Estimate:
    """Bytes one training step of ``cfg`` needs (module docstring)."""
    x_shape = tuple(x_shape or image_shape(cfg.data))
    model = build_meta(cfg, x_shape)
    n = sum(p.numel() * p.element_size() for p in model.parameters())
    model.train()
    x = torch.zeros(cfg.train.batch_size, *x_shape, device="meta")
    saved, complete = _SavedBytes(model), True
    with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t), torch.enable_grad():
        try:
            terms = model(x)
            (terms.log_px_z - terms.kl).mean()
        except (RuntimeError, NotImplementedError) as e:
            if "meta" not in str(e):  # not the meta device's limit: a real error
                raise
            complete = False  # data-dependent code (a rejection sampler's loop): counted so far
    return Estimate(n, n, OPTIMISER_COPIES * n, n if cfg.train.ema_rate > 0 else 0,
                    BACKWARD_FACTOR * saved.bytes, complete)  # fmt: skip


def device_memory(device: torch.device) -> tuple[int, str]:
    """(bytes, words): a CUDA device's total memory, or this machine's available memory."""
    if device.type == "cuda":
        _, total = torch.cuda.mem_get_info(device)
        return total, f"{device} has {size(total)}"
    free = _available_ram()
    return free, f"this machine has {size(free)} free"


def _available_ram() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_fits(cfg: Config, x_shape: tuple[int, ...] | None, device: torch.device,
               have: tuple[int, str] | None = None) -> Estimate:  # fmt: skip
    """ConfigError when the estimate exceeds ``device``'s memory (or ``have``: bytes, words)."""
    need = estimate(cfg, x_shape)
    limit, where = have or device_memory(device)
    if need.total > limit:
        grown = _grown_keys(cfg)
        what = f"{', '.join(grown) or f'the {cfg.family} model'} with train/batch_size="
        keys = [k.partition("=")[0] for k in grown] + ["train/batch_size"]
        if need.activations > need.total / 2:  # the batch's share first
            keys = keys[-1:] + keys[:-1]
        fix = " or ".join(keys)
        raise ConfigError(
            f"{what}{cfg.train.batch_size} needs about {size(need.total)} ({need.parts()}) but "
            f"{where}: lower {fix}"
        )
    return need


def _grown_keys(cfg: Config) -> list[str]:
    """The model's int keys set above their defaults (the likeliest causes), largest first."""
    default = type(cfg.model)()
    out = [
        (getattr(cfg.model, f.name), f.name)
        for f in dataclasses.fields(cfg.model)
        if f.type in ("int", int) and getattr(cfg.model, f.name) > getattr(default, f.name)
    ]
    return [f"model/{name}={value}" for value, name in sorted(out, reverse=True)[:3]]


def size(n: float) -> str:
    """Bytes in decimal units: '12.1 TB'."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError
