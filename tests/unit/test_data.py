"""Dataset loading through the real loaders (torchvision's IDX parser), on small files in the real
on-disk formats: lookup, splits, binarisation, clear errors, the download URLs and the validation
rule. The S-VAE authors' .amat and .mat files: tests/unit/test_data_svae.py; the fetching itself:
tests/unit/test_fetch.py; SVHN, CIFAR-10 and the pixel preprocessing: tests/unit/test_images.py
and tests/unit/test_images_preprocessing.py."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import make_mnist_like
from training.config import ConfigError, DataConfig
from training.data import load_data, read_images
from training.datasets import DATASETS, DatasetError


@pytest.mark.parametrize("layout", ["torchvision", "debian"])
def test_both_on_disk_layouts_load(isolated_cache, layout):
    root = make_mnist_like(isolated_cache / layout, layout, n_train=50, n_test=20)
    train, test = read_images("fashion_mnist", str(root))
    assert train.shape == (50, 1, 28, 28) and test.shape == (20, 1, 28, 28)
    assert train.dtype == torch.uint8 and train.max() > 100


def test_debian_layout_is_found_under_a_system_root(isolated_cache, monkeypatch):
    system = isolated_cache / "usr-share-datasets"
    make_mnist_like(system / "fashion-mnist", "debian", n_train=30, n_test=10)
    monkeypatch.setattr("training.files.SYSTEM_ROOTS", (system,))
    train, _ = read_images("fashion_mnist")
    assert train.shape[0] == 30


def test_split_is_seeded_disjoint_and_sized(tiny_data_root):
    cfg = DataConfig(dataset="fashion_mnist", root=str(tiny_data_root), val_fraction=0.2)
    a, b = load_data(cfg), load_data(cfg)
    assert a.train.shape[0] == 240 and a.val.shape[0] == 60 and a.test.shape[0] == 100
    assert torch.equal(a.val, b.val)
    other = load_data(
        DataConfig(
            dataset="fashion_mnist", root=str(tiny_data_root), val_fraction=0.2, split_seed=1
        )
    )
    assert not torch.equal(a.val, other.val)
    # Centred continuous data: the training split has zero mean per pixel.
    assert a.train.mean(0).abs().max() < 1e-5 and a.pixel_mean is not None


def test_binarisation_is_dynamic_for_training_and_fixed_for_evaluation(tiny_data_root):
    cfg = DataConfig(dataset="mnist", root=str(tiny_data_root), binarize=True)
    data = load_data(cfg)
    assert set(data.val.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(data.test, load_data(cfg).test)  # same images every evaluation
    idx = torch.arange(64)
    first, second = data.train_batch(idx), data.train_batch(idx)
    assert set(first.unique().tolist()) <= {0.0, 1.0} and not torch.equal(first, second)
    # Bernoulli(intensity): the binary pixels average to the grey levels.
    many = torch.stack([data.train_batch(idx) for _ in range(200)]).mean(0)
    assert (many - data.train[idx]).abs().mean() < 0.02


def test_missing_dataset_says_where_it_looked_and_how_to_install(isolated_cache):
    with pytest.raises(DatasetError, match=r"not found: looked for .*empty.*apt-get install"):
        read_images("fashion_mnist", str(isolated_cache / "empty"))


def test_corrupt_dataset_is_a_clear_error(isolated_cache):
    root = make_mnist_like(isolated_cache / "bad", "torchvision", n_train=20, n_test=10)
    path = root / "FashionMNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.raises(DatasetError, match="unreadable.*delete the files and reinstall"):
        read_images("fashion_mnist", str(root))


def test_corrupt_gzip_is_a_clear_error(isolated_cache):
    root = make_mnist_like(isolated_cache / "badgz", "debian", n_train=20, n_test=10)
    (root / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match="corrupt"):
        read_images("fashion_mnist", str(root))


def test_real_download_urls_are_kept():
    assert DATASETS["omniglot"].urls == (
        "https://github.com/yburda/iwae/raw/master/datasets/OMNIGLOT/chardata.mat",
    )
    assert DATASETS["static_mnist"].urls[1] == (
        "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
        "binarized_mnist_valid.amat"
    )
    assert DATASETS["caltech101"].files == ("caltech101_silhouettes_28_split1.mat",)
    assert DATASETS["frey_faces"].urls == ("https://cs.nyu.edu/~roweis/data/frey_rawface.mat",)
    assert DATASETS["svhn"].urls == tuple(
        f"http://ufldl.stanford.edu/housenumbers/{s}_32x32.mat" for s in ("train", "extra", "test")
    )
    assert DATASETS["cifar10"].urls == ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",)
    assert DATASETS["cifar10"].files == (
        *(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch",
    )


def test_svae_no_rescale_255_thresholds_every_split_at_zero(tiny_data_root):
    cfg = DataConfig(
        dataset="mnist", root=str(tiny_data_root), binarize=True, svae_no_rescale_255=True
    )
    data = load_data(cfg)
    train_u8, test_u8 = read_images("mnist", str(tiny_data_root))
    assert torch.equal(data.test, (test_u8 > 0).float()) and not data.binarize
    idx = torch.arange(32)
    assert torch.equal(data.train_batch(idx), data.train_batch(idx))
    assert set(data.val.unique().tolist()) == {0.0, 1.0}
    for bad in ({"binarize": False}, {"dataset": "omniglot"}):
        with pytest.raises(ConfigError, match="svae_no_rescale_255.*binarize=true"):
            DataConfig(**{"dataset": "mnist", "binarize": True, "svae_no_rescale_255": True, **bad})


def test_the_authors_validation_rule_trains_on_everything_and_validates_on_test(tiny_data_root):
    """data/validation=test (the VLAE authors' protocol): no hold-out, the test images validate;
    the project's default holds out a seeded val_fraction and never shows the test set."""
    ours = load_data(DataConfig(dataset="fashion_mnist", root=str(tiny_data_root)))
    theirs = load_data(
        DataConfig(dataset="fashion_mnist", root=str(tiny_data_root), validation="test")
    )
    assert ours.train.shape[0] == 270 and ours.val.shape[0] == 30  # 300 training images
    assert theirs.train.shape[0] == 300 and torch.equal(theirs.val, theirs.test)
    with pytest.raises(ConfigError, match="data/validation must be one of"):
        DataConfig(validation="train")
