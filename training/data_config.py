"""The data section of a run's config: ``DataConfig``, the data/ keys (which dataset, its
validation split and its preprocessing), each checked on its own and against the others.
``training.config.Config`` holds it and checks it against the model's likelihood.
"""

from __future__ import annotations

from dataclasses import dataclass

from training.data import DATASETS, VAL_SIZE_DATASETS, MnistLike
from training.errors import ConfigError
from training.images import PIXELS

LOGIT_LAMBDA_MIN = 1e-6
"""Smallest data/logit_lambda: the authors' first commits' value; float32 handles it."""


VALIDATION = ("split", "test")
"""data/validation: the project's held-out validation split, or the authors' test-set rule."""


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "fashion_mnist"
    """Dataset name: one of training.data.DATASETS."""
    root: str = ""
    """Directory holding the dataset files; empty = $VAE_DATA_ROOT, then the system locations."""
    binarize: bool = False
    """Dynamic binarisation: each training pixel resampled as Bernoulli(intensity) per batch."""
    hflip: bool = False
    """Random horizontal flip of each training image with probability 1/2, drawn per training
    batch on the device (the hierarchical VAEs' CIFAR-10 augmentation,
    docs/specs/hierarchical.md#4-data); flipped first, then binarised, dequantised (data/logit) or
    centred. Validation and test images are never flipped."""
    center: bool = True
    """Continuous data only: subtract the per-pixel training mean (VLAE preprocessing). Ignored
    with data/logit, which always subtracts the mean of the transformed training set."""
    val_fraction: float = 0.1
    """Fraction of the training set held out (seeded) for validation and model selection; only
    for datasets without a split rule of their own (mnist, fashion_mnist, cifar10: see
    training.data; the SPVAE cells take 0.2 of CIFAR-10, 10k). Ignored when data/val_size > 0."""
    val_size: int = 0
    """0: the split above (data/val_fraction, or the dataset's own rule). n > 0: exactly n
    validation images, cut as torch.utils.data.random_split(train, [N - n, n],
    generator=torch.Generator().manual_seed(data/split_seed)) cuts them; with split_seed=123 the
    hierarchical-VAE authors' split (docs/specs/hierarchical.md#4-data): MNIST 55k/5k and CIFAR-10
    45k/5k (5000), OMNIGLOT N - 1k/1k (1000, instead of its last-1,345 rule). Only for
    training.data.VAL_SIZE_DATASETS (fashion_mnist, mnist, omniglot, cifar10); must be below the
    training-set size (checked when the data is loaded)."""
    split_seed: int = 0
    """Seed of the validation split, of the fixed binarisation of validation/test images
    (OMNIGLOT's evaluation images: the authors' seed 777) and of the data/pixels=perturbed noise."""
    download: bool = False
    """Download missing files into ``root`` (needs network): torchvision's, or the authors' URLs."""
    svae_no_rescale_255: bool = False
    """S-VAE authors' defect (docs/specs/hyperspherical.md#8-deviations-from-the-authors-code):
    their MNIST loaders skip the /255, so x > U(0,1) is the fixed threshold x > 0 on every split.
    Needs data/binarize=true; mnist, fashion_mnist."""
    greyscale: bool = False
    """RGB -> one channel by ITU-R 601-2 luma on the uint8 levels, exactly PIL's convert("L"):
    L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16 (SPVAE: SVHN, CIFAR-10). A no-op on
    one-channel datasets."""
    minmax: bool = False
    """Per-image min-max scaling to [0, 1]: (x - min) / (max - min) over the image's pixels; a
    constant image becomes zeros (SPVAE preprocessing, all datasets)."""
    pixels: str = "continuous"
    """'continuous' (as read), 'discrete' (round(255 x) / 255, after min-max: the Binomial(255)
    likelihood) or 'perturbed' (+ N(0, 1/255^2) noise drawn once per split from data/split_seed,
    reflected into [0, 1], then min-max again: the Gaussian likelihood). Not with data/binarize
    or data/center."""
    spvae_svhn_skip_discretise: bool = False
    """SPVAE authors' SVHN script (docs/specs/spvae.md#3-data-and-preprocessing): no rounding after
    min-max, so 'discrete' SVHN values are off the 1/255 grid. Only with data/dataset=svhn and
    data/pixels=discrete."""
    train_fraction: float = 1.0
    """Keep the first round(train_fraction * N) rows (at least one) of the training split, after
    the seeded split and the preprocessing (SPVAE low-data experiment's take_frac,
    docs/specs/spvae.md#8-low-data-experiment)."""
    spvae_train_subset: bool = False
    """SPVAE authors' pipeline quirk (docs/specs/spvae.md#4-training-protocol): their iterator
    restarts at the array's start every 128-batch epoch behind a 1,000-image shuffle buffer, so
    training only ever sees the first 16,384 + 1,000 rows. True keeps the first 17,384
    (training.images.SPVAE_SUBSET_ROWS) training rows, after data/train_fraction; False (default)
    trains on the whole split."""

    validation: str = "split"
    """Which images select the model and stop training early: 'split' (the project's protocol: a
    held-out part of the training data, or the dataset's own validation file; the test set is
    never looked at before the winner is chosen) or 'test' (the VLAE authors' protocol: train on
    the whole training split and validate on the test set, as their code does)."""

    logit: bool = False
    """The VLAE authors' optional "Gaussian + logit" pixels
    (docs/specs/vlae.md#7-data-and-preprocessing; their README says the paper did not use it):
    x' = (255 x + u) / 256 with fresh u ~ U(0, 1) noise for every training batch,
    x'' = lam + (1 - 2 lam) x', logit(x''), minus the per-pixel mean of the equally transformed
    training set. It replaces data/center's plain centring (data/center's value does not matter
    then); validation and test are transformed once, with noise drawn from data/split_seed.
    Continuous grey levels only: not with data/binarize or data/pixels other than 'continuous'."""
    logit_lambda: float = 0.05
    """lam of data/logit, in [LOGIT_LAMBDA_MIN, 0.5): the authors' HEAD uses 0.05 everywhere,
    their first commits 1e-6 (docs/specs/vlae.md#7-data-and-preprocessing). Not below 1e-6: float32
    resolves 1 - lam ever more coarsely, and below ~6e-8 rounds it to 1, where the brightest pixels'
    logit is infinite."""

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise ConfigError(
                f"data/dataset: unknown dataset {self.dataset!r}; known: {sorted(DATASETS)}"
            )
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"data/val_fraction must be in (0, 1), got {self.val_fraction}")
        self._check_val_size()
        if not 0.0 < self.train_fraction <= 1.0:
            raise ConfigError(
                f"data/train_fraction must be in (0, 1] (the share of training rows kept), got "
                f"{self.train_fraction}"
            )
        if self.validation not in VALIDATION:
            raise ConfigError(
                f"data/validation must be one of {list(VALIDATION)}, got {self.validation!r}"
            )
        self._check_logit()
        self._check_pixels()
        if self.svae_no_rescale_255 and not (
            self.binarize and isinstance(DATASETS[self.dataset], MnistLike)
        ):
            raise ConfigError(
                "data/svae_no_rescale_255 (threshold x > 0 of unscaled 0..255 pixels) needs "
                "data/binarize=true and an MNIST-format dataset (mnist, fashion_mnist), got "
                f"binarize={self.binarize}, dataset={self.dataset!r}"
            )

    def _check_val_size(self) -> None:
        """data/val_size: >= 0, on a dataset cut from one training file, with a held-out split."""
        if self.val_size < 0:
            raise ConfigError(
                f"data/val_size must be >= 0 (0 = data/val_fraction or the dataset's rule), got "
                f"{self.val_size}"
            )
        if self.val_size and self.dataset not in VAL_SIZE_DATASETS:
            raise ConfigError(
                f"data/val_size: {self.dataset} has its own validation split (its files', or Frey "
                f"Faces' fixed sizes); only {list(VAL_SIZE_DATASETS)} accept data/val_size > 0: "
                "set data/val_size=0"
            )
        if self.val_size and self.validation == "test":
            raise ConfigError(
                "data/val_size holds training images out for validation, data/validation=test "
                "validates on the test set instead: set data/val_size=0 or data/validation=split"
            )

    def _check_pixels(self) -> None:
        """data/pixels: a known mode, on [0, 1] data that is neither binarised nor centred."""
        if self.pixels not in PIXELS:
            raise ConfigError(f"data/pixels must be one of {list(PIXELS)}, got {self.pixels!r}")
        if self.pixels != "continuous" and self.binarize:
            raise ConfigError(
                f"data/pixels={self.pixels} needs grey levels, not binarised data: set "
                "data/binarize=false (or data/pixels=continuous)"
            )
        if self.pixels != "continuous" and self.center:
            raise ConfigError(
                f"data/pixels={self.pixels} models pixels in [0, 1], not centred ones: set "
                "data/center=false"
            )
        if self.spvae_svhn_skip_discretise and (self.dataset, self.pixels) != ("svhn", "discrete"):
            raise ConfigError(
                "data/spvae_svhn_skip_discretise (the SPVAE SVHN script's missing rounding) needs "
                f"data/dataset=svhn and data/pixels=discrete, got dataset={self.dataset!r}, "
                f"pixels={self.pixels!r}"
            )

    def _check_logit(self) -> None:
        """data/logit_lambda in range; data/logit only on continuous grey levels."""
        if not LOGIT_LAMBDA_MIN <= self.logit_lambda < 0.5:
            raise ConfigError(
                f"data/logit_lambda must be in [{LOGIT_LAMBDA_MIN:g}, 0.5) (x'' = lam + (1 - 2 lam)"
                f" x' must stay inside (0, 1) in float32), got {self.logit_lambda}; the authors "
                "use 0.05"
            )
        if self.logit and self.binarize:
            raise ConfigError(
                "data/logit transforms continuous grey levels, not binarised data: set "
                "data/binarize=false (or data/logit=false)"
            )
        if self.logit and self.pixels != "continuous":
            raise ConfigError(
                f"data/logit needs data/pixels=continuous (the logit transform dequantises grey "
                f"levels itself), got data/pixels={self.pixels}: set data/pixels=continuous "
                "(or data/logit=false)"
            )
