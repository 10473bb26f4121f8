"""SPVAE (Tan & Peharz, ICML 2019): a sum-product network whose leaves are small VAEs on patches.

Reference: docs/specs/spvae.md, sections 1.1-1.7. The region graph and SPN are in
``models/spvae/spn.py``.

    "spvae"      MLP leaf VAEs (docs/specs/spvae.md#14-mlp-leaf-vaes)
    "convspvae"  conv-dense leaf VAEs (docs/specs/spvae.md#17-convolutional-leaves), all leaves
                 in grouped convolutions
    "spvae_vae"      baseline (docs/specs/spvae.md#21-vae): one MLP leaf VAE on the whole
                     image, no SPN
    "spvae_convvae"  baseline (docs/specs/spvae.md#22-convvae): one conv leaf VAE (filters
                     32,64, stride 2), no SPN

Baselines. The paper trains VAE and ConvVAE with the same K = 5 IWAE bound as the SP models
(docs/specs/spvae.md, sections 2, 4), so they follow the same contract: ``forward`` returns
Terms(log_px_z = the K-sample estimate log p^(x), kl = 0), and ``log_likelihood(x, k)`` streams k
samples in chunks. They are the leaf classes with a single leaf whose patch is the whole image.

Leaves. The image (C x H x W) is cut into a grid of ``cell_size x cell_size`` cells; every cell
holds ``leaf_k`` independent leaf VAEs on its patch (C * cell_size^2 values), each with its own
encoder and decoder. All leaves have the same shapes, so their parameters are stacked and evaluated
together with batched matmuls (``torch.baddbmm`` over a leading group dim; no loop over leaves):
    encoder  mu = MLP_mu(x_s),  lambda = 1 + MLP_lambda(x_s)^2   (two separate MLPs, precision)
             z = mu + eps / sqrt(lambda),  eps ~ N(0, I);  prior N(0, I)
    decoder  gaussian:  m = sigmoid(MLP_m(z)), tau = 1 + MLP_tau(z)^2   (two separate MLPs)
             binomial:  p = sigmoid(MLP_p(z)),  x = n / 255,  n ~ Binomial(255, p)
             bernoulli: p = sigmoid(MLP_p(z))
MLP blocks: softplus hidden layers, linear output, zero biases, weights initialised as the
authors' code does (tf.contrib variance_scaling_initializer defaults: factor 2, fan-in, truncated
normal with stddev sqrt(2.6 / fan_in) cut at 2 stddevs; see models/spvae/leaves.py); sum logits
N(0, 1); no weight regulariser (none reaches the authors' loss either).

Objective and the model contract. Leaf j returns the K-sample importance-weighted estimate
    log p^_j(x_s) = logsumexp_k [log p(x_s|z_k) + log p(z_k) - log q(z_k|x_s)] - log K,
independent samples per leaf; the SPN combines them bottom-up into log P^(x)
(docs/specs/spvae.md#16-objective-and-estimator). The SPN's value does not split into a
reconstruction and a KL term, so ``forward`` returns
    Terms(log_px_z = log P^(x) with K = ``samples``,  kl = 0),
and the trainer's loss -(log_px_z - beta * kl).mean() is exactly the paper's loss -mean log P^(x)
whatever beta is (no KL warm-up exists in the paper). ``log_likelihood(x, k)`` is the same estimator
with k samples per leaf (k = 5000 in the paper's evaluation), streamed over chunks of samples inside
each leaf, then combined through the SPN once.

Expectations. E[P^] = P, so E[log P^] <= log P (Jensen). At k = 1 every leaf value is a one-sample
ELBO estimate; log SPN(exp v) is convex in the leaf log-values v (a logsumexp of functions linear in
v, one per induced tree), so E[log P^_1] >= log SPN(exp(leaf ELBOs)), with equality when the SPN
has a single induced tree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from models.base import DEFAULT_MAX_ROWS, Terms
from models.fields import check_choice, check_positive_int, parse_int_list
from models.spvae.leaves import SPVAE_LIKELIHOODS, ConvLeaves, MLPLeaves
from models.spvae.spn import SPN, RegionGraph

# --- Config -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _LeafFields:
    """Fields of every SPVAE-paper model: the leaves' likelihood and the training estimator."""

    unit_interval_data: ClassVar[bool] = True
    """The decoders' means are sigmoids: data must stay in [0, 1] (training.config checks that
    data/center is off)."""

    likelihood: str = "gaussian"
    """p(x|z): 'gaussian' (mean and precision networks; noise-perturbed pixels in [0, 1]),
    'binomial' (Binomial(255) on discrete pixels x = n/255) or 'bernoulli' (binarised data)."""
    samples: int = 5
    """Importance samples (per leaf) in the training objective (K = 5 in the paper)."""

    def __post_init__(self):
        check_choice("likelihood", self.likelihood, SPVAE_LIKELIHOODS, "p(x|z) of the leaves")
        check_positive_int("samples", self.samples, "importance samples per leaf")
        check_positive_int("latent_dim", self.latent_dim, "latent size nz")


