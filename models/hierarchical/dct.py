"""The DCT context of DCT-VAE and DVP-VAE (docs/specs/hierarchical.md#31-dct-context).

The context u of an image x in [0, 1] is its top-left k x k block of 2-D DCT-II coefficients per
channel, each divided by a per-coefficient scale from the training set and clamped to [-1, 1];
DCT-VAE also quantises it to b bits. Back in image space (zero-padded, inverse DCT, clamped to
[0, 1], mapped to [-1, 1]) it is a low-pass picture of x that the decoder is conditioned on.

    DCT-VAE   unnormalised DCT-II (scipy's norm=None: a factor 2 per axis), b-bit quantisation
    DVP-VAE   orthonormal DCT-II (norm="ortho"), no quantisation

The scale s of each coefficient is max over the training images of |floor(DCT)| (computed on the
full transform, then cropped), set by ``initialise`` from the training set as every model's
data-dependent initialisation is. A coefficient whose scale would be 0 (|DCT| < 1 on every
training image) gets scale 1, so it is kept as it is rather than divided by zero.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

NORMS = ("backward", "ortho")
"""DCT-II scalings: "backward" = scipy's norm=None (DCT-VAE), "ortho" = orthonormal (DVP-VAE)."""
MAX_TRAINING_IMAGES = 50_000
"""The scale is computed from at most this many training images (the DVP-VAE authors' rule)."""


def check_ctx_size(k: int, x_shape: tuple[int, ...]) -> None:
    """ValueError naming model/ctx_size when the k x k context does not fit the image."""
    _, height, width = x_shape
    if not 1 <= k <= min(height, width):
        raise ValueError(f"ctx_size {k}: the DCT context cannot be larger than the {height}x"
                         f"{width} image; use 1 ... {min(height, width)} (MNIST 7)")  # fmt: skip


def dct_matrix(n: int, norm: str = "backward", dtype=torch.float64) -> Tensor:
    """The n x n DCT-II matrix D, y = D x along one axis: D[k, i] = 2 cos(pi k (2 i + 1) / 2n);
    with norm="ortho", scaled so that D is orthogonal (row 0 by sqrt(1/4n), the rest by
    sqrt(1/2n))."""
    if norm not in NORMS:
        raise ValueError(f"DCT norm must be one of {list(NORMS)}, got {norm!r}")
    k = torch.arange(n, dtype=dtype).unsqueeze(1)
    i = torch.arange(n, dtype=dtype).unsqueeze(0)
    d = 2 * torch.cos(math.pi * k * (2 * i + 1) / (2 * n))
    if norm == "ortho":
        d[0] *= math.sqrt(1 / (4 * n))
        d[1:] *= math.sqrt(1 / (2 * n))
    return d


def dct2(x: Tensor, norm: str = "backward") -> Tensor:
    """2-D DCT-II over the last two dims of x [..., H, W] (scipy.fft.dctn(x, axes=(-2, -1)))."""
    rows = dct_matrix(x.shape[-2], norm).to(x)
    cols = dct_matrix(x.shape[-1], norm).to(x)
    return rows @ x @ cols.T


def idct2(y: Tensor, norm: str = "backward") -> Tensor:
    """The inverse of dct2: x = D_H^-1 y D_W^-T."""
    rows = torch.linalg.inv(dct_matrix(y.shape[-2], norm)).to(y)
    cols = torch.linalg.inv(dct_matrix(y.shape[-1], norm)).to(y)
    return rows @ y @ cols.T


def quantise(u: Tensor, bits: int, dither: Tensor | None = None) -> Tensor:
    """u in [-1, 1] onto the 2^b bin centres of DCT-VAE: v = (u + 1) / 2, bin floor(v 2^b + d)
    (d the dither, U(-1/4, 1/4) per value when given), its centre (bin + 1/2) / 2^b, back to
    2 v - 1. The bin is clamped to [0, 2^b - 1], so u = 1 lands in the last bin."""
    levels = 2**bits
    v = (u + 1) / 2 * levels
    if dither is not None:
        v = v + dither
    index = torch.floor(v).clamp_(0, levels - 1)
    return 2 * (index + 0.5) / levels - 1


class DCTContext(nn.Module):
    """x [B, C, H, W] in [0, 1] -> u [B, C, k, k] in [-1, 1]; ``to_image`` maps u back.

    With ``bits`` set, u is quantised; in training mode with the authors' dither of +-1/4 bin
    (``dither=True``), in evaluation mode without, so a test image has one context.
    """

    def __init__(
        self, x_shape: tuple[int, ...], k: int, norm: str = "backward",
        bits: int | None = None, dither: bool = True,
    ):  # fmt: skip
        super().__init__()
        channels, height, width = x_shape
        if not 1 <= k <= min(height, width):
            raise ValueError(f"DCT context size k must be in [1, {min(height, width)}] for "
                             f"{height}x{width} images, got {k}")  # fmt: skip
        if bits is not None and not 1 <= bits <= 16:
            raise ValueError(f"DCT context bits must be in [1, 16] (or None), got {bits}")
        if norm not in NORMS:
            raise ValueError(f"DCT norm must be one of {list(NORMS)}, got {norm!r}")
        self.x_shape, self.k, self.norm, self.bits, self.dither = x_shape, k, norm, bits, dither
        self.register_buffer("scale", torch.ones(channels, k, k))

    @torch.no_grad()
    def initialise(self, x_train: Tensor) -> None:
        """scale = max over (at most 50k) training images of |floor(DCT)|, cropped to k x k."""
        full = dct2(x_train[:MAX_TRAINING_IMAGES].double(), self.norm)
        scale = full.floor().abs().amax(0)[:, : self.k, : self.k]
        self.scale.copy_(torch.where(scale > 0, scale, torch.ones_like(scale)).to(self.scale))

    def forward(self, x: Tensor) -> Tensor:
        coeffs = dct2(x, self.norm)[..., : self.k, : self.k]
        u = (coeffs / self.scale).clamp(-1, 1)
        if self.bits is None:
            return u
        noise = None
        if self.training and self.dither:
            noise = torch.empty_like(u).uniform_(-0.25, 0.25)
        return quantise(u, self.bits, noise)

    def to_image(self, u: Tensor) -> Tensor:
        """u -> the context image in [-1, 1]: rescaled, zero-padded to H x W, inverse DCT,
        clamped to [0, 1], mapped to [-1, 1]."""
        _, height, width = self.x_shape
        full = u.new_zeros(*u.shape[:-2], height, width)
        full[..., : self.k, : self.k] = u * self.scale
        return idct2(full, self.norm).clamp(0, 1) * 2 - 1
