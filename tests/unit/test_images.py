"""SVHN (Stanford's .mat files) and CIFAR-10 (python pickles) through the real loaders, on small
files in the real formats: reading, splits, folder names, downloads and corrupt files. The pixel
preprocessing: test_images_preprocessing.py."""

from __future__ import annotations

import pickle
import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.io
import torch

from tests import formats
from training.config import DataConfig
from training.data import load_data, read_images
from training.datasets import (
    DATASETS,
    SVHN_N_VAL,
    DatasetError,
)


def cfg_for(dataset: str, root: Path, **kw) -> DataConfig:
    return DataConfig(dataset=dataset, root=str(root), **kw)


# ---- SPVAE datasets: SVHN (Stanford's .mat files), CIFAR-10 (python pickles) ----


@pytest.fixture
def spvae(isolated_cache) -> SimpleNamespace:
    """A data root with tiny SVHN files (train 12, extra 9, test 7) and CIFAR-10 batches (5 x 6,
    test 8) of random RGB images, and those upright [N, 32, 32, 3] source images."""
    rng = np.random.default_rng(4)
    root = isolated_cache / "spvae-data"
    svhn = tuple(formats.random_rgb(rng, n) for n in (12, 9, 7))  # train, extra, test
    formats.write_svhn_files(root / "svhn", *svhn)
    cifar = [formats.random_rgb(rng, 6) for _ in range(5)], formats.random_rgb(rng, 8)
    formats.write_cifar(root / "cifar-10-batches-py", *cifar)
    return SimpleNamespace(root=root, svhn=svhn, cifar=cifar)


def chw(rgb: np.ndarray) -> torch.Tensor:
    """Upright [N, H, W, 3] -> [N, 3, H, W] uint8, the layout read_images returns."""
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(0, 3, 1, 2)))


def test_svhn_reads_upright_rgb_and_keeps_the_files_split(spvae):
    train, val, test = read_images("svhn", str(spvae.root))
    assert train.dtype == torch.uint8 and train.shape == (12, 3, 32, 32)
    # Fewer than SVHN_N_VAL images in extra: all of them are the validation split.
    for ours, source in zip((train, val, test), spvae.svhn, strict=True):
        assert torch.equal(ours, chw(source))  # orientation and channel order
    x = scipy.io.loadmat(spvae.root / "svhn" / "test_32x32.mat")["X"]
    n, c, i, j = 5, 2, 3, 30
    assert test[n, c, i, j] == x[i, j, c, n]  # X[:, :, c, n] is image n's channel c, rows first
    data = load_data(cfg_for("svhn", spvae.root, center=False))
    assert torch.equal(data.train, chw(spvae.svhn[0]).float() / 255)  # the file's order
    assert torch.equal(data.val, chw(spvae.svhn[1]).float() / 255)
    assert data.x_shape == (3, 32, 32)


def test_svhn_validation_is_the_first_images_of_extra(spvae, monkeypatch):
    assert SVHN_N_VAL == 26032
    monkeypatch.setattr("training.datasets.SVHN_N_VAL", 4)
    train, val, test = read_images("svhn", str(spvae.root))
    assert torch.equal(val, chw(spvae.svhn[1][:4])) and val.is_contiguous()
    assert (train.shape[0], test.shape[0]) == (12, 7)


def test_cifar_reads_upright_rgb_and_splits_by_val_fraction(spvae):
    train, test = read_images("cifar10", str(spvae.root))
    assert torch.equal(train, chw(np.concatenate(spvae.cifar[0])))  # batches 1..5 in order
    assert torch.equal(test, chw(spvae.cifar[1])) and test.dtype == torch.uint8
    cfg = cfg_for("cifar10", spvae.root, val_fraction=0.2, center=False)
    data = load_data(cfg)
    assert tuple(s.shape[0] for s in (data.train, data.val, data.test)) == (24, 6, 8)
    key = lambda x: sorted(map(tuple, x.flatten(1).tolist()))  # noqa: E731
    assert key(torch.cat([data.train, data.val])) == key(train.float() / 255)  # disjoint, complete
    assert torch.equal(load_data(cfg).val, data.val)
    assert not torch.equal(load_data(replace(cfg, split_seed=1)).val, data.val)