@dataclass(frozen=True)
class _SPNFields(_LeafFields):
    """Fields of the two SP models: the cell grid and the SPN's sizes."""

    cell_size: int = 7
    """Side of the square cells (leaf patches) in pixels; must divide the image's height and width
    (MNIST 28 -> 7, a 4x4 grid; SVHN/CIFAR 32 -> 8)."""
    sum_k: int = 2
    """Sum nodes per internal non-root region (``sumK``; the root has one)."""
    leaf_k: int = 2
    """Leaf VAEs per cell (``leafK``)."""

    def __post_init__(self):
        super().__post_init__()
        check_positive_int("cell_size", self.cell_size, "leaf patch side in pixels")
        check_positive_int("sum_k", self.sum_k, "sum nodes per region")
        check_positive_int("leaf_k", self.leaf_k, "leaf VAEs per cell")


class _MLPFields:
    """``hidden_dims`` as a tuple; the default's text is the example in error messages."""

    def _widths(self) -> tuple[int, ...]:
        return parse_int_list("hidden_dims", self.hidden_dims, type(self).hidden_dims)

    @property
    def hidden_widths(self) -> tuple[int, ...]:
        return self._widths()


class _ConvFields:
    """``filters`` as a tuple, and the odd kernel that 'same' padding needs."""

    def _check_conv(self) -> None:
        check_positive_int("n_dense", self.n_dense, "dense layer width")
        parse_int_list("filters", self.filters, type(self).filters)
        check_positive_int("kernel_size", self.kernel_size, "convolution kernel side")
        if self.kernel_size % 2 == 0:
            raise ValueError(
                f"kernel_size must be odd for 'same' padding, got {self.kernel_size}; "
                "set kernel_size=3"
            )

    @property
    def filter_counts(self) -> tuple[int, ...]:
        return parse_int_list("filters", self.filters, type(self).filters)


@dataclass(frozen=True)
class SPVAEConfig(_MLPFields, _SPNFields):
    latent_dim: int = 25
    """Size of each leaf VAE's z (``nz``; the paper's selected configs: 25)."""
    hidden_dims: str = "30,30"
    """Hidden softplus layer widths of every leaf MLP block (``nnodes``), comma-separated; encoder
    and decoder use the same (as in all of the paper's experiments)."""

    def __post_init__(self):
        super().__post_init__()
        self._widths()


@dataclass(frozen=True)
class ConvSPVAEConfig(_ConvFields, _SPNFields):
    latent_dim: int = 25
    """Size of each leaf VAE's z (``nz``; the paper's selected configs: 25)."""
    n_dense: int = 64
    """Width of the dense layer between the convolutions and the latent (``n_dense``; grid 8, 32,
    64)."""
    filters: str = "4,8"
    """Filters of the encoder's 3x3 stride-1 'same' convolutions, comma-separated (paper: 4,8);
    the decoder's transposed convolutions use them reversed."""
    kernel_size: int = 3
    """Side of every (transposed) convolution kernel; odd, for 'same' padding (paper: 3)."""

    def __post_init__(self):
        super().__post_init__()
        self._check_conv()

    @property
    def stride(self) -> int:
        """Convolution stride: 1 for the leaves (docs/specs/spvae.md#17-convolutional-leaves), not
        configurable."""
        return 1


@dataclass(frozen=True)
class VAEBaselineConfig(_MLPFields, _LeafFields):
    """The paper's MLP VAE baseline (docs/specs/spvae.md#21-vae); defaults: its MNIST pick
    (300,300), nz 200."""

    latent_dim: int = 200
    """Size of z (``nz``; grid 1, 2, 5, 25, 50, 100, 150, 200; MNIST pick: 200)."""
    hidden_dims: str = "300,300"
    """Hidden softplus layer widths of each of the mean / precision MLPs (``nnodes``),
    comma-separated; encoder and decoder use the same (grid: 30,30 100,100 300,300 600,600)."""

    def __post_init__(self):
        super().__post_init__()
        self._widths()


