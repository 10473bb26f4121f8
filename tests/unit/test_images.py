"""SVHN (Stanford's .mat files) and CIFAR-10 (python pickles) through the real loaders, on small
files in the real formats; the SPVAE preprocessing (greyscale, min-max, discrete/perturbed pixels,
training rows); the VLAE authors' optional logit transform with uniform dequantisation."""

from __future__ import annotations

import math
import pickle
import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from tests import formats
from training.config import Config, DataConfig
from training.data import load_data, read_images
from training.datasets import (
    DATASETS,
    SVHN_N_VAL,
    DatasetError,
)
from training.images import (
    SPVAE_SUBSET_ROWS,
    greyscale,
    logit_dequantise,
    minmax,
    perturb,
    split_generators,
    train_rows,
)


def cfg_for(dataset: str, root: Path, **kw) -> DataConfig:
    return DataConfig(dataset=dataset, root=str(root), **kw)


# ---- SPVAE datasets: SVHN (Stanford's .mat files), CIFAR-10 (python pickles), preprocessing ----


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


def pil_luma(rgb: np.ndarray) -> torch.Tensor:
    """PIL's Image.convert("L") of each upright [H, W, 3] image -> uint8 [N, 1, H, W]."""
    grey = [np.asarray(Image.fromarray(im, "RGB").convert("L")) for im in rgb]
    return torch.from_numpy(np.stack(grey))[:, None]


def per_image(x: torch.Tensor, op: str) -> torch.Tensor:
    return getattr(x.flatten(1), op)(1)


def splits(data) -> tuple[torch.Tensor, ...]:
    return data.train, data.val, data.test


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


def test_greyscale_is_pil_convert_l_bit_for_bit(spvae):
    rng = np.random.default_rng(6)
    rgb = formats.random_rgb(rng, 7, 9, 11)
    rgb[0], rgb[1] = 0, 255  # the extremes
    rgb[2, ..., 0], rgb[2, ..., 1:] = 255, 0  # pure red
    assert torch.equal(greyscale(chw(rgb), chunk=3), pil_luma(rgb))  # over chunk boundaries
    one = chw(rgb)[:, :1]
    assert greyscale(one) is one  # one channel: a no-op
    data = load_data(cfg_for("svhn", spvae.root, greyscale=True, center=False))
    assert data.x_shape == (1, 32, 32)
    assert torch.equal(data.test, pil_luma(spvae.svhn[2]).float() / 255)


def test_greyscale_is_a_no_op_on_one_channel_data(tiny_data_root):
    plain = load_data(DataConfig(dataset="mnist", root=str(tiny_data_root), center=False))
    grey = load_data(
        DataConfig(dataset="mnist", root=str(tiny_data_root), center=False, greyscale=True)
    )
    assert torch.equal(plain.train, grey.train) and grey.x_shape == (1, 28, 28)


def test_minmax_scales_each_image_to_0_1_and_a_constant_image_to_zeros(spvae):
    x = torch.stack([torch.full((1, 4, 4), 0.3), torch.linspace(0.2, 0.6, 16).view(1, 4, 4)])
    out = minmax(x)
    assert torch.equal(out[0], torch.zeros(1, 4, 4))  # constant: zeros, not NaN
    assert torch.allclose(out[1], (x[1] - 0.2) / 0.4) and (out[1].min(), out[1].max()) == (0, 1)
    data = load_data(cfg_for("cifar10", spvae.root, minmax=True, center=False, greyscale=True))
    for split in splits(data):
        assert (per_image(split, "amin") == 0).all() and (per_image(split, "amax") == 1).all()
    raw = load_data(cfg_for("cifar10", spvae.root, center=False, greyscale=True))
    assert torch.allclose(data.test, minmax(raw.test)) and not torch.equal(data.test, raw.test)


def on_grid(x: torch.Tensor) -> bool:
    return bool(((x * 255 - torch.round(x * 255)).abs() < 1e-4).all())


def test_discrete_pixels_lie_on_the_1_255_grid_unless_the_svhn_quirk(spvae):
    base = cfg_for("svhn", spvae.root, greyscale=True, minmax=True, center=False)
    scaled = load_data(base)
    assert not on_grid(scaled.test)  # min-max scaling leaves the grid...
    data = load_data(replace(base, pixels="discrete"))
    for split in splits(data):
        assert on_grid(split) and split.min() == 0 and split.max() == 1  # ...rounding returns
    assert (data.test - scaled.test).abs().max() <= 0.5 / 255 + 1e-6
    quirk = load_data(replace(base, pixels="discrete", spvae_svhn_skip_discretise=True))
    assert torch.equal(quirk.test, scaled.test)  # the authors' SVHN script: no rounding


