"""The diffusion priors' UNet: the DCT-VAE authors' sizes
(docs/specs/hierarchical.md#8-parameter-counts), their
zero-initialised outputs, and a clear error for a width GroupNorm(16) cannot split."""

from __future__ import annotations

import pytest
import torch

from models.hierarchical.unet import UNet


@pytest.mark.parametrize(
    ("kwargs", "size", "expected"),
    [  # MNIST/OMNIGLOT (k = 7, 2 bits: mean and log-variance of 1 channel); CIFAR-10 (k = 6, RGB)
        (dict(in_channels=1, out_channels=2, channels=32, blocks=3, mult=(1,), heads=2), 7, 0.24e6),
        (dict(in_channels=3, out_channels=6, channels=64, blocks=3, mult=(1, 1), heads=2), 6,
         1.79e6),
    ],
)  # fmt: skip
def test_the_authors_configurations_have_their_parameter_counts(kwargs, size, expected):
    net = UNet(**kwargs, dropout=0.1)
    count = sum(p.numel() for p in net.parameters())
    assert count == pytest.approx(expected, rel=0.01)
    x, t = torch.randn(5, kwargs["in_channels"], size, size), torch.randint(0, 40, (5,))
    out = net(x, t)
    assert out.shape == (5, kwargs["out_channels"], size, size)
    assert torch.equal(out, torch.zeros_like(out))  # zero-initialised output convolution
    out.sum().backward()  # and still every parameter that matters gets a gradient path
    assert net.out[2].weight.grad is not None and net.out[2].weight.grad.abs().sum() > 0


def test_a_width_groupnorm_cannot_split_is_named():
    with pytest.raises(ValueError, match="multiples of 16, got 24"):
        UNet(1, 2, channels=24, blocks=1)
