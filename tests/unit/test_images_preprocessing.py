"""The pixel preprocessing through the real loader: the SPVAE's (greyscale, min-max,
discrete/perturbed pixels, training rows) on the SVHN and CIFAR-10 files of test_images.py, and the
VLAE authors' optional logit transform with uniform dequantisation."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from tests import formats
from tests.unit import test_images
from tests.unit.test_images import cfg_for, chw
from training.config import Config, DataConfig
from training.data import load_data
from training.images import (
    SPVAE_SUBSET_ROWS,
    greyscale,
    logit_dequantise,
    minmax,
    perturb,
    split_generators,
    train_rows,
)

spvae = test_images.spvae  # the fixture: tiny SVHN and CIFAR-10 files, and their source images


def pil_luma(rgb: np.ndarray) -> torch.Tensor:
    """PIL's Image.convert("L") of each upright [H, W, 3] image -> uint8 [N, 1, H, W]."""
    grey = [np.asarray(Image.fromarray(im, "RGB").convert("L")) for im in rgb]
    return torch.from_numpy(np.stack(grey))[:, None]


def per_image(x: torch.Tensor, op: str) -> torch.Tensor:
    return getattr(x.flatten(1), op)(1)


def splits(data) -> tuple[torch.Tensor, ...]:
    return data.train, data.val, data.test


# ---- SPVAE preprocessing: greyscale, min-max, discrete/perturbed pixels, training rows ----


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
