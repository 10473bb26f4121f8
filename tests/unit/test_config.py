"""Strict, typed configs: every mistake is an error that names the key."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from training import memory
from training.config import Config, ConfigError, flatten, parse_override, unflatten
from training.trainer import build_model


def test_flat_and_nested_dicts_give_the_same_config():
    flat = Config.from_dict({"family": "vae", "model/latent_dim": 7, "train/lr": 1e-3})
    nested = Config.from_dict({"family": "vae", "model": {"latent_dim": 7}, "train": {"lr": 1e-3}})
    assert flat == nested
    assert flat.model.latent_dim == 7 and flat.train.lr == 1e-3
    assert Config.from_dict(flat.flat()) == flat  # the stored config rebuilds the one that ran


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"family": "vae", "model/latent": 3}, r"model/latent.*known model keys"),
        ({"family": "vae", "trian/lr": 3}, r"unknown config sections \['trian'\]"),
        ({"family": "vae", "model/latent_dim": 2.5}, r"model/latent_dim must be int, got 2.5"),
        ({"family": "vae", "model/latent_dim": True}, r"model/latent_dim must be int"),
        ({"family": "vae", "train/lr": "fast"}, r"train/lr must be float, got 'fast'"),
        ({"family": "vae", "data/binarize": 1}, r"data/binarize must be bool"),
        ({"family": "gan"}, r"unknown model family 'gan'"),
        ({"model/latent_dim": 3}, r"needs a 'family'"),
        ({"family": "vae", "data/dataset": "imagenet"}, r"unknown dataset 'imagenet'"),
        ({"family": "vae", "train/lr": -1.0}, r"train/lr must be > 0"),
        ({"family": "vae", "train/amp": "fp8"}, r"train/amp must be"),
        ({"family": "vae", "model/latent_dim": 0}, r"latent_dim and hidden_dim must be >= 1"),
        (
            {"family": "vae", "model/likelihood": "bernoulli"},
            r"needs binarised data.*data/binarize",
        ),
        ({"family": "vae", "data/binarize": True}, r"gaussian on binarised data"),
    ],
)
def test_bad_configs_name_the_key(bad, match):
    with pytest.raises(ConfigError, match=match):
        Config.from_dict(bad)


UNCENTRED = {"data/center": False}


@pytest.mark.parametrize(
    "bad,match",
    [
        (
            {"data/pixels": "noisy"},
            r"data/pixels must be one of \['continuous', 'discrete', 'perturbed'\], got 'noisy'",
        ),
        (
            {"data/pixels": "discrete", "data/binarize": True, **UNCENTRED},
            r"data/pixels=discrete needs grey levels.*set data/binarize=false",
        ),
        ({"data/pixels": "perturbed"}, r"data/pixels=perturbed .*set data/center=false"),
        (
            {
                "data/dataset": "mnist",
                "data/pixels": "discrete",
                **UNCENTRED,
                "data/spvae_svhn_skip_discretise": True,
            },
            r"data/spvae_svhn_skip_discretise .*needs data/dataset=svhn and data/pixels=discrete"
            r".*dataset='mnist'",
        ),
        (
            {
                "data/dataset": "svhn",
                "data/pixels": "perturbed",
                **UNCENTRED,
                "data/spvae_svhn_skip_discretise": True,
            },
            r"data/spvae_svhn_skip_discretise .*pixels='perturbed'",
        ),
        ({"data/train_fraction": 0.0}, r"data/train_fraction must be in \(0, 1\].*got 0\.0"),
        ({"data/train_fraction": 1.5}, r"data/train_fraction must be in \(0, 1\].*got 1\.5"),
        ({"data/pixels": 3}, r"data/pixels must be one of"),
        ({"data/minmax": "yes"}, r"data/minmax must be bool"),
        ({"data/greyscale": 1}, r"data/greyscale must be bool"),
        ({"data/spvae_train_subset": 0}, r"data/spvae_train_subset must be bool"),
        (
            {"family": "spvae_vae", "model/likelihood": "binomial", **UNCENTRED},
            r"model/likelihood=binomial needs .*set data/pixels=discrete.*got data/pixels="
            r"continuous",
        ),
        (
            {
                "family": "spvae",
                "model/likelihood": "binomial",
                "data/pixels": "perturbed",
                **UNCENTRED,
            },
            r"model/likelihood=binomial needs .*data/pixels=discrete",
        ),
        ({"family": "spvae"}, r"family 'spvae' models pixels in \[0, 1\].*set data/center=false"),
        ({"family": "spvae_convvae"}, r"family 'spvae_convvae' .*set data/center=false"),
    ],
)
def test_bad_spvae_data_configs_name_the_key_and_the_fix(bad, match):
    with pytest.raises(ConfigError, match=match):
        Config.from_dict({"family": "vae", **bad})


@pytest.mark.parametrize(
    "bad,match",
    [
        (
            {"data/logit": True, "data/binarize": True, "model/likelihood": "bernoulli"},
            r"data/logit transforms continuous grey levels.*set data/binarize=false",
        ),
        (
            {"data/logit": True, "data/pixels": "discrete", **UNCENTRED},
            r"data/logit needs data/pixels=continuous.*got data/pixels=discrete",
        ),
        (
            {"data/logit": True, "data/pixels": "perturbed"},  # named before data/center's error
            r"data/logit needs data/pixels=continuous.*got data/pixels=perturbed",
        ),
        ({"data/logit_lambda": 0.0}, r"data/logit_lambda must be in \[1e-06, 0.5\).*got 0\.0"),
        ({"data/logit_lambda": 0.5}, r"data/logit_lambda must be in .*got 0\.5"),
        ({"data/logit_lambda": 1e-8}, r"data/logit_lambda must be in .*float32.*got 1e-08"),
        ({"data/logit_lambda": -0.05}, r"data/logit_lambda must be in"),
        ({"data/logit": 1}, r"data/logit must be bool"),
        ({"data/logit_lambda": "small"}, r"data/logit_lambda must be float"),
    ],
)
def test_bad_logit_data_configs_name_the_key_and_the_fix(bad, match):
    with pytest.raises(ConfigError, match=match):
        Config.from_dict({"family": "vae", **bad})


def test_the_logit_data_settings_parse_and_round_trip():
    plain = Config.from_dict({"family": "vae"}).data
    assert (plain.logit, plain.logit_lambda) == (False, 0.05)  # off by default; the authors' lam
    for flat in (
        {"family": "vae", "data/logit": True},
        {"family": "vae", "data/logit": True, "data/logit_lambda": 1e-6, "data/center": False},
        {"family": "vae", "data/logit": True, "data/greyscale": True, "data/dataset": "cifar10"},
    ):
        cfg = Config.from_dict(flat)
        assert Config.from_dict(cfg.flat()) == cfg
        assert {k: cfg.flat()[k] for k in flat} == flat


def test_the_spvae_data_settings_parse_and_round_trip():
    cells = [
        {
            "family": "spvae",
            "model/likelihood": "binomial",
            "data/pixels": "discrete",
            "data/dataset": "svhn",
            "data/spvae_svhn_skip_discretise": True,
        },
        {
            "family": "convspvae",
            "model/likelihood": "gaussian",
            "data/pixels": "perturbed",
            "data/dataset": "cifar10",
            "data/val_fraction": 0.2,
            "data/train_fraction": 0.01,
            "data/spvae_train_subset": True,
        },
        {"family": "spvae_vae", "model/likelihood": "bernoulli", "data/binarize": True},
    ]
    for cell in cells:
        flat = {**cell, "data/greyscale": True, "data/minmax": True, "data/center": False}
        cfg = Config.from_dict(flat)
        assert Config.from_dict(cfg.flat()) == cfg
        assert {k: cfg.flat()[k] for k in flat} == flat
    plain = Config.from_dict({"family": "vae"}).data  # defaults: the data as read, centred
    assert (plain.greyscale, plain.minmax, plain.pixels, plain.center) == (
        False,
        False,
        "continuous",
        True,
    )
    assert (plain.train_fraction, plain.spvae_train_subset) == (1.0, False)


def test_ints_are_accepted_for_floats_and_converted():
    cfg = Config.from_dict({"family": "vae", "train/lr": 1, "train/warmup_epochs": 3})
    assert isinstance(cfg.train.lr, float) and cfg.train.warmup_epochs == 3.0


def test_configs_are_frozen():
    cfg = Config.from_dict({"family": "vae"})
    with pytest.raises(AttributeError):
        cfg.train.lr = 1.0


def test_command_line_overrides_parse_as_json_literals():
    assert parse_override("train/lr=1e-3") == ("train/lr", 1e-3)
    assert parse_override("data/binarize=true") == ("data/binarize", True)
    assert parse_override("data/root=/data/x") == ("data/root", "/data/x")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("train/lr")


def test_flatten_and_unflatten_are_inverse():
    nested = {"family": "vae", "model": {"latent_dim": 2}, "train": {"lr": 0.1}}
    assert unflatten(flatten(nested)) == nested


def test_an_int_on_the_command_line_is_text_for_a_text_field():
    cfg = Config.from_dict(
        {
            "family": "psvae",
            "data/dataset": "fashion_mnist",
            "data/binarize": True,
            "model/latent_dim": 5,
            **dict([parse_override("model/spheres=5")]),
        }  # fmt: skip
    )
    assert cfg.model.spheres == "5"
    with pytest.raises(ConfigError, match="model/hidden_dims must be str"):
        Config.from_dict({"family": "svae", "data/dataset": "mnist", "model/hidden_dims": True})


@pytest.mark.parametrize(
    "item,range_",
    [
        ("train/lr=NaN", "> 0"),  # JSON's spelling: a float nan
        ("train/lr=nan", "> 0"),  # float()'s spelling: text, refused all the same
        ("train/ema_rate=Infinity", "in [0, 1) (0 = off)"),
        ("data/val_fraction=-inf", "in (0, 1)"),
        ("train/grad_clip=1e999", ">= 0 (0 = off)"),  # JSON reads it as inf
        ("model/update_lr= +INF ", "in (0, 1]"),
    ],
)
def test_nan_and_infinities_are_refused_where_an_override_is_parsed(item, range_):
    key = item.partition("=")[0]
    with pytest.raises(ConfigError) as e:
        parse_override(item)
    assert str(e.value).startswith(f"{key}=") and "NaN and infinities" in str(e.value)
    assert str(e.value).endswith(f"give a finite value {range_}")


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"train/lr": float("nan")}, r"^train/lr=nan is not a number.*> 0"),
        ({"train/warmup_epochs": float("inf")}, r"^train/warmup_epochs=inf .*>= 0"),
        ({"data/logit_lambda": float("-inf")}, r"^data/logit_lambda=-inf .*\[1e-06, 0.5\)"),
        ({"model/latent_dim": 2**31}, r"model/latent_dim=2147483648 is too large: at most"),
        ({"model/hidden_dim": 2**63}, r"model/hidden_dim=.* is too large"),
        ({"train/seed": -1}, r"train/seed=-1: a seed is in \[0, "),
        ({"model/likelihood": "foo"}, r"likelihood must be one of 'bernoulli', 'gaussian'"),
    ],
)
def test_values_no_model_can_take_are_config_errors(bad, match):
    with pytest.raises(ConfigError, match=match):
        Config.from_dict({"family": "vae", **bad})


@pytest.mark.parametrize(
    "family,bad,match",
    [
        ("ladder", {"model/num_ch": 2**20}, r"model/num_ch=1048576 is too large"),
        ("ladder", {"model/enc_blocks": 10**9}, r"model/enc_blocks=1000000000 is too large"),
        ("ladder", {"model/scale_ch_mult": 1e-300}, r"model/scale_ch_mult must be in"),
        ("ladder", {"model/num_ch": 1, "model/scale_ch_mult": 0.5}, r"a layer of 0 channels"),
        ("dct_vae", {"model/unet_heads": 3}, r"UNet width of 32: each must be a multiple"),
        ("dvp_vae", {"model/unet_channels": 8}, r"model/unet_channels=8 .*multiple of 16"),
        ("convspvae", {"model/sum_k": 10**9}, r"model/sum_k=1000000000 is too large"),
        ("psvae", {"model/latent_dim": 10**8}, r"spheres '5' add up to 5"),  # a short message
        ("spvae", {"model/hidden_dims": "30,99999999999"}, r"each element must be at most"),
    ],
)
def test_each_familys_constructor_limits_are_config_errors(family, bad, match):
    base = {"data/binarize": True} if family in ("ladder", "dct_vae", "dvp_vae", "psvae") else {}
    base = {"data/center": False} if "spvae" in family else base
    with pytest.raises(ConfigError, match=match):
        Config.from_dict({"family": family, **base, **bad})


def test_the_memory_estimate_counts_parameters_optimiser_and_activations():
    """Parameters, gradients and two Adam moments are 4 copies of the float32 weights; the
    activations grow with the batch (the meta forward's saved tensors, x2 for backward)."""
    cfg = Config.from_dict({"family": "vae", "model/latent_dim": 8, "model/hidden_dim": 32})
    small = memory.estimate(cfg)
    n = 784 * 32 + 32 + 32 * 32 + 32 + 32 * 16 + 16 + 8 * 32 + 32 + 32 * 32 + 32 + 32 * 784 + 784
    assert small.parameters == small.gradients == 4 * (n + 1)  # + the Gaussian head's variance
    assert small.optimiser == 2 * small.parameters and small.ema == 0 and small.complete
    bigger = dataclasses.replace(cfg.train, batch_size=1280)
    big = memory.estimate(dataclasses.replace(cfg, train=bigger))
    assert big.parameters == small.parameters
    # the batch x 10; what is saved once per step whatever the batch (weights' views) aside
    assert 8.0 < big.activations / small.activations <= 10.0


def test_a_model_that_does_not_fit_is_refused_with_its_estimate():
    cfg = Config.from_dict({"family": "vae", "model/latent_dim": 10**9})
    with pytest.raises(ConfigError) as e:
        memory.check_fits(cfg, None, torch.device("cpu"), have=(16 * 10**9, "this host has 16 GB"))
    assert re.fullmatch(
        r"model/latent_dim=1000000000 with train/batch_size=128 needs about [\d.]+ TB \(parameters "
        r"[\d.]+ TB, gradients [\d.]+ TB, optimiser state [\d.]+ TB, activations of one batch "
        r"[\d.]+ TB\) but this host has 16 GB: lower (model/latent_dim or train/batch_size|"
        r"train/batch_size or model/latent_dim)",
        str(e.value),
    ), str(e.value)
    fits = Config.from_dict({"family": "vae"})
    assert memory.check_fits(fits, None, torch.device("cpu"), have=(10**9, "1 GB")).total < 10**9


def test_the_trainers_setup_refuses_before_allocating():
    """build_model (a trial's and `python -m training`'s setup): a ConfigError, which a trial
    reports as its config_error, instead of an allocation of terabytes."""
    huge = Config.from_dict({"family": "vae", "model/latent_dim": 10**9, "train/device": "cpu"})
    with pytest.raises(ConfigError, match=r"model/latent_dim=1000000000 .* needs about .* TB"):
        build_model(huge, (1, 28, 28))
    cfg = Config.from_dict({"family": "vae", "model/hidden_dim": 16, "train/device": "cpu"})
    assert sum(p.numel() for p in build_model(cfg, (1, 28, 28)).parameters()) > 0


def test_every_likelihood_a_family_accepts_says_what_data_it_needs():
    """training.config's likelihood rules read models.likelihoods.SPECS: a family's choice
    missing there would be an unexplained error instead of a checked config."""
    from models.hierarchical.outputs import LIKELIHOODS as LADDER
    from models.likelihoods import LIKELIHOODS, SPECS
    from models.spvae.leaves import SPVAE_LIKELIHOODS

    assert {*LIKELIHOODS, *LADDER, *SPVAE_LIKELIHOODS} == set(SPECS)
    assert all(name == spec.name for name, spec in SPECS.items())
