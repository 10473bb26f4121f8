"""SVHN and CIFAR-10 files, and the SPVAE paper's pixel preprocessing (reference spvae.md, 3).

Decoders of the two on-disk formats into uint8 RGB images [N, 3, 32, 32]; they raise ValueError
with the problem, which training.data turns into a DatasetError naming the file and the fix
(training.data also finds, downloads and caches the files):

    SVHN      {train,test,extra}_32x32.mat (Stanford, MATLAB v5): 'X' uint8 (32, 32, 3, N) with
              X[i, j, c, n] = row i, column j, channel c of image n; 'y' the labels (unused).
    CIFAR-10  cifar-10-batches-py/{data_batch_1..5,test_batch}: Python pickles of a dict whose
              'data' is uint8 [N, 3072], each row 1,024 red, then green, then blue values, each
              plane a row-major 32 x 32 image; 'labels' (unused). Unpickled with an allow-list
              (numpy arrays only): a pickle can otherwise run arbitrary code.

The preprocessing, in training.data.load_data's order, after the split and before binarisation
or centring (each a DataConfig key, all off by default):

    data/greyscale       uint8 RGB -> uint8 luma, bit for bit PIL's Image.convert("L")
    (grey levels / 255)
    data/minmax          per-image min-max scaling to [0, 1]
    data/pixels          "discrete": round(255 x) / 255 (Binomial(255) likelihood);
                         "perturbed": + N(0, 1/255^2) noise, reflected into [0, 1], min-max again
                         (Gaussian likelihood); noise drawn once per split, seeded
    data/train_fraction  the first rows of the training split (low-data experiment, spec 8)
    data/spvae_train_subset  at most the first SPVAE_SUBSET_ROWS of them (spec 4)

Then, instead of data/center's plain centring, the VLAE authors' optional logit transform
(data/logit; reference vlae.md, 7): logit_dequantise below, whose training-set mean
training.data subtracts from every split; training batches are re-dequantised on each draw.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

PIXELS = ("continuous", "discrete", "perturbed")
"""data/pixels values: as read; on the 1/255 grid (Binomial); noise-perturbed (Gaussian)."""
SPVAE_SUBSET_ROWS = 16384 + 1000
"""Training rows the SPVAE authors' pipeline ever reads: one 128-batch epoch (16,384 images)
through a 1,000-element shuffle buffer, restarted from the array's start every epoch (spec 4)."""
LUMA = (19595, 38470, 7471)
"""ITU-R 601-2 luma weights (0.299, 0.587, 0.114) times 2^16, as in PIL's RGB -> L conversion."""
CIFAR_SIDE = 32


# ---- file decoders: numpy in, numpy out, ValueError on anything unexpected ----


def svhn_images(x: np.ndarray, limit: int | None = None) -> np.ndarray:
    """A Stanford SVHN 'X' variable (32, 32, 3, N) -> uint8 [min(N, limit), 3, 32, 32].

    Only the first ``limit`` images are copied (the validation split is the start of the 1.3 GB
    extra file), so the caller can drop the full array right away.
    """
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise ValueError(f"variable 'X' is {x.dtype} {x.shape}, expected uint8 (32, 32, 3, N)")
    return np.ascontiguousarray(x[..., :limit].transpose(3, 2, 0, 1))


class _ArraysOnly(pickle.Unpickler):
    """Unpickles dicts, lists, text and numpy arrays; refuses every other global (code)."""

    allowed = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),  # the real files (numpy 1 era)
        ("numpy._core.multiarray", "_reconstruct"),  # numpy >= 2
        ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.allowed:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, not only numpy arrays")
        return super().find_class(module, name)


def cifar_batch(path: Path) -> np.ndarray:
    """A CIFAR-10 python batch file -> uint8 [N, 3, 32, 32] (planes R, G, B; rows first)."""
    try:
        batch = _ArraysOnly(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except Exception as e:  # pickle raises assorted errors on truncated or foreign files
        raise ValueError(
            f"unreadable as a CIFAR-10 python pickle ({type(e).__name__}: {e})"
        ) from None
    if not isinstance(batch, dict) or "data" not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(f"expected a dict with a 'data' entry, found {keys}")
    data = batch["data"]
    pixels = 3 * CIFAR_SIDE * CIFAR_SIDE
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape[1:] != (pixels,):
        found = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data)
        raise ValueError(f"'data' is {found}, expected uint8 (N, {pixels})")
    return np.ascontiguousarray(data).reshape(-1, 3, CIFAR_SIDE, CIFAR_SIDE)


# ---- preprocessing: torch tensors [N, C, H, W] ----


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
    """The SPVAE 'perturbed' pixels (spec 3): x + N(0, (1/255)^2) noise, values below 0 reflected
    to -x and above 1 to 2 - x, then per-image min-max scaling again."""
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
    """The VLAE authors' "Gaussian + logit" pixels (reference vlae.md, 7; their datasets.py):
    x' = (255 x + u) / 256 with u ~ U(0, 1) per pixel (uniform dequantisation of the 1/255 grid),
    x'' = lam + (1 - 2 lam) x', then logit(x'') = log(x'' / (1 - x'')).

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
    """The first round(data/train_fraction * N) training rows (at least one; spec 8's take_frac),
    then at most SPVAE_SUBSET_ROWS of them with data/spvae_train_subset (spec 4)."""
    n = max(1, round(cfg.train_fraction * train.shape[0]))
    if cfg.spvae_train_subset:
        n = min(n, SPVAE_SUBSET_ROWS)
    return train[:n].clone() if n < train.shape[0] else train  # clone: free the rest
