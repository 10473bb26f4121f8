"""Datasets as on-device tensors: one tensor per split, batches are index slices.

Images are read once through the real loaders of their on-disk formats (torchvision's IDX parser
for MNIST-style files; Larochelle's ``.amat`` text and the authors' MATLAB ``.mat`` files for the
S-VAE datasets; Stanford's ``.mat`` files for SVHN and the python pickles for CIFAR-10, decoded in
training.images), split into train/validation/test by the dataset's rule, preprocessed (below),
turned into float32 [N, C, H, W] and moved to the device. Dynamic binarisation happens per training
batch on the device; validation and test images are binarised once with a fixed seed, so
evaluations see the same images. The optional logit transform (data/logit) works the same way:
fresh dequantisation noise per training batch, on the device; validation and test transformed once.

Where the files are looked up, under each data root in turn (``data/root``; else $VAE_DATA_ROOT,
then ``<cache>/data`` and the system dir /usr/share/datasets):

    fashion_mnist  FashionMNIST/raw/*-ubyte (torchvision) or fashion-mnist/*.gz (Debian package)
    mnist          MNIST/raw/*-ubyte (torchvision) or mnist/*.gz
    static_mnist   static_mnist/binarized_mnist_{train,valid,test}.amat
    omniglot       omniglot/chardata.mat
    caltech101     caltech101/caltech101_silhouettes_28_split1.mat
    frey_faces     frey_faces/frey_rawface.mat
    svhn           svhn/{train,test,extra}_32x32.mat (Stanford's files)
    cifar10        cifar-10-batches-py/{data_batch_1..5,test_batch} (torchvision's layout)

The folder names of the S-VAE authors' code (MNIST_static, OMNIGLOT, Caltech101Silhouettes,
Freyfaces) are accepted as well, and SVHN/ and cifar10/cifar-10-batches-py/.

``python -m training data --datasets NAME`` (training.fetch) fetches a dataset's files into a data
root, verified: each one is checked against the size and checksums published for it (their URLs
and sources: training.sources) and read by its reader before it is renamed into place; a mirror
(``--mirror URL`` or $VAE_DATA_MIRROR, with its own SHA256SUMS) serves clusters without internet.
``data/download=true`` does the same inside a trial, for a dataset found under none of the roots,
into the first root. The MNIST-format files go to <root>/mnist/ and <root>/fashion-mnist/ (the
flat .gz layout above); CIFAR-10's archive is kept in the root and unpacked next to it. A failed
download (no network, HTTP error, truncated, a checksum that differs) is a DatasetError naming the
URL and the cause, and leaves no file behind.

Splits and binarisation per dataset (docs/specs/hyperspherical.md, section 5;
docs/specs/spvae.md, section 3; docs/specs/hierarchical.md, section 4):

    fashion_mnist, mnist  seeded validation split of ``data/val_fraction`` of the training set
                          (or of ``data/val_size`` images, below); grey levels /255;
                          data/binarize: Bernoulli(x) per training batch, validation/test
                          binarised once with ``data/split_seed``.
    static_mnist          the files' split (50k/10k/10k); already binary: used as is, never
                          resampled, whatever data/binarize says.
    omniglot              the training images shuffled with ``data/split_seed``, the last
                          OMNIGLOT_N_VAL (1,345) are validation (or the last ``data/val_size``);
                          standard test set; grey levels in [0, 1]; data/binarize: dynamic for
                          training, validation then test binarised once as the authors do
                          (numpy's legacy stream, seed 777).
    caltech101            the file's split; already binary; loaded as 1 - data (object = 1).
    frey_faces            all 1,965 images shuffled with ``data/split_seed`` and cut 1,565/200/200
                          (FREY_SPLIT; the authors re-draw it every run); grey levels /255, shape
                          [1, 28, 20]; continuous (data/binarize would binarise it dynamically).
    svhn                  train file / the first SVHN_N_VAL (26,032) images of the extra file
                          (all of it if it holds fewer) / test file
                          (docs/specs/spvae.md#3-data-and-preprocessing); uint8 RGB [3, 32, 32];
                          only that start of the 1.3 GB extra file is kept.
    cifar10               seeded ``data/val_fraction`` split (the SPVAE cells: 0.2, 40k/10k) or
                          ``data/val_size`` images (the hierarchical VAEs: 5,000, 45k/5k);
                          uint8 RGB [3, 32, 32].

``data/val_size`` = n > 0 (fashion_mnist, mnist, omniglot, cifar10: VAL_SIZE_DATASETS) holds out
exactly n training images the way ``torch.utils.data.random_split(train, [N - n, n],
generator=torch.Generator().manual_seed(data/split_seed))`` does: perm = randperm(N), training =
perm[:N - n], validation = perm[N - n:]. With split_seed=123 that is the hierarchical-VAE authors'
split: MNIST 55,000/5,000 (n = 5,000), CIFAR-10 45,000/5,000 (5,000), OMNIGLOT N - 1,000/1,000
(1,000, replacing the last-1,345 rule). It replaces data/val_fraction; the datasets whose files
carry their own split (FILES_SPLIT) and Frey Faces refuse it.

``data/hflip`` (the hierarchical VAEs' CIFAR-10 augmentation, docs/specs/hierarchical.md#4-data):
each training image of a batch is mirrored left-right with probability 1/2, drawn per batch on the
device by Data.train_batch (torch's default generator there, like dynamic binarisation), before
binarisation, dequantisation or centring (a centred image is flipped about its uncentred levels);
validation and test images are never flipped.

The pipeline is one function, load_data, read top to bottom: read (training.files; the file
formats' decoders in training.datasets) -> split -> data/greyscale on the uint8 images -> grey
levels in [0, 1] -> data/minmax -> data/pixels -> data/train_fraction, data/spvae_train_subset
(those transforms in training.images) -> binarisation, centring (data/center) or the logit
transform -> the device.

The logit transform (data/logit, docs/specs/vlae.md#7-data-and-preprocessing; continuous grey
levels only): x' = (255 x + u) / 256, u ~ U(0, 1) -> x'' = lam + (1 - 2 lam) x'
(lam = data/logit_lambda) -> logit(x''), minus the per-pixel mean of the transformed training set
(this replaces data/center).
Data keeps the training grey levels (``train_levels``) and re-draws u for every training batch;
``train`` is one seeded draw of the transformed, centred training set (what the Gaussian head's
variance is initialised from), ``pixel_mean`` its mean before centring; validation and test are
transformed once. All three draws come from ``data/split_seed`` (training.images.split_generators:
one generator per split).

``data/val_fraction`` only applies to the datasets without a split rule of their own (the MNIST
files, CIFAR-10). Orientation of each file format: training.datasets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from training import datasets
from training.datasets import DATASETS, DatasetError, MnistLike
from training.errors import ConfigError
from training.images import (
    greyscale,
    logit_dequantise,
    random_hflip,
    scale_pixels,
    split_generators,
    train_rows,
)
from training.reader import read_images

__all__ = [
    "DATASETS",
    "Data",
    "DatasetError",
    "MnistLike",
    "channels",
    "image_shape",
    "load_data",
    "read_images",
]

OMNIGLOT_EVAL_BINARIZE_SEED = 777
"""The authors' numpy seed for the one-off binarisation of OMNIGLOT validation, then test."""
FILES_SPLIT = ("static_mnist", "caltech101", "svhn")
"""The datasets whose files carry their own train/validation/test split."""
VAL_SIZE_DATASETS = ("fashion_mnist", "mnist", "omniglot", "cifar10")
"""The datasets whose validation images are a seeded cut of the training file: data/val_size
applies (the rest are FILES_SPLIT and frey_faces, cut by FREY_SPLIT)."""
RGB_DATASETS = ("svhn", "cifar10")
"""The datasets whose images are RGB [N, 3, H, W]; every other one's have one channel
(tests/unit/test_data_papers.py checks this against the images read)."""


