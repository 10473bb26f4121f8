"""The hierarchical VAEs' data (docs/specs/hierarchical.md, sections 1.4 and 4) through the real
loaders, on small files in the real formats: data/val_size (the authors' random_split cut),
data/hflip (CIFAR-10's random horizontal flip of training batches), and the config errors of a
likelihood that does not fit the data (logistic_mixture, bernoulli on RGB)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import random_split

from tests import formats
from tests.conftest import write_idx
from training.config import Config, ConfigError, DataConfig
from training.data import (
    FILES_SPLIT,
    VAL_SIZE_DATASETS,
    channels,
    load_data,
    read_images,
    split_by_rule,
    to_unit,
)
from training.datasets import DATASETS
from training.images import logit_dequantise

N_CIFAR, N_OMNIGLOT, N_OMNIGLOT_VAL = 5 * 8, 40, 10


@pytest.fixture
def root(tiny_data_root, monkeypatch) -> Path:
    """tiny_data_root's MNIST and FashionMNIST (300 training, 100 test images), plus CIFAR-10
    (5 batches of 8 random RGB images, test 6), SVHN (4 / 3 / 2) and OMNIGLOT (40 grey training
    images, 7 test; its last-N rule shrunk to 10 so that so few are enough)."""
    rng = np.random.default_rng(7)
    formats.write_cifar(
        tiny_data_root / "cifar-10-batches-py",
        [formats.random_rgb(rng, N_CIFAR // 5) for _ in range(5)],
        formats.random_rgb(rng, 6),
    )
    formats.write_svhn_files(
        tiny_data_root / "svhn", *(formats.random_rgb(rng, n) for n in (4, 3, 2))
    )
    formats.write_omniglot(
        tiny_data_root / "omniglot" / "chardata.mat",
        formats.random_grey(rng, N_OMNIGLOT),
        formats.random_grey(rng, 7),
    )
    monkeypatch.setattr("training.datasets.OMNIGLOT_N_VAL", N_OMNIGLOT_VAL)
    return tiny_data_root


def cfg_for(dataset: str, root: Path, **kw) -> DataConfig:
    return DataConfig(dataset=dataset, root=str(root), center=False, **kw)


def cut(n: int, n_val: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The indices torch.utils.data.random_split gives (training, validation)."""
    parts = random_split(range(n), [n - n_val, n_val], torch.Generator().manual_seed(seed))
    return tuple(torch.tensor(p.indices) for p in parts)


# ---- data/val_size ----


@pytest.mark.parametrize(
    ("dataset", "n_val", "seed"),
    [("mnist", 50, 123), ("fashion_mnist", 7, 0), ("cifar10", 5, 123), ("omniglot", 15, 123)],
)
def test_val_size_is_random_splits_cut_of_the_training_file(root, dataset, n_val, seed):
    raw_train, raw_test = read_images(dataset, str(root))
    n = raw_train.shape[0]
    data = load_data(cfg_for(dataset, root, val_size=n_val, split_seed=seed))
    assert (data.train.shape[0], data.val.shape[0]) == (n - n_val, n_val)
    train_idx, val_idx = cut(n, n_val, seed)
    assert torch.equal(data.train, to_unit(raw_train[train_idx]))
    assert torch.equal(data.val, to_unit(raw_train[val_idx]))
    assert torch.equal(data.test, to_unit(raw_test))  # the test file is untouched
    # Another seed, another cut; val_size=0 keeps the old rule (a different size).
    other = load_data(cfg_for(dataset, root, val_size=n_val, split_seed=seed + 1))
    assert not torch.equal(other.val, data.val)
    old = load_data(cfg_for(dataset, root, split_seed=seed)).val.shape[0]
    assert old == (N_OMNIGLOT_VAL if dataset == "omniglot" else round(0.1 * n)) != n_val


@pytest.mark.parametrize(
    ("dataset", "n", "n_val"),
    [("mnist", 60_000, 5_000), ("cifar10", 50_000, 5_000), ("omniglot", 24_345, 1_000)],
)
def test_val_size_gives_the_authors_split_sizes_at_full_size(dataset, n, n_val):
    """The papers' 55k/5k, 45k/5k and N - 1k/1k, seed 123: each image stands for its index."""
    images = torch.arange(n), torch.arange(3)
    cfg = DataConfig(dataset=dataset, val_size=n_val, split_seed=123)
    train, val, test = split_by_rule(dataset, images, cfg, torch.Generator().manual_seed(123))
    assert (train.numel(), val.numel()) == (n - n_val, n_val)
    train_idx, val_idx = cut(n, n_val, 123)
    assert torch.equal(train, train_idx) and torch.equal(val, val_idx)


