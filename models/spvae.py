"""SPVAE (Tan & Peharz, ICML 2019): a sum-product network whose leaves are small VAEs on patches.

Reference: spvae.md, sections 1.1-1.7. The region graph and SPN are in ``models/spn.py``.

    "spvae"      MLP leaf VAEs (spec 1.4)
    "convspvae"  conv-dense leaf VAEs (spec 1.7), all leaves in grouped convolutions
    "spvae_vae"      baseline (spec 2.1): one MLP leaf VAE on the whole image, no SPN
    "spvae_convvae"  baseline (spec 2.2): one conv leaf VAE (filters 32,64, stride 2), no SPN

Baselines. The paper trains VAE and ConvVAE with the same K = 5 IWAE bound as the SP models
(spec 2.1, 2.2, 4), so they follow the same contract: ``forward`` returns Terms(log_px_z = the
K-sample estimate log p^(x), kl = 0), and ``log_likelihood(x, k)`` streams k samples in chunks.
They are the leaf classes with a single leaf whose patch is the whole image.

Leaves. The image (C x H x W) is cut into a grid of ``cell_size x cell_size`` cells; every cell
holds ``leaf_k`` independent leaf VAEs on its patch (C * cell_size^2 values), each with its own
encoder and decoder. All leaves have the same shapes, so their parameters are stacked and evaluated
together with batched matmuls (``torch.baddbmm`` over a leading group dim; no loop over leaves):
    encoder  mu = MLP_mu(x_s),  lambda = 1 + MLP_lambda(x_s)^2   (two separate MLPs, precision)
             z = mu + eps / sqrt(lambda),  eps ~ N(0, I);  prior N(0, I)
    decoder  gaussian:  m = sigmoid(MLP_m(z)), tau = 1 + MLP_tau(z)^2   (two separate MLPs)
             binomial:  p = sigmoid(MLP_p(z)),  x = n / 255,  n ~ Binomial(255, p)
             bernoulli: p = sigmoid(MLP_p(z))
MLP blocks: softplus hidden layers, linear output, TF1 variance-scaling init (scale 1, fan-in,
truncated normal), zero biases.

Objective and the model contract. Leaf j returns the K-sample importance-weighted estimate
    log p^_j(x_s) = logsumexp_k [log p(x_s|z_k) + log p(z_k) - log q(z_k|x_s)] - log K,
independent samples per leaf; the SPN combines them bottom-up into log P^(x) (spec 1.6). The SPN's
value does not split into a reconstruction and a KL term, so ``forward`` returns
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
import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import DEFAULT_MAX_ROWS, Terms
from models.spn import SPN, RegionGraph

SPVAE_LIKELIHOODS = ("gaussian", "binomial", "bernoulli")
BINOMIAL_N = 255
LOG_2PI = math.log(2 * math.pi)
# stddev correction of TF1's truncated normal: the std of N(0, 1) truncated to [-2, 2]
_TRUNC_STD = 0.87962566103423978


# --- Config -----------------------------------------------------------------------------------


def _check_positive_int(name: str, value, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(
            f"{name} ({what}) must be an int >= 1, got {value!r}; set {name}=1 or more"
        )


def parse_int_list(name: str, text, example: str) -> tuple[int, ...]:
    """'30,30' -> (30, 30); ValueError naming ``name`` otherwise (lists travel as strings)."""
    parts = text.split(",") if isinstance(text, str) else None
    try:
        values = tuple(int(p) for p in parts) if parts is not None else None
    except ValueError:
        values = None
    if values is None or any(v < 1 for v in values):
        raise ValueError(
            f"{name} must be a string of comma-separated positive ints such as {example!r}, got "
            f"{text!r}; pass it quoted, e.g. {name}={example!r}"
        )
    return values


def _check_spn_fields(cfg) -> None:
    """The fields SPVAE and ConvSPVAE share."""
    if cfg.likelihood not in SPVAE_LIKELIHOODS:
        raise ValueError(
            f"unknown likelihood {cfg.likelihood!r}; likelihood must be one of "
            f"{', '.join(map(repr, SPVAE_LIKELIHOODS))}"
        )
    _check_positive_int("cell_size", cfg.cell_size, "leaf patch side in pixels")
    _check_positive_int("sum_k", cfg.sum_k, "sum nodes per region")
    _check_positive_int("leaf_k", cfg.leaf_k, "leaf VAEs per cell")
    _check_positive_int("samples", cfg.samples, "importance samples per leaf")


@dataclass(frozen=True)
class SPVAEConfig:
    latent_dim: int = 25
    """Size of each leaf VAE's z (``nz``; the paper's selected configs: 25)."""
    hidden_dims: str = "30,30"
    """Hidden softplus layer widths of every leaf MLP block (``nnodes``), comma-separated; encoder
    and decoder use the same (as in all of the paper's experiments)."""
    likelihood: str = "gaussian"
    """p(x_s|z): 'gaussian' (mean and precision networks; noise-perturbed pixels in [0, 1]),
    'binomial' (Binomial(255) on discrete pixels x = n/255) or 'bernoulli' (binarised data)."""
    cell_size: int = 7
    """Side of the square cells (leaf patches) in pixels; must divide the image's height and width
    (MNIST 28 -> 7, a 4x4 grid; SVHN/CIFAR 32 -> 8)."""
    sum_k: int = 2
    """Sum nodes per internal non-root region (``sumK``; the root has one)."""
    leaf_k: int = 2
    """Leaf VAEs per cell (``leafK``)."""
    samples: int = 5
    """Importance samples per leaf in the training objective (K = 5 in the paper)."""

    def __post_init__(self):
        _check_positive_int("latent_dim", self.latent_dim, "leaf latent size nz")
        parse_int_list("hidden_dims", self.hidden_dims, "30,30")
        _check_spn_fields(self)

    @property
    def hidden_widths(self) -> tuple[int, ...]:
        return parse_int_list("hidden_dims", self.hidden_dims, "30,30")


@dataclass(frozen=True)
class ConvSPVAEConfig:
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
    likelihood: str = "gaussian"
    """p(x_s|z): 'gaussian' (mean and precision networks; noise-perturbed pixels in [0, 1]),
    'binomial' (Binomial(255) on discrete pixels x = n/255) or 'bernoulli' (binarised data)."""
    cell_size: int = 7
    """Side of the square cells (leaf patches) in pixels; must divide the image's height and width
    (MNIST 28 -> 7, a 4x4 grid; SVHN/CIFAR 32 -> 8)."""
    sum_k: int = 2
    """Sum nodes per internal non-root region (``sumK``; the root has one)."""
    leaf_k: int = 2
    """Leaf VAEs per cell (``leafK``)."""
    samples: int = 5
    """Importance samples per leaf in the training objective (K = 5 in the paper)."""

    def __post_init__(self):
        _check_positive_int("latent_dim", self.latent_dim, "leaf latent size nz")
        _check_positive_int("n_dense", self.n_dense, "dense layer width")
        parse_int_list("filters", self.filters, "4,8")
        _check_positive_int("kernel_size", self.kernel_size, "convolution kernel side")
        if self.kernel_size % 2 == 0:
            raise ValueError(
                f"kernel_size must be odd for 'same' padding, got {self.kernel_size}; "
                "set kernel_size=3"
            )
        _check_spn_fields(self)

    @property
    def filter_counts(self) -> tuple[int, ...]:
        return parse_int_list("filters", self.filters, "4,8")

    @property
    def stride(self) -> int:
        """Convolution stride: 1 for the leaves (spec 1.7), not configurable."""
        return 1


def _check_baseline_fields(cfg) -> None:
    if cfg.likelihood not in SPVAE_LIKELIHOODS:
        raise ValueError(
            f"unknown likelihood {cfg.likelihood!r}; likelihood must be one of "
            f"{', '.join(map(repr, SPVAE_LIKELIHOODS))}"
        )
    _check_positive_int("latent_dim", cfg.latent_dim, "latent size nz")
    _check_positive_int("samples", cfg.samples, "importance samples in training")


@dataclass(frozen=True)
class VAEBaselineConfig:
    """The paper's MLP VAE baseline (spec 2.1); defaults: its MNIST pick (300,300), nz 200."""

    latent_dim: int = 200
    """Size of z (``nz``; grid 1, 2, 5, 25, 50, 100, 150, 200; MNIST pick: 200)."""
    hidden_dims: str = "300,300"
    """Hidden softplus layer widths of each of the mean / precision MLPs (``nnodes``),
    comma-separated; encoder and decoder use the same (grid: 30,30 100,100 300,300 600,600)."""
    likelihood: str = "gaussian"
    """p(x|z): 'gaussian' (mean and precision networks; noise-perturbed pixels in [0, 1]),
    'binomial' (Binomial(255) on discrete pixels x = n/255) or 'bernoulli' (binarised data)."""
    samples: int = 5
    """Importance samples in the training objective (K = 5 in the paper)."""

    def __post_init__(self):
        parse_int_list("hidden_dims", self.hidden_dims, "300,300")
        _check_baseline_fields(self)

    @property
    def hidden_widths(self) -> tuple[int, ...]:
        return parse_int_list("hidden_dims", self.hidden_dims, "300,300")


@dataclass(frozen=True)
class ConvVAEBaselineConfig:
    """The paper's ConvVAE baseline (spec 2.2); defaults: its MNIST pick n_dense 64, nz 200."""

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
    likelihood: str = "gaussian"
    """p(x|z): 'gaussian' (mean and precision networks; noise-perturbed pixels in [0, 1]),
    'binomial' (Binomial(255) on discrete pixels x = n/255) or 'bernoulli' (binarised data)."""
    samples: int = 5
    """Importance samples in the training objective (K = 5 in the paper)."""

    def __post_init__(self):
        _check_positive_int("n_dense", self.n_dense, "dense layer width")
        parse_int_list("filters", self.filters, "32,64")
        _check_positive_int("kernel_size", self.kernel_size, "convolution kernel side")
        if self.kernel_size % 2 == 0:
            raise ValueError(
                f"kernel_size must be odd for 'same' padding, got {self.kernel_size}; "
                "set kernel_size=3"
            )
        _check_positive_int("stride", self.stride, "convolution stride")
        _check_baseline_fields(self)

    @property
    def filter_counts(self) -> tuple[int, ...]:
        return parse_int_list("filters", self.filters, "32,64")


# --- Batched leaf networks --------------------------------------------------------------------


class GroupedMLP(nn.Module):
    """``groups`` independent MLPs of equal shape: x [G, N, in] -> [G, N, out], one batched
    matmul per layer; softplus between layers, linear output (spec 1.4)."""

    def __init__(self, groups: int, sizes: list[int]):
        super().__init__()
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
            w = torch.empty(groups, n_in, n_out)
            std = math.sqrt(1.0 / n_in) / _TRUNC_STD  # TF1 variance_scaling defaults
            nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(torch.zeros(groups, 1, n_out)))

    def forward(self, x: Tensor) -> Tensor:
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(b, x, w)
            if i < last:
                x = F.softplus(x)
        return x


