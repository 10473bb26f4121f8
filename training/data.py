"""Datasets as on-device tensors: one tensor per split, batches are index slices.

Images are read once through torchvision's own loaders (its IDX parser for MNIST-style files),
turned into float32 [N, C, H, W] in [0, 1], split into train/validation with a seeded permutation,
and moved to the device. Dynamic binarisation happens per training batch on the device;
validation and test images are binarised once with a fixed seed, so evaluations see the same images.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

SYSTEM_ROOTS = (Path("/usr/share/datasets"),)


class DatasetError(RuntimeError):
    """A dataset is missing or unreadable; the message says where we looked and how to fix it."""


@dataclass(frozen=True)
class MnistLike:
    """An MNIST-format dataset (IDX files) that torchvision reads."""

    torchvision_name: str  # torchvision class and folder name: root/<name>/raw/*-ubyte
    debian_dir: str  # folder of the Debian package under /usr/share/datasets, holding *.gz
    install_hint: str

    files = (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    )


DATASETS: dict[str, MnistLike] = {
    "fashion_mnist": MnistLike(
        "FashionMNIST", "fashion-mnist", "apt-get install dataset-fashion-mnist (Debian/Ubuntu)"
    ),
    "mnist": MnistLike("MNIST", "mnist", "torchvision download (set data/download=true)"),
}


def cache_dir() -> Path:
    return Path(os.environ.get("VAE_CACHE", Path.home() / ".cache" / "vae-sweeps"))


def candidate_roots(root: str) -> list[Path]:
    """Where to look: the given root, else $VAE_DATA_ROOT, the cache, the system dirs."""
    if root:
        return [Path(root).expanduser()]
    env = os.environ.get("VAE_DATA_ROOT")
    return ([Path(env)] if env else []) + [cache_dir() / "data", *SYSTEM_ROOTS]


def _torchvision_root(spec: MnistLike, roots: list[Path]) -> Path | None:
    """A root in torchvision's layout holding the dataset, unpacking a flat .gz layout if needed."""
    for r in roots:
        if all((r / spec.torchvision_name / "raw" / f).is_file() for f in spec.files):
            return r
        for flat in (r / spec.debian_dir, r):
            if all((flat / f"{f}.gz").is_file() for f in spec.files):
                return _unpack(spec, flat)
    return None


def _unpack(spec: MnistLike, flat: Path) -> Path:
    """Decompress a flat folder of *.gz files into torchvision's layout under the cache (atomic)."""
    key = hashlib.sha1(str(flat.resolve()).encode()).hexdigest()[:12]
    root = cache_dir() / "unpacked" / key
    raw = root / spec.torchvision_name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for f in spec.files:
        src, dst = flat / f"{f}.gz", raw / f
        if dst.is_file() and dst.stat().st_mtime >= src.stat().st_mtime:
            continue
        tmp = dst.with_suffix(f".tmp{os.getpid()}")
        try:
            with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout)
        except (OSError, EOFError) as e:
            tmp.unlink(missing_ok=True)
            raise DatasetError(f"{src} is corrupt ({e}); reinstall it or delete it") from None
        os.replace(tmp, dst)  # concurrent trials may race here: the rename is atomic
    return root


@functools.lru_cache(maxsize=4)
def read_images(dataset: str, root: str = "", download: bool = False) -> tuple[Tensor, Tensor]:
    """(train, test) uint8 images [N, C, H, W] through torchvision's loader; cached per process."""
    import torchvision  # imported here: it is slow to import and only needed once

    spec = DATASETS[dataset]
    roots = candidate_roots(root)
    tv_root = _torchvision_root(spec, roots)
    if tv_root is None and download and roots:
        tv_root = roots[0]
    if tv_root is None:
        raise DatasetError(
            f"dataset {dataset!r} not found: looked for {spec.torchvision_name}/raw/*-ubyte and "
            f"{spec.debian_dir}/*.gz under {[str(r) for r in roots]}. Get it with: "
            f"{spec.install_hint}, or point data/root (or $VAE_DATA_ROOT) at a folder holding it"
        )
    cls = getattr(torchvision.datasets, spec.torchvision_name)
    try:
        splits = [cls(str(tv_root), train=t, download=download).data for t in (True, False)]
    except Exception as e:  # torchvision raises bare errors on truncated or foreign files
        raise DatasetError(
            f"dataset {dataset!r} under {tv_root} is unreadable ({type(e).__name__}: {e}); "
            f"delete the files and reinstall them ({spec.install_hint})"
        ) from None
    return tuple(s.unsqueeze(1).contiguous() for s in splits)


@dataclass
class Data:
    """Splits on the device, float32 [N, C, H, W]; ``pixel_mean`` was subtracted if centred."""

    train: Tensor
    val: Tensor
    test: Tensor
    binarize: bool
    pixel_mean: Tensor | None = None

    @property
    def x_shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])

    def train_batch(self, idx: Tensor) -> Tensor:
        """Training batch by index; dynamically binarised on the device when configured."""
        x = self.train[idx]
        return torch.bernoulli(x) if self.binarize else x


def load_data(cfg, device: torch.device | str = "cpu") -> Data:
    """Load a dataset per its DataConfig: seeded validation split, binarisation or centring."""
    train_u8, test_u8 = read_images(cfg.dataset, cfg.root, cfg.download)
    g = torch.Generator().manual_seed(cfg.split_seed)
    perm = torch.randperm(train_u8.shape[0], generator=g)
    n_val = int(round(cfg.val_fraction * train_u8.shape[0]))
    to_float = lambda u8: u8.to(torch.float32).div_(255.0)  # noqa: E731
    train, val, test = (
        to_float(train_u8[perm[n_val:]]),
        to_float(train_u8[perm[:n_val]]),
        to_float(test_u8),
    )
    pixel_mean = None
    if cfg.binarize:  # fixed binarisation of the evaluation images (reference: switch 17)
        val, test = (torch.bernoulli(s, generator=g) for s in (val, test))
    elif cfg.center:
        pixel_mean = train.mean(0, keepdim=True)
        train, val, test = train - pixel_mean, val - pixel_mean, test - pixel_mean
    move = lambda t: t.to(device)  # noqa: E731
    return Data(
        move(train),
        move(val),
        move(test),
        cfg.binarize,
        None if pixel_mean is None else move(pixel_mean),
    )