@pytest.mark.parametrize("dataset", ["svhn", "static_mnist", "caltech101", "frey_faces"])
def test_val_size_on_a_dataset_with_its_own_split_is_refused(dataset):
    with pytest.raises(ConfigError, match=r"data/val_size: .*only \['fashion_mnist', 'mnist'"):
        DataConfig(dataset=dataset, val_size=100)
    with pytest.raises(ConfigError, match="data/val_size"):
        Config.from_dict({"family": "vae", "data/dataset": dataset, "data/val_size": 100})
    assert DataConfig(dataset=dataset).val_size == 0  # the default is accepted everywhere


def test_val_size_negative_or_with_validation_test_is_refused():
    with pytest.raises(ConfigError, match=r"data/val_size must be >= 0.*got -1"):
        DataConfig(dataset="mnist", val_size=-1)
    with pytest.raises(ConfigError, match="data/val_size.*data/validation=test"):
        DataConfig(dataset="mnist", val_size=10, validation="test")


def test_val_size_not_below_the_training_set_size_fails_at_load_time(root):
    for n_val in (300, 5000):  # the tiny MNIST has 300 training images
        with pytest.raises(ConfigError, match=rf"data/val_size={n_val} .* 300 training images"):
            load_data(cfg_for("mnist", root, val_size=n_val))
    with pytest.raises(ConfigError, match=rf"data/val_size=40 .* {N_CIFAR} training images"):
        load_data(cfg_for("cifar10", root, val_size=40))
    assert load_data(cfg_for("mnist", root, val_size=299)).train.shape[0] == 1


def test_every_dataset_has_one_split_kind():
    kinds = [*VAL_SIZE_DATASETS, *FILES_SPLIT, "frey_faces"]
    assert sorted(kinds) == sorted(DATASETS)


# ---- data/hflip ----


def flipped_or_not(batch: torch.Tensor, images: torch.Tensor, mirrored: torch.Tensor) -> int:
    """How many images of batch are mirrored; fails if one is neither the image nor its mirror."""
    same = (batch == images).flatten(1).all(1)
    flip = (batch - mirrored).abs().flatten(1).amax(1) < 1e-6
    assert (same | flip).all()
    return int(flip.sum())


def test_hflip_mirrors_about_half_of_each_training_batch_never_evaluation(root):
    torch.manual_seed(0)
    plain = load_data(cfg_for("cifar10", root))
    data = load_data(cfg_for("cifar10", root, hflip=True))
    idx = torch.arange(data.train.shape[0]).repeat(10)  # 360 draws of 36, none its own mirror
    x = data.train[idx]
    first, second = data.train_batch(idx), data.train_batch(idx)
    n_flipped = flipped_or_not(first, x, x.flip(-1))
    assert 120 < n_flipped < 240  # Binomial(360, 1/2): 180 +- 9.5
    assert 0 < flipped_or_not(second, x, x.flip(-1)) and not torch.equal(first, second)
    # The stored splits are not flipped: the same images as without data/hflip.
    for a, b in ((data.train, plain.train), (data.val, plain.val), (data.test, plain.test)):
        assert torch.equal(a, b)
    assert torch.equal(plain.train_batch(idx), x)  # off by default: never flipped


def test_hflip_mirrors_centred_images_about_their_levels(root):
    torch.manual_seed(1)
    data = load_data(DataConfig(dataset="cifar10", root=str(root), hflip=True))
    assert data.pixel_mean is not None and data.train.mean(0).abs().max() < 1e-5
    idx = torch.arange(data.train.shape[0]).repeat(5)
    x, mean = data.train[idx], data.pixel_mean
    n_flipped = flipped_or_not(data.train_batch(idx), x, (x + mean).flip(-1) - mean)
    assert 0 < n_flipped < len(idx)