def channels(dataset: str) -> int:
    """Colour channels of a dataset's images as read (before data/greyscale): 3 or 1."""
    return 3 if dataset in RGB_DATASETS else 1


def image_shape(cfg) -> tuple[int, int, int]:
    """The [C, H, W] a DataConfig's images have after loading, without reading a file (so a
    model can be built before any training: sweeps.engine.preflight)."""
    side = (
        (32, 32)
        if cfg.dataset in RGB_DATASETS
        else (28, 20)
        if cfg.dataset == "frey_faces"
        else (28, 28)
    )
    return (1 if cfg.greyscale else channels(cfg.dataset), *side)


@dataclass
class Data:
    """Splits on the device, float32 [N, C, H, W]; ``pixel_mean`` was subtracted if centred."""

    train: Tensor
    """The training images as preprocessed: what the model is initialised from (with data/logit,
    one seeded draw of the transformed, centred set; batches are drawn afresh by train_batch)."""
    val: Tensor
    test: Tensor
    binarize: bool
    pixel_mean: Tensor | None = None
    """[1, C, H, W], subtracted from every split when the data is centred (plainly or after the
    logit transform); None otherwise."""
    train_levels: Tensor | None = None
    """data/logit only: the training images as grey levels in [0, 1], re-dequantised per batch."""
    logit_lambda: float | None = None
    """data/logit only: lam of the transform (training.images.logit_dequantise)."""
    hflip: bool = False
    """data/hflip: train_batch mirrors each training image left-right with probability 1/2."""

    def __post_init__(self):
        logit = (self.train_levels is not None, self.logit_lambda is not None)
        if any(logit) and not (all(logit) and self.pixel_mean is not None):
            raise ValueError("logit data needs train_levels, logit_lambda and pixel_mean together")

    @property
    def x_shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])

    def train_batch(self, idx: Tensor) -> Tensor:
        """Training batch by index, drawn on the device: with data/hflip, half the images
        mirrored (drawn first); then dynamically binarised when configured; with data/logit,
        freshly dequantised, logit-transformed and centred (torch's default generator of the
        device, so train/seed and a resumed checkpoint's RNG state govern every draw)."""
        if self.train_levels is not None:
            x = self.train_levels[idx]
            x = logit_dequantise(random_hflip(x) if self.hflip else x, self.logit_lambda)
            return x.sub_(self.pixel_mean)
        x = self.train[idx]
        if self.hflip:  # a centred image is mirrored about its levels: flip(x + mean) - mean
            x = random_hflip(x, self.pixel_mean)
        return torch.bernoulli(x) if self.binarize else x


