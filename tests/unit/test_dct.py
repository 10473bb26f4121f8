"""The DCT context: the transform is scipy's DCT-II and inverts exactly, the quantiser gives
exactly the 2^b bin centres, and the context of a constant image is that image."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import torch

from models.hierarchical.dct import DCTContext, dct2, idct2, quantise


@pytest.mark.parametrize("norm", ["backward", "ortho"])
def test_dct2_is_scipys_dct_ii_and_its_inverse_round_trips(norm):
    x = torch.rand(3, 2, 28, 20, dtype=torch.float64)
    y = dct2(x, norm)
    expected = scipy.fft.dctn(x.numpy(), type=2, axes=(-2, -1), norm=None if norm ==
                              "backward" else "ortho")  # fmt: skip
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(idct2(y, norm), x, rtol=1e-10, atol=1e-10)


def test_the_quantiser_yields_exactly_the_bin_centres():
    u = torch.linspace(-1, 1, 10_001, dtype=torch.float64)
    for bits in (2, 5):
        centres = (torch.arange(2**bits, dtype=torch.float64) + 0.5) * 2 / 2**bits - 1
        for dither in (None, torch.empty_like(u).uniform_(-0.25, 0.25)):
            q = quantise(u, bits, dither)
            assert set(q.tolist()) <= set(centres.tolist())
            assert set(q.tolist()) == set(centres.tolist())  # every bin is reached
            assert (q - u).abs().max() <= (1 + 0.5) / 2**bits + 1e-12  # half a bin + dither


@pytest.mark.parametrize(("norm", "bits"), [("backward", None), ("ortho", None), ("backward", 5)])
def test_the_context_of_a_constant_image_is_that_image(norm, bits):
    train = torch.rand(64, 1, 28, 28, dtype=torch.float64)
    ctx = DCTContext((1, 28, 28), k=7, norm=norm, bits=bits).double().eval()
    ctx.initialise(train)
    x = torch.full((2, 1, 28, 28), 0.3, dtype=torch.float64)
    image = ctx.to_image(ctx(x))
    tolerance = 1e-9 if bits is None else 2 * float(ctx.scale[0, 0, 0]) / 2**bits / 28
    torch.testing.assert_close(image, torch.full_like(x, 2 * 0.3 - 1), atol=tolerance, rtol=0)


def test_the_scale_is_the_training_sets_largest_floored_coefficient():
    train = torch.rand(32, 3, 8, 8, dtype=torch.float64)
    ctx = DCTContext((3, 8, 8), k=3).double()
    ctx.initialise(train)
    full = scipy.fft.dctn(train.numpy(), type=2, axes=(-2, -1))
    expected = np.abs(np.floor(full)).max(0)[:, :3, :3]
    np.testing.assert_array_equal(ctx.scale.numpy(), np.where(expected > 0, expected, 1))
    u = ctx(train)
    assert u.shape == (32, 3, 3, 3) and u.abs().max() <= 1


def test_dither_only_in_training_mode():
    ctx = DCTContext((1, 8, 8), k=4, bits=2)
    ctx.initialise(torch.rand(16, 1, 8, 8))
    x = torch.rand(256, 1, 8, 8)
    ctx.eval()
    assert torch.equal(ctx(x), ctx(x))
    ctx.train()
    torch.manual_seed(0)
    assert not torch.equal(ctx(x), ctx(x))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"k": 9}, r"k must be in \[1, 8\]"), ({"k": 0}, r"k must be in"),
    ({"k": 4, "bits": 0}, r"bits must be in \[1, 16\]"), ({"k": 4, "norm": "x"}, "norm must be"),
])  # fmt: skip
def test_bad_context_settings_name_the_setting(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DCTContext((1, 8, 8), **kwargs)
