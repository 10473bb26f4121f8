"""Dataset loading through torchvision's real loaders, on small files in the real formats."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import make_mnist_like
from training.config import DataConfig
from training.data import DatasetError, load_data, read_images


@pytest.mark.parametrize("layout", ["torchvision", "debian"])
def test_both_on_disk_layouts_load(isolated_cache, layout):
    root = make_mnist_like(isolated_cache / layout, layout, n_train=50, n_test=20)
    train, test = read_images("fashion_mnist", str(root))
    assert train.shape == (50, 1, 28, 28) and test.shape == (20, 1, 28, 28)
    assert train.dtype == torch.uint8 and train.max() > 100


def test_debian_layout_is_found_under_a_system_root(isolated_cache, monkeypatch):
    system = isolated_cache / "usr-share-datasets"
    make_mnist_like(system / "fashion-mnist", "debian", n_train=30, n_test=10)
    monkeypatch.setattr("training.data.SYSTEM_ROOTS", (system,))
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