def load_data(cfg, device: torch.device | str = "cpu", read=read_images) -> Data:
    """A dataset per its DataConfig, the whole pipeline top to bottom (module docstring):

    1. read the files (training.files, cached per process; decoders in training.datasets), or
       ``read(dataset, root, download)``, which returns the same (sweeps.engine.node_data: the
       node's copy); what it returns is never written to (to_unit copies, splits index)
    2. split by the dataset's rule (or data/validation=test)
    3. colour and scale: data/greyscale on uint8, grey levels in [0, 1], data/minmax and
       data/pixels (training.images); or the S-VAE authors' unscaled threshold
    4. the training rows: data/train_fraction, data/spvae_train_subset
    5. binarise the evaluation images once, or centre, or logit-dequantise every split
    6. onto the device
    """
    spec = DATASETS[cfg.dataset]
    images = read(cfg.dataset, cfg.root, cfg.download)  # 1
    g = torch.Generator().manual_seed(cfg.split_seed)
    raw = split(cfg.dataset, images, cfg, g)  # 2
    if cfg.greyscale:  # 3: on the uint8 levels, as PIL does; a no-op on one-channel images
        raw = tuple(greyscale(s) for s in raw)
    binarize_train = cfg.binarize and not spec.binary  # binary data are never resampled
    if cfg.binarize and cfg.svae_no_rescale_255:
        # The S-VAE loaders' defect
        # (docs/specs/hyperspherical.md#8-deviations-from-the-authors-code): x > U(0,1) on unscaled
        # 0..255 pixels, i.e. the fixed threshold x > 0 on every split, never resampled.
        train, val, test = ((s > 0).to(torch.float32) for s in raw)
        binarize_train = False
    else:
        train, val, test = scale_pixels(cfg, tuple(to_unit(s) for s in raw))
    train = train_rows(cfg, train)  # 4
    pixel_mean = None  # 5
    if binarize_train:
        val, test = binarise_evaluation(cfg.dataset, val, test, g)
    elif cfg.logit:
        return logit_data(cfg, train, val, test, device)
    elif not cfg.binarize and cfg.center:
        pixel_mean = train.mean(0, keepdim=True)
        train, val, test = train - pixel_mean, val - pixel_mean, test - pixel_mean
    move = lambda t: None if t is None else t.to(device)  # noqa: E731  (6)
    return Data(
        move(train), move(val), move(test), binarize_train, move(pixel_mean), hflip=cfg.hflip
    )