def test_perturbed_pixels_are_fixed_per_split_seed_in_0_1_and_min_maxed(spvae):
    base = cfg_for("cifar10", spvae.root, greyscale=True, minmax=True, center=False)
    scaled = load_data(base)
    cfg = replace(base, pixels="perturbed")
    data = load_data(cfg)
    for split in splits(data):
        assert (per_image(split, "amin") == 0).all() and (per_image(split, "amax") == 1).all()
    noise = (data.test - scaled.test).abs().mean()
    assert 0.3 / 255 < noise < 2 / 255  # E|N(0, 1/255^2)| = 0.8 / 255
    again = load_data(cfg)  # drawn once per split from the seed: the same images every run
    assert all(map(torch.equal, splits(again), splits(data)))
    other = load_data(replace(cfg, split_seed=1))
    assert not torch.equal(other.test, data.test)
    # Each split's noise depends on the seed only, not on the other splits' sizes.
    assert torch.equal(load_data(replace(cfg, val_fraction=0.5)).test, data.test)


def test_perturb_reflects_at_0_and_1_then_min_maxes():
    x = torch.cat([torch.zeros(1, 1, 4, 8), torch.ones(1, 1, 4, 8)], dim=2)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(3)) / 255
    y = x + noise
    reflected = torch.where(x == 0, noise.abs(), 1 - noise.abs())  # -y below 0, 2 - y above 1
    assert not torch.equal(reflected, y.clamp(0, 1))  # reflection is not clipping
    expected = (reflected - reflected.min()) / (reflected.max() - reflected.min())
    assert torch.allclose(perturb(x, torch.Generator().manual_seed(3)), expected, atol=1e-6)


def test_train_fraction_keeps_the_first_rows_after_the_preprocessing(spvae):
    cfg = cfg_for("cifar10", spvae.root, pixels="perturbed", center=False, val_fraction=0.2)
    full = load_data(cfg)
    part = load_data(replace(cfg, train_fraction=0.25))
    assert torch.equal(part.train, full.train[:6])  # round(0.25 * 24); the same noise
    assert torch.equal(part.val, full.val) and torch.equal(part.test, full.test)
    assert load_data(replace(cfg, train_fraction=0.001)).train.shape[0] == 1  # at least one


def test_spvae_train_subset_keeps_the_first_17384_rows(spvae, monkeypatch):
    assert SPVAE_SUBSET_ROWS == 16384 + 1000 == 17384
    rows = torch.arange(20000.0).view(-1, 1, 1, 1)
    subset = train_rows(DataConfig(spvae_train_subset=True), rows)
    assert torch.equal(subset, rows[:17384])
    assert train_rows(DataConfig(), rows) is rows  # off by default
    half = DataConfig(spvae_train_subset=True, train_fraction=0.5)
    assert train_rows(half, rows).shape[0] == 10000  # train_fraction first, then the cap
    cfg = cfg_for("cifar10", spvae.root, center=False, spvae_train_subset=True)
    full = load_data(replace(cfg, spvae_train_subset=False))
    monkeypatch.setattr("training.images.SPVAE_SUBSET_ROWS", 5)
    data = load_data(cfg)
    assert torch.equal(data.train, full.train[:5]) and torch.equal(data.val, full.val)


def test_an_spvae_cell_config_loads_svhn_for_the_binomial_likelihood(spvae):
    cfg = Config.from_dict(
        {
            "family": "spvae",
            "model/likelihood": "binomial",
            "model/cell_size": 8,
            "data/dataset": "svhn",
            "data/root": str(spvae.root),
            "data/greyscale": True,
            "data/minmax": True,
            "data/pixels": "discrete",
            "data/center": False,
        }
    )
    data = load_data(cfg.data)
    assert data.x_shape == (1, 32, 32) and on_grid(data.train) and data.pixel_mean is None


# ---- data/logit: the VLAE authors' "Gaussian + logit" pixels
# (docs/specs/vlae.md#7-data-and-preprocessing)


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_logit_dequantise_is_the_authors_formula_on_a_few_pixels():
    x = torch.tensor([0.0, 128 / 255, 1.0, 37 / 255])
    u = torch.tensor([0.25, 0.5, 0.75, 0.0])
    lam = 0.05
    # x' = (255 x + u) / 256 -> x'' = lam + (1 - 2 lam) x' -> log(x'' / (1 - x'')), by hand:
    by_hand = [logit(0.05 + 0.9 * (255 * xi + ui) / 256) for xi, ui in zip(x, u, strict=True)]
    assert by_hand[0] == pytest.approx(logit(0.05 + 0.9 * 0.25 / 256))
    out = logit_dequantise(x, lam, noise=u)
    assert out.tolist() == pytest.approx(by_hand, abs=1e-5)
    assert out[1] == pytest.approx(logit(0.05 + 0.9 * 128.5 / 256), abs=1e-5)
    assert x.tolist() == pytest.approx([0.0, 128 / 255, 1.0, 37 / 255])  # input untouched
    # With a generator, u is its next U(0, 1) draw, one per pixel.
    drawn = torch.rand(4, generator=torch.Generator().manual_seed(5))
    seeded = logit_dequantise(x, lam, torch.Generator().manual_seed(5))
    assert torch.allclose(seeded, logit_dequantise(x, lam, noise=drawn))
    assert not torch.allclose(seeded, out)


