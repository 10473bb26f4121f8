"""Every family over generated configs: each either is refused with a ConfigError (by
Config.from_dict, or by the preflight check that builds the model for the data's image shape,
training.memory.check_model) or builds on the meta device. Never another exception.

Values per key: edge ints (0, negatives, 1, huge, past int64), floats (0, negatives, tiny, huge,
NaN, infinities), each key's type as text and other wrong types, every choice string the models
package names (module-level tuples and dicts of strings) and strings no choice takes; 1 to 3 keys
at once, on a base config the family accepts.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

import models
from training import memory
from training.config import Config, ConfigError, DataConfig, TrainConfig, parse_override

BASE = {
    **dict.fromkeys(("dct_vae", "dvp_vae", "ladder", "nvae", "psvae", "svae"),
                    {"data/binarize": True}),
    **dict.fromkeys(("spvae", "convspvae", "spvae_vae", "spvae_convvae"), {"data/center": False}),
}  # fmt: skip
"""Data keys that make each family's default model config valid (its default likelihood)."""
HIERARCHICAL = {"dct_vae", "dvp_vae", "ladder"}
"""Families whose meta build takes a second or more: fewer examples."""

NAN, INF = float("nan"), float("inf")
INTS = [0, -1, 1, 2, 3, 4, 16, 2**31, 10**12, 2**63, -(2**63) - 1]
FLOATS = [0.0, -1.0, 1e-300, 1e-3, 0.5, 1.0, 2.0, 100.0, 1e300, -1e300, NAN, INF, -INF]
WRONG = ["x", "", "nan", "1e999", None, [1], {"a": 1}]
LISTS = ["1", "2,2", "4,4", "1,1,1,1,1,1", "0", "0,1", "-1", "16,32", "99999999999999999999"]
TRAIN_DATA = {
    "train/lr": FLOATS, "train/batch_size": INTS, "train/ema_rate": FLOATS,
    "train/grad_clip": FLOATS, "train/warmup_epochs": FLOATS, "train/seed": INTS,
    "data/val_fraction": FLOATS, "data/logit_lambda": FLOATS, "data/split_seed": INTS,
}  # fmt: skip


def choice_strings() -> list[str]:
    """Every string in a module-level tuple, list or dict key of the models package."""
    found = set()
    for info in pkgutil.walk_packages(models.__path__, "models."):
        for value in vars(importlib.import_module(info.name)).values():
            if isinstance(value, (tuple, list, dict)) and value:
                found.update(v for v in value if isinstance(v, str))
    return sorted(found)


CHOICES = choice_strings() + ["foo", "NONE", " gaussian"]


def values_for(kind: str, default) -> st.SearchStrategy:
    """Edge values of a field of type ``kind`` (the dataclass annotation), wrong ones, and its
    default (so that the other keys drawn with it are tried on a config that can build)."""
    own = {
        "int": INTS + ["7", 2.5, True],
        "float": FLOATS + ["0.5", True, 3],
        "bool": [True, False, "true", 1, 0],
        "str": CHOICES + LISTS + [3, 1.5, False],
    }[kind]
    return st.one_of(st.just(default), st.sampled_from(own), st.sampled_from(WRONG))


def family_config(family: str) -> st.SearchStrategy:
    fields = {f"model/{f.name}": values_for(str(f.type), f.default)
              for f in dataclasses.fields(models.config_class(family))}  # fmt: skip
    keys = sorted(fields) + sorted(TRAIN_DATA)
    pick = {**fields, **{k: st.sampled_from(v) for k, v in TRAIN_DATA.items()}}
    chosen = st.lists(st.sampled_from(keys), min_size=1, max_size=3, unique=True)
    return chosen.flatmap(
        lambda ks: st.fixed_dictionaries({k: pick[k] for k in ks}).map(
            lambda d: {"family": family, **BASE.get(family, {}), **d}
        )
    )


def refused_or_built(config: dict) -> str:
    """'config' / 'model' (refused with a ConfigError by the one or the other) or 'built'."""
    try:
        cfg = Config.from_dict(config)
    except ConfigError:
        return "config"
    try:
        memory.check_model(cfg)  # models.build on the meta device for the data's image shape
    except ConfigError as e:  # a shape-dependent constructor check, naming its model key
        names = [f.name for f in dataclasses.fields(cfg.model)]
        assert any(str(e).startswith(f"model/{n}") for n in names), str(e)
        return "model"
    return "built"


@pytest.mark.parametrize("family", sorted(models.REGISTRY))
def test_the_base_config_builds(family):
    assert refused_or_built({"family": family, **BASE.get(family, {})}) == "built"


@pytest.mark.parametrize("family", sorted(models.REGISTRY))
def test_every_generated_config_is_refused_or_builds(family):
    @settings(
        derandomize=True,
        deadline=None,
        max_examples=30 if family in HIERARCHICAL else 100,
        suppress_health_check=[HealthCheck.too_slow],
        database=None,
    )
    @given(family_config(family))
    def check(config):
        refused_or_built(config)  # any exception other than ConfigError fails

    check()


def float_keys(family: str) -> list[str]:
    sections = {"model": models.config_class(family), "data": DataConfig, "train": TrainConfig}
    return [f"{name}/{f.name}" for name, cls in sections.items()
            for f in dataclasses.fields(cls) if str(f.type) == "float"]  # fmt: skip


@pytest.mark.parametrize("family", sorted(models.REGISTRY))
def test_no_float_key_takes_nan_or_infinity(family):
    """Every float key of every family, NaN and both infinities: a ConfigError naming the key
    (and its range); as --set text in any spelling float() reads, refused where it is parsed."""
    for key in float_keys(family):
        for value in (NAN, INF, -INF):
            with pytest.raises(ConfigError, match=rf"^{key}=(nan|inf|-inf) is not a number"):
                Config.from_dict({"family": family, **BASE.get(family, {}), key: value})
        for text in ("NaN", "nan", "-Infinity", "inf", "+INF", " -inf ", "1e999", "-1E400"):
            with pytest.raises(ConfigError, match=rf"^{key}=(nan|inf|-inf) is not a number"):
                parse_override(f"{key}={text}")
