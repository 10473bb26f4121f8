"""Typed, strict, frozen run configuration.

A run is ``Config(family, model, data, train)``; ``model`` is the family's own dataclass from
``models``. ``Config.from_dict`` accepts nested dicts or flat namespaced keys
(``"model/latent_dim"``), rejects unknown keys and ill-typed values with an error naming the
key, and never fills in derived values: the config stored with a result is the config that ran.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import typing
from dataclasses import dataclass, field
from typing import Any

import models
from models.likelihoods import Likelihood, likelihood_spec
from training import limits
from training.data import channels
from training.data_config import (  # noqa: F401 (re-exported: they lived here)
    LOGIT_LAMBDA_MIN,
    VALIDATION,
    DataConfig,
)
from training.errors import ConfigError
from training.optim import LOSS_SCALES, LR_SCHEDULES, OPTIMIZERS


@dataclass(frozen=True)
class TrainConfig:
    lr: float = 5e-4
    """Adam learning rate (VLAE paper: 5e-4)."""
    batch_size: int = 128
    max_epochs: int = 100
    patience: int = 10
    """Early stopping: epochs without a validation improvement before stopping."""
    warmup_epochs: float = 0.0
    """KL warm-up: beta rises linearly from 0 to 1 over this many epochs (0 = no warm-up)."""
    grad_clip: float = 0.0
    """Clip the global gradient norm to this value (0 = no clipping)."""
    seed: int = 0
    device: str = "auto"
    """'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'."""
    amp: str = "off"
    """Mixed precision on CUDA: 'off', 'bf16' or 'fp16' (fp16 uses a gradient scaler)."""
    eval_batch_size: int = 1000
    epoch_batches: int = 0
    """Batches per "epoch" (the unit of validation, early stopping, checkpoints and ASHA rungs):
    0 = one full pass over the training set; n > 0 = n batches drawn from a fresh shuffle of the
    whole training set each epoch (the SPVAE paper's epoch is 128 batches of 128)."""
    optimizer: str = "adam"
    """adam, adamw or adamax (training.optim; the hierarchical VAEs' AdamW and Adamax)."""
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    """constant or cosine (per epoch, down to train/min_lr over train/lr_cosine_epochs)."""
    lr_cosine_epochs: int = 0
    """The cosine schedule's length in epochs (0 = train/max_epochs)."""
    min_lr: float = 0.0
    lr_warmup_epochs: float = 0.0
    """Linear learning-rate warm-up over this many epochs, per step (0 = none)."""
    ema_rate: float = 0.0
    """EMA of the weights, used for validation, test and the best checkpoint (0 = off)."""
    grad_skip: float = 0.0
    """Skip a step whose gradient norm exceeds this (0 = off)."""
    skip_nan_steps: bool = False
    """Skip a step whose loss is not finite (counted per epoch as skipped_steps)."""
    loss_scale: str = "nats"
    """nats, bpd (bits per dimension) or bpd_per_dim: the training loss's unit (training.optim)."""
    test_last_epoch: bool = False
    """Test the last epoch's (EMA) weights instead of the best-validation ones (the DVP-VAE
    authors' dvp_test_last_epoch: their final weights overwrite their checkpoint file)."""
    step_seconds: float = 0.0
    """Benchmarks only: pad every training step to at least this wall time (0 = off), standing in
    for a device slower than this CPU, so that benchmarks/utilisation.py gives 8 fake-GPU slots
    one-minute trials on 2 cores, and tests of trials at once see them overlap. It changes no
    number the trial computes."""

    def __post_init__(self):
        if self.epoch_batches < 0:
            raise ConfigError(
                f"train/epoch_batches must be >= 0 (0 = full pass), got {self.epoch_batches}"
            )
        for name in ("lr", "batch_size", "max_epochs", "eval_batch_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"train/{name} must be > 0, got {getattr(self, name)}")
        if self.patience < 1:
            raise ConfigError(f"train/patience must be >= 1, got {self.patience}")
        if self.warmup_epochs < 0 or self.grad_clip < 0 or self.step_seconds < 0:
            raise ConfigError(
                "train/warmup_epochs, train/grad_clip and train/step_seconds must be >= 0"
            )
        if self.amp not in ("off", "bf16", "fp16"):
            raise ConfigError(f"train/amp must be 'off', 'bf16' or 'fp16', got {self.amp!r}")
        self._check_optimisation()

    def _check_optimisation(self) -> None:
        for key, value, choices in (("optimizer", self.optimizer, OPTIMIZERS),
                                    ("lr_schedule", self.lr_schedule, LR_SCHEDULES),
                                    ("loss_scale", self.loss_scale, LOSS_SCALES)):  # fmt: skip
            if value not in choices:
                raise ConfigError(f"train/{key} must be one of {list(choices)}, got {value!r}")
        for key in ("weight_decay", "min_lr", "lr_warmup_epochs", "grad_skip", "lr_cosine_epochs"):
            if getattr(self, key) < 0:
                raise ConfigError(f"train/{key} must be >= 0, got {getattr(self, key)}")
        if not 0.0 <= self.ema_rate < 1.0:
            raise ConfigError(f"train/ema_rate must be in [0, 1) (0 = off), got {self.ema_rate}")
        if self.min_lr > self.lr:
            raise ConfigError(f"train/min_lr {self.min_lr} is above train/lr {self.lr}")


@dataclass(frozen=True)
class Config:
    family: str
    model: Any
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def from_dict(cls, d: dict) -> Config:
        """Strictly parse a nested or flat ("section/key") dict into a Config."""
        d = unflatten(d)
        unknown = sorted(set(d) - {"family", "model", "data", "train"})
        if unknown:
            raise ConfigError(
                f"unknown config sections {unknown}; known: family, model, data, train"
            )
        if "family" not in d:
            raise ConfigError(f"config needs a 'family'; known families: {sorted(models.REGISTRY)}")
        try:
            model_cls = models.config_class(d["family"])
        except ValueError as e:
            raise ConfigError(str(e)) from None
        cfg = cls(
            family=d["family"],
            model=_parse(model_cls, d.get("model", {}), "model"),
            data=_parse(DataConfig, d.get("data", {}), "data"),
            train=_parse(TrainConfig, d.get("train", {}), "train"),
        )
        cfg._check_likelihood_fits_data()
        try:
            limits.check_derived(cfg.model)
        except limits.LimitError as e:
            raise ConfigError(str(e)) from None
        return cfg

    def _check_likelihood_fits_data(self) -> None:
        """The data the model's likelihood needs (models.likelihoods.Likelihood), then the data
        its family needs."""
        # binarised data is never centred; logit data always is
        centred = (self.data.center and not self.data.binarize) or self.data.logit
        name = getattr(self.model, "likelihood", None)
        if name is not None:
            self._check_data_for(likelihood_spec(name), centred)
        if getattr(type(self.model), "unit_interval_data", False) and centred:
            raise ConfigError(
                f"family {self.family!r} models pixels in [0, 1] (sigmoid means): set "
                "data/center=false (and data/logit=false)"
            )

    def _check_data_for(self, lik: Likelihood, centred: bool) -> None:
        rgb = channels(self.data.dataset) == 3 and not self.data.greyscale
        if lik.requires_binary_data and rgb:  # before the binarisation advice below
            raise ConfigError(
                f"model/likelihood={lik.name} on the RGB images of {self.data.dataset}: set "
                "model/likelihood=logistic_mixture (with data/binarize=false, "
                "data/pixels=discrete, data/center=false), or data/greyscale=true"
            )
        if lik.requires_binary_data and not self.data.binarize:
            raise ConfigError(
                f"model/likelihood={lik.name} needs binarised data: set data/binarize=true "
                "(or use model/likelihood=gaussian for continuous pixels)"
            )
        if lik.rejects_binary_data and self.data.binarize and not lik.requires_discrete_pixels:
            raise ConfigError(
                f"model/likelihood={lik.name} on binarised data: set model/likelihood=bernoulli "
                "(or data/binarize=false)"
            )
        if lik.rejects_binary_data and self.data.binarize and lik.requires_discrete_pixels:
            raise ConfigError(
                f"model/likelihood={lik.name} models the 256 8-bit levels, not binarised "
                "data: set data/binarize=false with data/pixels=discrete (and data/center=false), "
                "or use model/likelihood=bernoulli"
            )
        off_grid = lik.requires_discrete_pixels and self.data.pixels != "discrete"
        if lik.requires_uncentred_data and (off_grid or centred):
            raise ConfigError(
                f"model/likelihood={lik.name} models the 256 8-bit levels n / 255: set "
                "data/pixels=discrete and data/center=false (and data/logit=false), got "
                f"data/pixels={self.data.pixels}, data/center={self.data.center}, "
                f"data/logit={self.data.logit}"
            )
        if off_grid:
            raise ConfigError(
                f"model/likelihood={lik.name} needs pixels on the 1/255 grid: set "
                f"data/pixels=discrete (and data/center=false), got data/pixels={self.data.pixels}"
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def flat(self) -> dict:
        """{"family": ..., "model/latent_dim": ..., "train/lr": ...}: one column per key."""
        return flatten(self.to_dict())

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def _parse(cls: type, values: dict, section: str):
    if not isinstance(values, dict):
        raise ConfigError(f"config section {section!r} must be a dict, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {[f'{section}/{k}' for k in unknown]}; "
            f"known {section} keys: {names}"
        )
    kwargs = {k: _typed(f"{section}/{k}", hints[k], v) for k, v in values.items()}
    try:
        limits.check_values({f"{section}/{k}": v for k, v in kwargs.items()})  # before cls()
        return cls(**kwargs)
    except ConfigError:
        raise
    except limits.LimitError as e:
        raise ConfigError(str(e)) from None
    except ValueError as e:  # a family's own __post_init__ check
        raise ConfigError(f"{section}: {e}") from None


def _typed(key: str, expected: type, value: Any) -> Any:
    """Check (and losslessly convert) one value: ints may be floats, never the other way round;
    an int may be text (``--set model/spheres=5`` parses as JSON 5 for a comma-list field)."""
    ok = False
    if expected is bool:
        ok = isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        value = int(value) if ok else value
    elif expected is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        value = float(value) if ok else value
        if ok and not math.isfinite(value):  # NaN passes every range check: refused first
            raise ConfigError(limits.non_finite(key, value))
    elif expected is str:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            value = str(value)
        ok = isinstance(value, str)
    else:
        ok = True
    if not ok:
        raise ConfigError(
            f"{key} must be {expected.__name__}, got {value!r} ({type(value).__name__})"
        )
    return value


def parse_value(text: str) -> Any:
    """A command-line value: JSON literal when it parses (50, 1e-3, true, "x"), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_override(item: str) -> tuple[str, Any]:
    """'train/lr=1e-3' -> ("train/lr", 0.001)."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"expected KEY=VALUE (e.g. train/lr=1e-3), got {item!r}")
    parsed = parse_value(value)
    if why := limits.non_finite_in(key, parsed):  # NaN, inf: JSON's spellings or float()'s
        raise ConfigError(why)
    return key, parsed


def unflatten(d: dict) -> dict:
    """{"model/latent_dim": 5} -> {"model": {"latent_dim": 5}}; nested input passes through."""
    out: dict = {}
    for key, value in d.items():
        parts = key.split("/")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"config key {key!r} conflicts with a value at {p!r}")
        if isinstance(value, dict):
            node.setdefault(parts[-1], {}).update(unflatten(value))
        else:
            node[parts[-1]] = value
    return out


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_keys(family: str) -> set[str]:
    """Every flat key a config of ``family`` has: "model/...", "data/..." and "train/..."."""
    try:
        model_cls = models.config_class(family)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    sections = {"model": model_cls, "data": DataConfig, "train": TrainConfig}
    return {f"{s}/{f.name}" for s, cls in sections.items() for f in dataclasses.fields(cls)}