def split(dataset: str, images: tuple[Tensor, ...], cfg, g: torch.Generator):
    """(train, val, test) by the dataset's rule (module docstring); the generator is seeded.

    data/validation=test (the VLAE authors' protocol): no images are held out of a training set
    that the rule would split, and the test images serve as validation."""
    train, val, test = split_by_rule(dataset, images, cfg, g)
    if cfg.validation == "test":
        own_split = dataset in ("static_mnist", "caltech101", "svhn", "frey_faces")
        return (train if own_split else images[0]), test, test
    return train, val, test


def split_by_rule(dataset: str, images: tuple[Tensor, ...], cfg, g: torch.Generator):
    if dataset in FILES_SPLIT:
        return images
    if dataset == "frey_faces":
        (everything,) = images
        perm = torch.randperm(everything.shape[0], generator=g)
        n_train, n_val, _ = datasets.FREY_SPLIT
        parts = perm[:n_train], perm[n_train : n_train + n_val], perm[n_train + n_val :]
        return tuple(everything[p] for p in parts)
    train, test = images
    n = train.shape[0]
    if cfg.val_size >= n:
        raise ConfigError(
            f"data/val_size={cfg.val_size} must be smaller than the {n} training images of "
            f"{dataset} (at least one is left for training)"
        )
    perm = torch.randperm(n, generator=g)
    # random_split(train, [n - n_val, n_val], g)'s cut: the last n_val of the permutation
    # (OMNIGLOT's rule too: shuffled, the last 1,345 are validation, Burda et al.)
    n_val = cfg.val_size or (datasets.OMNIGLOT_N_VAL if dataset == "omniglot" else 0)
    if n_val:
        return train[perm[: n - n_val]], train[perm[n - n_val :]], test
    n_val = int(round(cfg.val_fraction * n))
    return train[perm[n_val:]], train[perm[:n_val]], test


def to_unit(images: Tensor) -> Tensor:
    """float32 in [0, 1]: uint8 grey levels / 255, bool as 0/1, floats as they are."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0)
    return images.to(torch.float32, copy=True)  # never the cached tensor itself


def binarise_evaluation(dataset: str, val: Tensor, test: Tensor, g: torch.Generator):
    """Validation and test images binarised once (docs/specs/hyperspherical.md#4-evaluation), so
    every evaluation sees the same images; training batches are binarised afresh by
    Data.train_batch."""
    if dataset == "omniglot":
        # The authors' one-off binarisation: numpy's legacy stream seeded 777, validation then
        # test (so the test images are the authors' own, whatever the shuffle).
        rs = np.random.RandomState(OMNIGLOT_EVAL_BINARIZE_SEED)
        return tuple(
            torch.from_numpy(rs.binomial(1, s.numpy()).astype(np.float32)) for s in (val, test)
        )
    return tuple(torch.bernoulli(s, generator=g) for s in (val, test))


def logit_data(cfg, levels: Tensor, val: Tensor, test: Tensor, device) -> Data:
    """data/logit: every split logit-dequantised once with its own generator from data/split_seed
    and centred by the transformed training mean; the training levels are kept for train_batch.
    Two training-set copies (levels and one transformed draw), each transformed in place."""
    lam = cfg.logit_lambda
    g_train, g_val, g_test = split_generators(cfg.split_seed, 3)
    train = logit_dequantise(levels, lam, g_train)
    pixel_mean = train.mean(0, keepdim=True)
    train.sub_(pixel_mean)
    val = logit_dequantise(val, lam, g_val).sub_(pixel_mean)
    test = logit_dequantise(test, lam, g_test).sub_(pixel_mean)
    return Data(
        train.to(device),
        val.to(device),
        test.to(device),
        binarize=False,
        pixel_mean=pixel_mean.to(device),
        train_levels=levels.to(device),
        logit_lambda=lam,
        hflip=cfg.hflip,
    )