@pytest.mark.parametrize(
    ("dataset", "folder"),
    [("svhn", "SVHN"), ("cifar10", "cifar10/cifar-10-batches-py")],
)
def test_other_folder_names_of_svhn_and_cifar_are_found(spvae, monkeypatch, dataset, folder):
    other = spvae.root.parent / "other-layout"
    (other / folder).parent.mkdir(parents=True)
    (spvae.root / DATASETS[dataset].folder).rename(other / folder)
    monkeypatch.setenv("VAE_DATA_ROOT", str(other))
    assert read_images(dataset)[0].shape[1:] == (3, 32, 32)


def test_missing_svhn_or_cifar_say_where_looked_and_how_to_get_them(isolated_cache):
    root = isolated_cache / "empty"
    with pytest.raises(DatasetError) as e:
        read_images("svhn", str(root))
    msg = str(e.value)
    assert "looked for train_32x32.mat, extra_32x32.mat, test_32x32.mat in svhn/ (or SVHN/)" in msg
    assert all(url in msg for url in DATASETS["svhn"].urls) and f"into {root / 'svhn'}/" in msg
    with pytest.raises(DatasetError) as e:
        read_images("cifar10", str(root))
    msg = str(e.value)
    assert "data_batch_1" in msg and str(root) in msg and "data/download=true" in msg
    assert f"Download {DATASETS['cifar10'].urls[0]} and extract it into {root}/" in msg


def file_mirror(isolated_cache, monkeypatch, files: dict[str, Path]) -> Path:
    """A data mirror on a file:// URL ($VAE_DATA_MIRROR) holding {<dataset>/<file>: source}."""
    mirror = isolated_cache / "mirror"
    for name, source in files.items():
        (mirror / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, mirror / name)
    formats.write_sha256sums(mirror)
    monkeypatch.setenv("VAE_DATA_MIRROR", mirror.as_uri())
    return mirror


def test_svhn_download_fetches_the_three_files(spvae, isolated_cache, monkeypatch):
    spec = DATASETS["svhn"]
    files = {f"svhn/{f}": spvae.root / "svhn" / f for f in spec.files}
    file_mirror(isolated_cache, monkeypatch, files)
    root = isolated_cache / "fresh"
    _, val, _ = read_images("svhn", str(root), download=True)
    assert torch.equal(val, chw(spvae.svhn[1]))
    fetched = sorted(p.name for p in (root / "svhn").iterdir())
    assert fetched == sorted([*spec.files, ".svhn.mirror.json"])  # the sizes it served


def test_cifar_download_extracts_the_archive_into_the_root(spvae, isolated_cache, monkeypatch):
    archive = isolated_cache / "archives" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    formats.tar_folder(archive, spvae.root / "cifar-10-batches-py")
    file_mirror(isolated_cache, monkeypatch, {f"cifar10/{archive.name}": archive})
    root = isolated_cache / "fresh"
    train, test = read_images("cifar10", str(root), download=True)
    assert torch.equal(test, chw(spvae.cifar[1])) and train.shape[0] == 30
    folder = root / "cifar-10-batches-py"  # torchvision's layout, the meta file kept
    assert {p.name for p in folder.iterdir()} == {*DATASETS["cifar10"].files, "batches.meta"}
    assert {p.name for p in root.iterdir()} == {archive.name, folder.name}  # no temp dir left