def _patch_log_prob(likelihood: str, out: Tensor, x: Tensor) -> Tensor:
    """log p(x_s|z) summed over the patch. ``out``: decoder outputs [H, V, ..., D] (H heads), ``x``
    broadcastable to [V, ..., D]. Returns [V, ...]."""
    if likelihood == "gaussian":
        m, tau = torch.sigmoid(out[0]), 1 + out[1].square()
        return 0.5 * (torch.log(tau) - LOG_2PI - tau * (x - m).square()).sum(-1)
    logits = out[0]
    if likelihood == "bernoulli":
        return -F.binary_cross_entropy_with_logits(
            logits, x.expand_as(logits), reduction="none"
        ).sum(-1)
    # Binomial(255) on n = 255 x; the lgamma form also accepts non-integer n (spec 1.5)
    n = BINOMIAL_N * x
    log_choose = (
        math.lgamma(BINOMIAL_N + 1) - torch.lgamma(n + 1) - torch.lgamma(BINOMIAL_N + 1 - n)
    ).sum(-1)
    # n log p + (255 - n) log(1 - p) with p = sigmoid(l) is n l - 255 softplus(l): two ops
    return log_choose + (n * logits - BINOMIAL_N * F.softplus(logits)).sum(-1)


def _patch_sample(likelihood: str, out: Tensor, mean: bool) -> Tensor:
    if likelihood == "gaussian":
        m, tau = torch.sigmoid(out[0]), 1 + out[1].square()
        return m if mean else m + torch.randn_like(m) / tau.sqrt()
    p = torch.sigmoid(out[0])
    if mean:
        return p
    if likelihood == "bernoulli":
        return torch.bernoulli(p)
    return torch.distributions.Binomial(BINOMIAL_N, probs=p).sample() / BINOMIAL_N