def test_hflip_then_binarise(isolated_cache):
    """Binary-valued images ({0, 255}) make Bernoulli(x) the identity: every binarised training
    image is the image or its mirror. On grey images the draws are: the flips, then Bernoulli."""
    rng = np.random.default_rng(3)
    images = 255 * np.concatenate([formats.letter_f()[None], formats.random_binary(rng, 59)])
    folder = isolated_cache / "binary" / "MNIST" / "raw"
    for split, x in (("train", images), ("t10k", images[:10])):
        write_idx(folder / f"{split}-images-idx3-ubyte", x)
        write_idx(folder / f"{split}-labels-idx1-ubyte", np.zeros(len(x)))
    torch.manual_seed(2)
    data = load_data(
        DataConfig(dataset="mnist", root=str(isolated_cache / "binary"), binarize=True, hflip=True)
    )
    assert data.binarize
    idx = torch.arange(data.train.shape[0]).repeat(4)
    x = data.train[idx]
    assert 0 < flipped_or_not(data.train_batch(idx), x, x.flip(-1)) < len(idx)


def test_hflip_draws_first_then_binarisation_or_dequantisation(tiny_data_root):
    idx = torch.arange(64)
    for kw in ({"binarize": True}, {"logit": True}):
        data = load_data(DataConfig(dataset="mnist", root=str(tiny_data_root), hflip=True, **kw))
        levels = data.train[idx] if data.train_levels is None else data.train_levels[idx]
        torch.manual_seed(5)
        got = data.train_batch(idx)
        torch.manual_seed(5)
        flip = (torch.rand(64) < 0.5).view(-1, 1, 1, 1)
        x = torch.where(flip, levels.flip(-1), levels)
        if kw.get("logit"):
            want = logit_dequantise(x, data.logit_lambda) - data.pixel_mean
        else:
            want = torch.bernoulli(x)
        assert 0 < int(flip.sum()) < 64 and torch.allclose(got, want, atol=1e-6)


# ---- likelihoods that do not fit the data ----


@dataclass(frozen=True)
class StandIn:
    """A family's config with a likelihood (the hierarchical families' logistic_mixture)."""

    likelihood: str = "logistic_mixture"


def check(likelihood: str, **data) -> None:
    Config("stand-in", StandIn(likelihood), DataConfig(**data))._check_likelihood_fits_data()


def test_logistic_mixture_needs_discrete_uncentred_grey_levels():
    ok = {"dataset": "cifar10", "pixels": "discrete", "center": False}
    check("logistic_mixture", **ok)
    check("logistic_mixture", **{**ok, "dataset": "mnist"})
    with pytest.raises(
        ConfigError,
        match=r"model/likelihood=logistic_mixture .* not binarised data: set data/binarize=false "
        r"with data/pixels=discrete .* or use model/likelihood=bernoulli",
    ):
        check("logistic_mixture", dataset="mnist", binarize=True)
    for bad in ({}, {"center": False}, {"center": False, "logit": True}):
        with pytest.raises(
            ConfigError,
            match=r"model/likelihood=logistic_mixture .*: set data/pixels=discrete and "
            r"data/center=false",
        ):
            check("logistic_mixture", dataset="cifar10", **bad)


@pytest.mark.parametrize("dataset", ["cifar10", "svhn"])
def test_bernoulli_on_rgb_needs_greyscale_or_logistic_mixture(dataset):
    for binarize in (True, False):
        with pytest.raises(
            ConfigError,
            match=rf"model/likelihood=bernoulli on the RGB images of {dataset}: set "
            r"model/likelihood=logistic_mixture .* or data/greyscale=true",
        ):
            Config.from_dict(
                {
                    "family": "vae",
                    "model/likelihood": "bernoulli",
                    "data/dataset": dataset,
                    "data/binarize": binarize,
                }
            )
    Config.from_dict(
        {
            "family": "vae",
            "model/likelihood": "bernoulli",
            "data/dataset": dataset,
            "data/binarize": True,
            "data/greyscale": True,
        }
    )


def test_channels_are_those_of_the_images_read(root):
    assert {d: channels(d) for d in DATASETS} == {
        d: 3 if d in ("svhn", "cifar10") else 1 for d in DATASETS
    }
    for dataset in ("mnist", "fashion_mnist", "cifar10", "svhn", "omniglot"):
        assert read_images(dataset, str(root))[0].shape[1] == channels(dataset)
