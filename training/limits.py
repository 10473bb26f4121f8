"""Value checks every config passes before a model sees it: no NaN or infinity, and no size,
count or factor beyond what a model can be built from.

The families' own config classes check each key's meaning (a choice, a positive size); these
checks add what they leave open: a float that is not a finite number (every NaN comparison is
false, so ``lr <= 0`` lets NaN through), an int so large that a tensor's size overflows or a
Python loop over it never ends, and the channel widths a ladder's multipliers derive from
model/num_ch. ``training.config.Config.from_dict`` calls ``check_values`` and
``check_derived``; what only the image shape decides is checked by building the model on the
meta device (training.memory.check_model).
"""

from __future__ import annotations

import math
import re

FLOAT_RANGES = {
    "train/lr": "> 0",
    "train/warmup_epochs": ">= 0",
    "train/grad_clip": ">= 0 (0 = off)",
    "train/weight_decay": ">= 0",
    "train/min_lr": "in [0, train/lr]",
    "train/lr_warmup_epochs": ">= 0",
    "train/ema_rate": "in [0, 1) (0 = off)",
    "train/grad_skip": ">= 0 (0 = off)",
    "train/step_seconds": ">= 0 (0 = off)",
    "data/val_fraction": "in (0, 1)",
    "data/train_fraction": "in (0, 1]",
    "data/logit_lambda": "in [1e-06, 0.5)",
    "model/scale_ch_mult": "in [0.01, 16]",
    "model/block_ch_mult": "in [0.01, 16]",
    "model/softplus_beta": "> 0",
    "model/logvar_min": "below model/logvar_max",
    "model/logvar_max": "above model/logvar_min",
    "model/input_mean": "any finite number",
    "model/input_std": "> 0",
    "model/unet_dropout": "in [0, 1)",
    "model/gamma_min": "below model/gamma_max",
    "model/gamma_max": "above model/gamma_min",
    "model/svi_lr": "> 0",
    "model/update_lr": "in (0, 1]",
}
"""What each float key accepts, for the message that refuses a NaN or an infinity."""

CH_MULT = (0.01, 16.0)
"""model/scale_ch_mult and model/block_ch_mult: the ladder's width factors."""
SEED_MAX = 2**63 - 1
"""Seeds are int64 for torch.Generator.manual_seed."""
WIDTH_MAX = 2**31 - 1
"""An MLP width or latent size: a tensor dimension in int32, as CUDA kernels index them; larger
still-representable models are refused by their memory estimate (training.memory)."""
CHANNELS_MAX = 2**16
"""A convolution's channels: weights are channels^2 x kernel, which overflows int64 bytes
(torch: "Storage size calculation overflowed") long before a width of 2^31."""
COUNT_MAX = 1024
"""A count the model builds in a Python loop (blocks, flows, updates, mixture components,
importance samples, SPN sums): beyond it, building never ends."""

INT_MAX = {
    **dict.fromkeys(("latent_dim", "hidden_dim", "iaf_dim", "n_dense"), WIDTH_MAX),
    **dict.fromkeys(("num_ch", "unet_channels", "latent_width"), CHANNELS_MAX),
    **dict.fromkeys(
        (
            "enc_blocks",
            "dec_blocks",
            "post_blocks",
            "flows",
            "updates",
            "svi_steps",
            "unet_blocks",
            "unet_heads",
            "num_mix",
            "samples",
            "sum_k",
            "leaf_k",
            "test_repeats",
            "kernel_size",
            "stride",
            "cell_size",
        ),
        COUNT_MAX,
    ),  # fmt: skip
}
"""The largest value of each model int key (by field name, whatever the family)."""
LIST_MAX = {"hidden_dims": WIDTH_MAX, "spheres": WIDTH_MAX, "filters": CHANNELS_MAX,
            "latent_scales": COUNT_MAX, "unet_mult": COUNT_MAX}  # fmt: skip
"""The largest element of each comma-list model key."""
TRAIN_INT_MAX = {"seed": SEED_MAX}
DATA_INT_MAX = {"split_seed": SEED_MAX}
_LIST = re.compile(r"^\s*-?\d+\s*(,\s*-?\d+\s*)*$")


class LimitError(ValueError):
    """A value beyond what a model can be built from (training.config makes it a ConfigError)."""