class MLPLeaves(nn.Module):
    """``n_leaves`` independent leaf VAEs on patches of ``patch_dim`` values (spec 1.4)."""

    def __init__(self, n_leaves: int, patch_dim: int, cfg, patch_shape=None):
        super().__init__()
        self.n_leaves, self.patch_dim, self.latent_dim = n_leaves, patch_dim, cfg.latent_dim
        # (C, h, w) of a patch; conv leaves need it, square cells of cfg.cell_size by default
        self.patch_shape = patch_shape
        self.likelihood = cfg.likelihood
        self.heads = 2 if cfg.likelihood == "gaussian" else 1
        # Group g = h * n_leaves + j is head h (mean, precision) of leaf j: separate networks.
        # encoder: [2V, B, D] -> [2V, B, nz]; decoder: [heads V, M, nz] -> [heads V, M, D]
        self.encoder, self.decoder = self.networks(cfg, 2 * n_leaves, self.heads * n_leaves)

    def networks(self, cfg, enc_groups: int, dec_groups: int) -> tuple[nn.Module, nn.Module]:
        hidden = list(cfg.hidden_widths)
        self.widest = max(self.patch_dim, cfg.latent_dim, *hidden)
        encoder = GroupedMLP(enc_groups, [self.patch_dim, *hidden, cfg.latent_dim])
        decoder = GroupedMLP(dec_groups, [cfg.latent_dim, *hidden, self.patch_dim])
        return encoder, decoder

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x [V, B, D] -> mean and precision [V, B, nz]."""
        out = self.encoder(x.repeat(2, 1, 1)).unflatten(0, (2, self.n_leaves))
        return out[0], 1 + out[1].square()

    def decode(self, z: Tensor) -> Tensor:
        """z [V, ..., nz] -> decoder outputs [heads, V, ..., D]."""
        shape = z.shape[1:-1]
        flat = z.reshape(self.n_leaves, -1, self.latent_dim).repeat(self.heads, 1, 1)
        out = self.decoder(flat).unflatten(0, (self.heads, self.n_leaves))
        return out.reshape(self.heads, self.n_leaves, *shape, self.patch_dim)

    def log_weights(self, x: Tensor, mu: Tensor, lam: Tensor, k: int) -> Tensor:
        """log p(x|z) + log p(z) - log q(z|x) for k fresh z per leaf and example: [V, k, B]."""
        eps = torch.randn(self.n_leaves, k, *mu.shape[1:], device=mu.device, dtype=mu.dtype)
        z = mu.unsqueeze(1) + eps * lam.rsqrt().unsqueeze(1)
        log_q = 0.5 * (torch.log(lam).unsqueeze(1) - LOG_2PI - eps.square()).sum(-1)
        log_p = -0.5 * (LOG_2PI + z.square()).sum(-1)
        log_px = _patch_log_prob(self.likelihood, self.decode(z), x.unsqueeze(1))
        return log_px + log_p - log_q

    def sample(self, n: int, mean: bool, device) -> Tensor:
        """Patches from every leaf: [V, n, D]."""
        z = torch.randn(self.n_leaves, n, self.latent_dim, device=device)
        return _patch_sample(self.likelihood, self.decode(z), mean)


def conv_spatial_sizes(cell, n_layers: int, stride: int) -> list[tuple[int, int]]:
    """Spatial (h, w) before and after each 'same' convolution: ceil(size / stride) per layer
    (odd kernels, padding kernel // 2). ``cell`` is an int (square) or (h, w)."""
    hw = (cell, cell) if isinstance(cell, int) else tuple(cell)
    sizes = [hw]
    for _ in range(n_layers):
        hw = tuple(-(-d // stride) for d in hw)
        sizes.append(hw)
    return sizes


class GroupedConvEncoder(nn.Module):
    """``groups`` conv-dense encoders of equal shape (spec 1.7): [G, N, C*h*w] -> [G, N, out].
    Convs kxk 'same' (stride ``cfg.stride``: 1 in the leaves, 2 in the ConvVAE baseline) with
    softplus, flatten, Dense(n_dense) softplus, linear head; all groups in one grouped convolution
    (``groups=G``) per layer. ``cell``: an int (square patch) or (h, w)."""

    def __init__(self, groups: int, channels: int, cell, cfg, out: int):
        super().__init__()
        self.groups, self.channels = groups, channels
        pad, sizes = cfg.kernel_size // 2, [channels, *cfg.filter_counts]
        spatial = conv_spatial_sizes(cell, len(cfg.filter_counts), cfg.stride)
        self.hw = spatial[0]
        self.convs = nn.ModuleList(
            nn.Conv2d(
                groups * a, groups * b, cfg.kernel_size, cfg.stride, padding=pad, groups=groups
            )
            for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        last = spatial[-1][0] * spatial[-1][1]
        self.dense = GroupedMLP(groups, [sizes[-1] * last, cfg.n_dense, out])

    def forward(self, x: Tensor) -> Tensor:
        g, n = x.shape[:2]
        h = x.transpose(0, 1).reshape(n, g * self.channels, *self.hw)
        for conv in self.convs:
            h = F.softplus(conv(h))
        return self.dense(h.reshape(n, g, -1).transpose(0, 1))


class GroupedConvDecoder(nn.Module):
    """The mirror image (spec 1.7, order derived): z -> Dense(n_dense) softplus -> Dense(last
    filters x h' x w') softplus -> transposed convs (filters reversed) with softplus between ->
    transposed conv to C channels, linear: [G, N, nz] -> [G, N, C*h*w]. With stride > 1 each
    transposed conv's ``output_padding`` restores the encoder's size at that depth exactly."""

    def __init__(self, groups: int, channels: int, cell, cfg):
        super().__init__()
        self.groups = groups
        filters = list(reversed(cfg.filter_counts))
        spatial = conv_spatial_sizes(cell, len(filters), cfg.stride)[::-1]  # deepest first
        self.first, self.hw = filters[0], spatial[0]
        first = filters[0] * self.hw[0] * self.hw[1]
        self.dense = GroupedMLP(groups, [cfg.latent_dim, cfg.n_dense, first])
        k, s, pad, sizes = cfg.kernel_size, cfg.stride, cfg.kernel_size // 2, [*filters, channels]
        self.convs = nn.ModuleList(
            nn.ConvTranspose2d(
                groups * a,
                groups * b,
                k,
                s,
                padding=pad,
                # (in - 1) s - 2 pad + k + output_padding = the encoder's size one level up
                output_padding=tuple(
                    t - ((i - 1) * s - 2 * pad + k)
                    for i, t in zip(spatial[j], spatial[j + 1], strict=True)
                ),
                groups=groups,
            )
            for j, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))
        )
        # widest decoder activation per example and group (sets the sample chunk size)
        self.widest = max(
            cfg.n_dense, *(f * h * w for f, (h, w) in zip(filters, spatial, strict=False))
        )

    def forward(self, z: Tensor) -> Tensor:
        g, n = z.shape[:2]
        h = F.softplus(self.dense(z)).transpose(0, 1)
        h = h.reshape(n, g * self.first, *self.hw)
        for i, conv in enumerate(self.convs):
            h = conv(h)
            if i < len(self.convs) - 1:
                h = F.softplus(h)
        return h.reshape(n, g, -1).transpose(0, 1)


class ConvLeaves(MLPLeaves):
    """Leaf VAEs with conv-dense encoders and decoders (spec 1.7); same heads and likelihoods.
    Separate networks per head as in the MLP leaves (two encoders: mean, precision; one or two
    decoders). Convolutions keep torch's default initialisation, the dense layers TF1 variance
    scaling [P: the spec is silent on conv init]."""

    def networks(self, cfg, enc_groups: int, dec_groups: int) -> tuple[nn.Module, nn.Module]:
        if self.patch_shape is None:  # the SPVAE's square cells
            cell = cfg.cell_size
            self.patch_shape = (self.patch_dim // (cell * cell), cell, cell)
        channels, cell = self.patch_shape[0], self.patch_shape[1:]
        encoder = GroupedConvEncoder(enc_groups, channels, cell, cfg, cfg.latent_dim)
        decoder = GroupedConvDecoder(dec_groups, channels, cell, cfg)
        if cfg.stride == 1:  # the leaves' historical (conservative) estimate
            self.widest = max(self.patch_dim, cfg.n_dense, cfg.latent_dim) * max(cfg.filter_counts)
        else:
            self.widest = max(self.patch_dim, cfg.latent_dim, decoder.widest)
        return encoder, decoder


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
        """No data-dependent initialisation (spec: none)."""

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
        """log P^(x) with k importance samples per leaf, combined through the SPN (spec 5), [B]."""
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
    """SPVAE with convolutional leaf VAEs (spec 1.7): same SPN, heads, likelihoods, estimator."""

    Config = ConvSPVAEConfig
    Leaves = ConvLeaves


# --- Baselines (spec 2) -----------------------------------------------------------------------


class VAEBaseline(_LeafEstimator):
    """The paper's VAE baseline (spec 2.1): the leaf VAE of spec 1.4 on the whole image, i.e. one
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
        """log p^(x) with k importance samples on the whole image (spec 5), chunked, [B]."""
        return self.leaf_log_values(x, k, max_rows)[:, 0]

    @torch.no_grad()
    def sample(self, n: int, mean: bool = False) -> Tensor:
        device = next(self.parameters()).device
        return self.leaves.sample(n, mean, device)[0].reshape(n, *self.x_shape)


class ConvVAEBaseline(VAEBaseline):
    """The paper's ConvVAE baseline (spec 2.2): one ``ConvLeaves`` leaf on the whole image, convs
    32, 64 filters 3x3 stride 2 'same', Dense(n_dense), mirrored decoder; same heads, likelihoods
    and K-sample objective."""

    Config = ConvVAEBaselineConfig
    Leaves = ConvLeaves