@dataclass(frozen=True)
class ConvVAEBaselineConfig(_ConvFields, _LeafFields):
    """The paper's ConvVAE baseline (docs/specs/spvae.md#22-convvae); defaults: its MNIST pick
    n_dense 64, nz 200."""

    latent_dim: int = 200
    """Size of z (``nz``; grid 1, 2, 5, 25, 50, 100, 150, 200; MNIST pick: 200)."""
    n_dense: int = 64
    """Width of the dense layer between the convolutions and the latent (grid 32, 64, 128)."""
    filters: str = "32,64"
    """Filters of the encoder's 'same' convolutions, comma-separated (paper: 32,64); the decoder's
    transposed convolutions use them reversed."""
    kernel_size: int = 3
    """Side of every (transposed) convolution kernel; odd, for 'same' padding (paper: 3)."""
    stride: int = 2
    """Stride of every (transposed) convolution (paper: 2; 28 -> 14 -> 7 on MNIST)."""

    def __post_init__(self):
        super().__post_init__()
        self._check_conv()
        check_positive_int("stride", self.stride, "convolution stride")


# --- The model --------------------------------------------------------------------------------


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _image_shape(x_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(x_shape) == 2:
        return (1, *x_shape)
    if len(x_shape) == 3:
        return tuple(x_shape)
    raise ValueError(
        f"SPVAE needs image data shaped (C, H, W) or (H, W), got x_shape {tuple(x_shape)}"
    )


class _LeafEstimator(nn.Module):
    """Shared by SPVAE and the baselines: every leaf's K-sample estimate from ``self.patches``."""

    leaves: MLPLeaves

    def patches(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def initialise(self, x_train: Tensor) -> None:
        """No data-dependent initialisation (none: docs/specs/spvae.md#14-mlp-leaf-vaes)."""

    def leaf_log_values(self, x: Tensor, k: int, max_rows: int | None = None) -> Tensor:
        """Every leaf's k-sample importance-weighted log-estimate, [B, V]; streamed over chunks of
        samples when ``max_rows`` is given (the chunk keeps [V, chunk, B, widest] tensors at about
        max_rows x 784 numbers, as a VAE's decoder output on 784-pixel images)."""
        if k < 1:
            raise ValueError(f"k must be >= 1 importance samples, got {k}")
        xs = self.patches(x)
        mu, lam = self.leaves.posterior(xs)
        if max_rows is None:
            chunk = k
        else:
            per_sample = x.shape[0] * self.leaves.n_leaves * self.leaves.widest
            chunk = max(1, (max_rows * 784) // per_sample)
        total, done = None, 0
        while done < k:
            c = min(chunk, k - done)
            lse = torch.logsumexp(self.leaves.log_weights(xs, mu, lam, c), dim=1)
            total = lse if total is None else torch.logaddexp(total, lse)
            done += c
        return (total - math.log(k)).T


class SPVAE(_LeafEstimator):
    """SPN over the cells of the image with ``leaf_k`` leaf VAEs per cell (module docstring)."""

    Config = SPVAEConfig
    Leaves = MLPLeaves

    def __init__(self, cfg: SPVAEConfig, x_shape: tuple[int, ...]):
        super().__init__()
        self.cfg, self.x_shape = cfg, tuple(x_shape)
        channels, height, width = _image_shape(self.x_shape)
        c = cfg.cell_size
        if c > height or c > width:
            raise ValueError(
                f"cell_size {c} makes a leaf patch larger than the {height}x{width} image; "
                f"choose a cell_size that divides both (e.g. {math.gcd(height, width)} or less)"
            )
        if height % c or width % c:
            raise ValueError(
                f"cell_size {c} does not divide the {height}x{width} image; choose a divisor of "
                f"both sides (their common divisors: {_divisors(math.gcd(height, width))})"
            )
        self.channels, self.grid = channels, (height // c, width // c)
        self.graph = RegionGraph(*self.grid)
        self.spn = SPN(self.graph, cfg.sum_k, cfg.leaf_k)
        self.leaves = self.Leaves(self.spn.n_leaves, channels * c * c, cfg)

    # patches <-> images
    def patches(self, x: Tensor) -> Tensor:
        """x [B, *x_shape] -> every leaf's input [V, B, D]; leaves i*leaf_k.. see cell i's patch."""
        c, (rows, cols) = self.cfg.cell_size, self.grid
        img = x.reshape(x.shape[0], self.channels, rows, c, cols, c)
        cells = img.permute(2, 4, 0, 1, 3, 5).reshape(rows * cols, x.shape[0], -1)
        return cells.repeat_interleave(self.cfg.leaf_k, dim=0)

    def image(self, cells: Tensor) -> Tensor:
        """cells [n_cells, n, D] -> images [n, *x_shape]."""
        c, (rows, cols) = self.cfg.cell_size, self.grid
        n = cells.shape[1]
        img = cells.reshape(rows, cols, n, self.channels, c, c).permute(2, 3, 0, 4, 1, 5)
        return img.reshape(n, *self.x_shape)

    def forward(self, x: Tensor) -> Terms:
        """Terms(log_px_z = log P^(x) with ``samples`` per leaf, kl = 0): see the module docs."""
        log_p = self.spn(self.leaf_log_values(x, self.cfg.samples))
        return Terms(log_px_z=log_p, kl=torch.zeros_like(log_p))

    @torch.no_grad()
    def log_likelihood(self, x: Tensor, k: int, max_rows: int = DEFAULT_MAX_ROWS) -> Tensor:
        """log P^(x) with k importance samples per leaf, combined through the SPN
        (docs/specs/spvae.md#5-evaluation), [B]."""
        return self.spn(self.leaf_log_values(x, k, max_rows))

    @torch.no_grad()
    def sample(self, n: int, mean: bool = False) -> Tensor:
        """n images: an induced tree drawn top-down, then each cell from its chosen leaf VAE."""
        device = self.spn.layers[-1].logits.device
        chosen = self.spn.sample_leaves(n)  # [n, V], one leaf per cell
        patches = self.leaves.sample(n, mean, device)  # [V, n, D]
        mask = chosen.T.reshape(-1, self.cfg.leaf_k, n, 1)
        cells = (patches.reshape(-1, self.cfg.leaf_k, n, patches.shape[-1]) * mask).sum(1)
        return self.image(cells)


class ConvSPVAE(SPVAE):
    """SPVAE with convolutional leaf VAEs (docs/specs/spvae.md#17-convolutional-leaves): same SPN,
    heads, likelihoods, estimator."""

    Config = ConvSPVAEConfig
    Leaves = ConvLeaves


# --- Baselines (docs/specs/spvae.md#2-baselines) --------------------------------------------------


class VAEBaseline(_LeafEstimator):
    """The paper's VAE baseline (docs/specs/spvae.md#21-vae): the leaf VAE of
    docs/specs/spvae.md#14-mlp-leaf-vaes on the whole image, i.e. one
    ``MLPLeaves`` leaf whose patch is all C*H*W values, no SPN. Trained with the K-sample IWAE
    bound like the SP models: ``forward`` gives Terms(log_px_z = log p^(x) with K = ``samples``,
    kl = 0), see the module docstring."""

    Config = VAEBaselineConfig
    Leaves = MLPLeaves

    def __init__(self, cfg, x_shape: tuple[int, ...]):
        super().__init__()
        self.cfg, self.x_shape = cfg, tuple(x_shape)
        shape = _image_shape(self.x_shape)
        self.leaves = self.Leaves(1, math.prod(shape), cfg, patch_shape=shape)

    def patches(self, x: Tensor) -> Tensor:
        """x [B, *x_shape] -> the single leaf's input [1, B, C*H*W] (channel-major raster)."""
        return x.reshape(1, x.shape[0], -1)

    def forward(self, x: Tensor) -> Terms:
        """Terms(log_px_z = the ``samples``-sample IWAE estimate, kl = 0)."""
        log_p = self.leaf_log_values(x, self.cfg.samples)[:, 0]
        return Terms(log_px_z=log_p, kl=torch.zeros_like(log_p))

    @torch.no_grad()
    def log_likelihood(self, x: Tensor, k: int, max_rows: int = DEFAULT_MAX_ROWS) -> Tensor:
        """log p^(x) with k importance samples on the whole image
        (docs/specs/spvae.md#5-evaluation), chunked, [B]."""
        return self.leaf_log_values(x, k, max_rows)[:, 0]

    @torch.no_grad()
    def sample(self, n: int, mean: bool = False) -> Tensor:
        device = next(self.parameters()).device
        return self.leaves.sample(n, mean, device)[0].reshape(n, *self.x_shape)


class ConvVAEBaseline(VAEBaseline):
    """The paper's ConvVAE baseline (docs/specs/spvae.md#22-convvae): one ``ConvLeaves`` leaf on the
    whole image, convs 32, 64 filters 3x3 stride 2 'same', Dense(n_dense), mirrored decoder; same
    heads, likelihoods and K-sample objective."""

    Config = ConvVAEBaselineConfig
    Leaves = ConvLeaves