@pytest.mark.parametrize("lam", [0.05, 1e-6])
def test_logit_dequantised_pixels_are_finite_and_within_logit_lam(lam):
    levels = torch.arange(256.0).div(255).repeat(40)  # every grey level, 40 noise draws each
    y = logit_dequantise(levels, lam, torch.Generator().manual_seed(0))
    bound = logit(1 - lam)  # = -logit(lam)
    assert torch.isfinite(y).all() and y.abs().max() <= bound + 1e-4
    # The extremes: black with u = 0 is logit(lam); white with u -> 1 tends to logit(1 - lam).
    ends = logit_dequantise(torch.tensor([0.0, 1.0]), lam, noise=torch.tensor([0.0, 1 - 2**-24]))
    assert ends[0] == pytest.approx(-bound, rel=1e-5) and ends[1] == pytest.approx(bound, rel=2e-3)
    # Dequantisation: each level's values stay inside its own 1/256-wide bin, ordered by level.
    per_level = y.view(40, 256)
    assert (per_level.amax(0)[:-1] <= per_level.amin(0)[1:]).all()


def logit_cfg(root, **kw) -> DataConfig:
    return DataConfig(dataset="fashion_mnist", root=str(root), logit=True, **kw)


def test_logit_training_batches_get_fresh_noise_evaluation_images_are_fixed(tiny_data_root):
    cfg = logit_cfg(tiny_data_root)
    data = load_data(cfg)
    idx = torch.arange(64)
    first, second = data.train_batch(idx), data.train_batch(idx)
    assert first.shape == (64, 1, 28, 28) and not torch.equal(first, second)  # fresh u per draw
    # Both are the images idx, dequantised: between the transforms with u = 0 and u -> 1.
    levels = data.train_levels[idx]
    lo, hi = (
        logit_dequantise(levels, cfg.logit_lambda, noise=torch.full_like(levels, u))
        - data.pixel_mean
        for u in (0.0, 1 - 2**-24)
    )
    for batch in (first, second):
        assert (batch >= lo - 1e-5).all() and (batch <= hi + 1e-5).all()
    again = load_data(cfg)  # evaluation noise drawn once from data/split_seed: same images
    assert all(map(torch.equal, splits(again), splits(data)))
    other = load_data(replace(cfg, split_seed=1))
    assert not torch.equal(other.test, data.test)  # the same test images, other noise:
    bin_width = 0.9 / 256 / (0.05 * 0.95)  # widest 1/256 bin in logit space: at logit(lam)
    uncentred = (s.test + s.pixel_mean for s in (other, data))
    assert torch.allclose(*uncentred, atol=bin_width + 1e-5)


def test_logit_splits_are_centred_by_the_transformed_training_mean(tiny_data_root):
    cfg = logit_cfg(tiny_data_root, center=False)  # data/center does not matter with data/logit
    data = load_data(cfg)
    assert all(map(torch.equal, splits(load_data(replace(cfg, center=True))), splits(data)))
    plain = load_data(DataConfig(dataset="fashion_mnist", root=str(tiny_data_root), center=False))
    assert torch.equal(data.train_levels, plain.train)  # the grey levels in [0, 1]
    assert data.logit_lambda == 0.05 and not data.binarize and data.x_shape == (1, 28, 28)
    g_train, g_val, g_test = split_generators(cfg.split_seed, 3)
    transformed = logit_dequantise(plain.train, 0.05, g_train)
    assert torch.allclose(data.pixel_mean, transformed.mean(0, keepdim=True), atol=1e-6)
    assert data.train.mean(0).abs().max() < 1e-5  # centred by its own (transformed) mean
    assert torch.allclose(data.train, transformed - data.pixel_mean, atol=1e-6)
    for ours, levels, g in ((data.val, plain.val, g_val), (data.test, plain.test, g_test)):
        assert torch.allclose(ours, logit_dequantise(levels, 0.05, g) - data.pixel_mean, atol=1e-6)
    # Not the mean of the grey levels: the logit mean is far from it on this dark data.
    assert (data.pixel_mean - plain.train.mean(0, keepdim=True)).abs().max() > 1
    # Fresh training batches are centred too (up to the noise), and within the transform's range.
    batch = data.train_batch(torch.arange(data.train.shape[0]))
    assert batch.mean(0).abs().max() < 0.05
    bound = 2 * logit(1 - 0.05)
    assert all(s.isfinite().all() and s.abs().max() <= bound for s in (*splits(data), batch))


def test_logit_lambda_is_the_configured_one(tiny_data_root):
    data = load_data(logit_cfg(tiny_data_root, logit_lambda=1e-6))
    assert data.logit_lambda == 1e-6
    raw = data.train + data.pixel_mean
    assert raw.min() == pytest.approx(logit(1e-6), rel=1e-3)  # black pixels reach logit(lam)
    assert raw.max() <= logit(1 - 1e-6) + 1e-4