def non_finite(key: str, value: float) -> str:
    """The message that refuses NaN or an infinity as ``key``'s value, with the key's range."""
    allowed = FLOAT_RANGES.get(key, "")
    return (
        f"{key}={value} is not a number a model can use (NaN and infinities are refused): "
        f"give a finite value{' ' + allowed if allowed else ''}"
    )


def check_finite(key: str, value) -> None:
    """A float value must be a finite number: NaN, inf and -inf (any spelling) are refused."""
    if isinstance(value, float) and not math.isfinite(value):
        raise LimitError(non_finite(key, value))


def non_finite_in(key: str, value) -> str | None:
    """The refusal of a ``--set key=value`` value that is, or holds (a JSON object), NaN or an
    infinity: a float, or text that Python's float() reads as one ("nan", "-Infinity", "inf");
    None when there is none."""
    if isinstance(value, dict):
        return next(filter(None, (non_finite_in(f"{key}/{k}", v) for k, v in value.items())), None)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, float) and not math.isfinite(value):
        return non_finite(key, value)
    return None


def check_values(flat: dict) -> None:
    """Every value of a flat config (``"model/latent_dim": 5``, typed already): finite floats,
    ints and comma-list elements within their key's upper bound, seeds in int64."""
    for key, value in flat.items():
        check_finite(key, value)
        section, _, name = key.partition("/")
        bound = {"model": INT_MAX, "train": TRAIN_INT_MAX, "data": DATA_INT_MAX}.get(
            section, {}
        ).get(name)
        if bound is not None and isinstance(value, int) and not isinstance(value, bool):
            if value > bound:
                raise LimitError(f"{key}={value} is too large: at most {bound}")
            if name in ("seed", "split_seed") and value < 0:
                raise LimitError(f"{key}={value}: a seed is in [0, {bound}]")
        if section == "model" and name in LIST_MAX and isinstance(value, str):
            if _LIST.match(value) and max(int(p) for p in value.split(",")) > LIST_MAX[name]:
                raise LimitError(f"{key}={value!r}: each element must be at most {LIST_MAX[name]}")


def check_derived(model_cfg) -> None:
    """A ladder's widths: model/num_ch times model/scale_ch_mult per scale (and each block's
    model/block_ch_mult) stays a whole channel and within CHANNELS_MAX."""
    scale_mult = getattr(model_cfg, "scale_ch_mult", None)
    if scale_mult is None:
        return
    block_mult = model_cfg.block_ch_mult
    for key, mult in (("model/scale_ch_mult", scale_mult), ("model/block_ch_mult", block_mult)):
        if not CH_MULT[0] <= mult <= CH_MULT[1]:
            raise LimitError(f"{key} must be in [{CH_MULT[0]:g}, {CH_MULT[1]:g}], got {mult}")
    n_scales = len(str(model_cfg.latent_scales).split(","))
    width = model_cfg.num_ch
    for _ in range(n_scales):
        for w in (width, int(width * block_mult)):
            if not 1 <= w <= CHANNELS_MAX:
                raise LimitError(
                    f"model/num_ch={model_cfg.num_ch} with model/scale_ch_mult={scale_mult} and "
                    f"model/block_ch_mult={block_mult} gives a layer of {w} channels over "
                    f"{n_scales} scales; each layer needs 1 to {CHANNELS_MAX}: change one of them"
                )
        width = int(width * scale_mult)
    _check_unet(model_cfg)


def _check_unet(model_cfg) -> None:
    """The context UNet's widths model/unet_channels x each model/unet_mult are GroupNorm's
    multiples of GROUPS and split evenly over model/unet_heads attention heads."""
    channels = getattr(model_cfg, "unet_channels", None)
    if channels is None:
        return
    from models.hierarchical.unet import GROUPS  # the one constant the check shares

    mults = [int(m) for m in str(model_cfg.unet_mult).split(",")]
    for w in (channels * m for m in mults):
        if w % GROUPS or w % model_cfg.unet_heads:
            raise LimitError(
                f"model/unet_channels={channels} with model/unet_mult={model_cfg.unet_mult!r} "
                f"gives a UNet width of {w}: each must be a multiple of {GROUPS} (GroupNorm's "
                f"groups) and of model/unet_heads={model_cfg.unet_heads}; e.g. "
                f"model/unet_channels={GROUPS * model_cfg.unet_heads}"
            )
