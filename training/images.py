"""The pixel transforms of the data pipeline: the SPVAE paper's preprocessing
(docs/specs/spvae.md#3-data-and-preprocessing) and the VLAE authors' logit transform
(docs/specs/vlae.md#7-data-and-preprocessing). Torch tensors [N, C, H, W] in, tensors out;
training.data.load_data applies them in this order, after the split and before binarisation or
centring (each a DataConfig key, all off by default):

    data/greyscale       uint8 RGB -> uint8 luma, bit for bit PIL's Image.convert("L")
    (grey levels / 255)
    data/minmax          per-image min-max scaling to [0, 1]
    data/pixels          "discrete": round(255 x) / 255 (Binomial(255) likelihood);
                         "perturbed": + N(0, 1/255^2) noise, reflected into [0, 1], min-max again
                         (Gaussian likelihood); noise drawn once per split, seeded
    data/train_fraction  the first rows of the training split (low-data experiment,
                         docs/specs/spvae.md#8-low-data-experiment)
    data/spvae_train_subset  at most the first SPVAE_SUBSET_ROWS of them
                         (docs/specs/spvae.md#4-training-protocol)

Then, instead of data/center's plain centring, the logit transform (data/logit):
logit_dequantise below, whose training-set mean training.data subtracts from every split;
training batches are re-dequantised on each draw.

Per training batch, on the device (training.data.Data.train_batch): data/hflip's random_hflip,
the hierarchical VAEs' CIFAR-10 augmentation (docs/specs/hierarchical.md#4-data), before
binarisation or dequantisation.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

PIXELS = ("continuous", "discrete", "perturbed")
"""data/pixels values: as read; on the 1/255 grid (Binomial); noise-perturbed (Gaussian)."""
SPVAE_SUBSET_ROWS = 16384 + 1000
"""Training rows the SPVAE authors' pipeline ever reads: one 128-batch epoch (16,384 images)
through a 1,000-element shuffle buffer, restarted from the array's start every epoch
(docs/specs/spvae.md#4-training-protocol)."""
LUMA = (19595, 38470, 7471)
"""ITU-R 601-2 luma weights (0.299, 0.587, 0.114) times 2^16, as in PIL's RGB -> L conversion."""


def greyscale(x: Tensor, chunk: int = 4096) -> Tensor:
    """uint8 RGB [N, 3, H, W] -> uint8 luma [N, 1, H, W], exactly PIL's ``Image.convert("L")``:
    L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16 (ITU-R 601-2). One-channel images are
    returned as they are. Chunked over images so the int32 temporaries stay small."""
    if x.shape[1] == 1:
        return x
    if x.dtype != torch.uint8 or x.shape[1] != 3:
        raise ValueError(f"greyscale needs uint8 RGB [N, 3, H, W], got {x.dtype} {tuple(x.shape)}")
    weights = torch.tensor(LUMA, dtype=torch.int32).view(1, 3, 1, 1)
    out = torch.empty((x.shape[0], 1, *x.shape[2:]), dtype=torch.uint8)
    for i in range(0, x.shape[0], chunk):
        weighted = (x[i : i + chunk].to(torch.int32) * weights).sum(1, keepdim=True)
        out[i : i + chunk] = (weighted + 0x8000) >> 16  # <= 255 * 2^16 + 2^15: fits int32
    return out


def minmax(x: Tensor) -> Tensor:
    """Per-image min-max scaling: (x - min) / (max - min) over all of an image's pixels, so each
    image spans [0, 1] exactly; a constant image becomes all zeros (not NaN)."""
    flat = x.flatten(1)
    shape = (-1,) + (1,) * (x.dim() - 1)
    lo = flat.amin(1).view(shape)
    span = flat.amax(1).view(shape) - lo
    return (x - lo) / torch.where(span > 0, span, torch.ones_like(span))


def discretise(x: Tensor) -> Tensor:
    """Pixels in [0, 1] onto the 256 levels n / 255 (the Binomial(255) likelihood's support)."""
    return torch.round(x * 255) / 255


def perturb(x: Tensor, g: torch.Generator) -> Tensor:
    """The SPVAE 'perturbed' pixels (docs/specs/spvae.md#3-data-and-preprocessing):
    x + N(0, (1/255)^2) noise, values below 0 reflected to -x and above 1 to 2 - x, then per-image
    min-max scaling again."""
    x = x + torch.randn(x.shape, generator=g) / 255
    x = torch.where(x < 0, -x, x)
    x = torch.where(x > 1, 2 - x, x)
    return minmax(x)


def split_generators(seed: int, n: int) -> list[torch.Generator]:
    """n independent torch generators from one seed (numpy SeedSequence spawning): one per split,
    so each split's noise depends only on the seed and that split, never on the others' sizes."""
    states = (s.generate_state(1)[0] for s in np.random.SeedSequence(seed).spawn(n))
    return [torch.Generator().manual_seed(int(state)) for state in states]


def scale_pixels(cfg, splits: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """data/minmax then data/pixels on float splits in [0, 1] (train, val, test).

    The perturbation noise is drawn once per split from ``data/split_seed`` (the authors perturb
    once and save the arrays), so validation and test images are the same in every run.
    """
    if cfg.minmax:
        splits = tuple(minmax(s) for s in splits)
    if cfg.pixels == "discrete" and not cfg.spvae_svhn_skip_discretise:
        splits = tuple(discretise(s) for s in splits)
    elif cfg.pixels == "perturbed":
        generators = split_generators(cfg.split_seed, len(splits))
        splits = tuple(perturb(s, g) for s, g in zip(splits, generators, strict=True))
    return splits


def logit_dequantise(
    x: Tensor, lam: float, generator: torch.Generator | None = None, noise: Tensor | None = None
) -> Tensor:
    """The VLAE authors' "Gaussian + logit" pixels (docs/specs/vlae.md#7-data-and-preprocessing;
    their datasets.py): x' = (255 x + u) / 256 with u ~ U(0, 1) per pixel (uniform dequantisation of
    the 1/255 grid), x'' = lam + (1 - 2 lam) x', then logit(x'') = log(x'' / (1 - x'')).

    x: grey levels in [0, 1], any shape, on any device; the noise is drawn there from
    ``generator`` (a generator of that device; None = torch's default one), or taken from
    ``noise`` (values in [0, 1), x's shape) when given. For x in [0, 1] the result lies in
    [logit(lam), logit(1 - lam)] = [-logit(1 - lam), logit(1 - lam)]. x is left unchanged; the
    result is the only full-size allocation (the rest is in place: CIFAR-10's training set is
    600 MB per copy).
    """
    if noise is None:
        y = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    else:
        y = noise.to(dtype=x.dtype, device=x.device, copy=True)
    y.add_(x, alpha=255.0).div_(256.0)  # x' in [0, 1)
    y.mul_(1.0 - 2.0 * lam).add_(lam)  # x'' in [lam, 1 - lam)
    return y.logit_(eps=lam)  # eps clamps to [lam, 1 - lam]: only float rounding can reach it


def train_rows(cfg, train: Tensor) -> Tensor:
    """The first round(data/train_fraction * N) training rows (at least one; the take_frac of
    docs/specs/spvae.md#8-low-data-experiment), then at most SPVAE_SUBSET_ROWS of them with
    data/spvae_train_subset (docs/specs/spvae.md#4-training-protocol)."""
    n = max(1, round(cfg.train_fraction * train.shape[0]))
    if cfg.spvae_train_subset:
        n = min(n, SPVAE_SUBSET_ROWS)
    return train[:n].clone() if n < train.shape[0] else train  # clone: free the rest


def random_hflip(x: Tensor, mean: Tensor | None = None) -> Tensor:
    """Each image of a batch [B, C, H, W] mirrored left-right with probability 1/2 (one draw per
    image from torch's default generator of x's device, as torchvision's RandomHorizontalFlip
    draws one per image). Centred images (x - mean) are mirrored about their levels,
    flip(x + mean) - mean, so a flipped image is centred by the same mean; the others are
    returned bit for bit. x is left unchanged."""
    flip = (torch.rand(x.shape[0], device=x.device) < 0.5).view(-1, *(1,) * (x.dim() - 1))
    mirrored = x.flip(-1) if mean is None else (x + mean).flip(-1).sub_(mean)
    return torch.where(flip, mirrored, x)