@pytest.mark.parametrize(
    ("folder", "member", "expected"),
    [
        ("cifar-10-batches-py", "../escaped.txt", r"not a safe, readable \.tar\.gz"),
        ("svhn", "readme.html", r"does not hold cifar-10-batches-py/\['data_batch_1'"),
    ],
)
def test_cifar_archive_unsafe_or_incomplete_is_refused(
    spvae, isolated_cache, monkeypatch, folder, member, expected
):
    archive = isolated_cache / "archives" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    formats.tar_folder(archive, spvae.root / folder, {member: b"x"})
    mirror = file_mirror(isolated_cache, monkeypatch, {f"cifar10/{archive.name}": archive})
    root = isolated_cache / "fresh"
    url = (mirror / "cifar10" / archive.name).as_uri()
    refused = rf"could not download {url}: .*{expected}.*nothing was kept"
    with pytest.raises(DatasetError, match=refused):
        read_images("cifar10", str(root), download=True)
    assert not (isolated_cache / "escaped.txt").exists()
    assert not root.exists()  # nothing extracted or kept, no temp dir


class _RunsCode:
    def __reduce__(self):
        return (print, ("a pickle that runs code",))


def _spvae_corrupt_cases(root: Path):
    """(dataset, file to break, how, expected message)."""
    svhn, cifar = root / "svhn", root / "cifar-10-batches-py"
    rng = np.random.default_rng(5)

    def save(path, obj):
        return lambda: path.write_bytes(pickle.dumps(obj, protocol=2))

    return [
        (
            "svhn",
            svhn / "train_32x32.mat",
            lambda: (svhn / "train_32x32.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated"),
            r"unreadable as a MATLAB \.mat file",
        ),
        (
            "svhn",
            svhn / "extra_32x32.mat",
            lambda: scipy.io.savemat(svhn / "extra_32x32.mat", {"X": np.zeros((32, 32, 3, 9))}),
            r"'X' is float64 \(32, 32, 3, 9\), expected uint8 \(32, 32, 3, N\)",
        ),
        (
            "svhn",
            svhn / "test_32x32.mat",
            lambda: scipy.io.savemat(
                svhn / "test_32x32.mat", {"X": np.zeros((32, 32, 7), np.uint8)}
            ),
            r"'X' is uint8 \(32, 32, 7\)",
        ),
        (
            "svhn",
            svhn / "test_32x32.mat",
            lambda: scipy.io.savemat(svhn / "test_32x32.mat", {"images": np.zeros((2, 2))}),
            r"no variable \['X'\]",
        ),
        (
            "cifar10",
            cifar / "data_batch_3",
            lambda: (cifar / "data_batch_3").write_bytes(b"\x80\x02}q\x00(X"),
            r"unreadable as a CIFAR-10 python pickle",
        ),
        (
            "cifar10",
            cifar / "data_batch_2",
            save(cifar / "data_batch_2", {"data": rng.integers(0, 255, (6, 1024), np.uint8)}),
            r"'data' is uint8 \(6, 1024\), expected uint8 \(N, 3072\)",
        ),
        (
            "cifar10",
            cifar / "test_batch",
            save(cifar / "test_batch", [1, 2]),
            r"expected a dict with a 'data' entry, found list",
        ),
        (
            "cifar10",
            cifar / "data_batch_5",
            save(cifar / "data_batch_5", {"data": _RunsCode()}),
            # __builtin__ in protocol 2; a process that ran ray.init has its print patched
            r"refers to [\w.]*print, not only numpy arrays",
        ),
    ]


@pytest.mark.parametrize("case", range(8))
def test_corrupt_svhn_or_cifar_files_name_the_file_and_the_fix(spvae, capsys, case):
    dataset, path, damage, expected = _spvae_corrupt_cases(spvae.root)[case]
    damage()
    with pytest.raises(DatasetError, match=expected) as e:
        read_images(dataset, str(spvae.root))
    msg = str(e.value)
    fix = {
        "svhn": f"delete it and download it again from http://ufldl.stanford.edu/housenumbers/"
        f"{path.name}",
        "cifar10": f"delete {path.parent}/ and extract it again from "
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    }[dataset]
    assert str(path) in msg and fix in msg
    assert "runs code" not in capsys.readouterr().out  # the refused pickle ran nothing
