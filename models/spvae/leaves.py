"""The leaf VAEs of SPVAE and its baselines (Tan & Peharz 2019, docs/specs/spvae.md, sections
1.4, 1.5, 1.7, 2).

Every leaf is a small VAE on one image patch, with its own encoder and decoder. All leaves of a
model have the same shapes, so their parameters are stacked along a leading group dim and evaluated
together: ``GroupedMLP`` (one ``torch.baddbmm`` per layer) and grouped convolutions (``groups=G``);
no Python loop over leaves.

    encoder  mu = MLP_mu(x_s),  lambda = 1 + MLP_lambda(x_s)^2   (two separate networks)
             z = mu + eps / sqrt(lambda),  eps ~ N(0, I);  prior N(0, I)
    decoder  gaussian:  m = sigmoid(MLP_m(z)), tau = 1 + MLP_tau(z)^2   (two separate networks)
             binomial:  p = sigmoid(MLP_p(z)),  x = n / 255,  n ~ Binomial(255, p)
             bernoulli: p = sigmoid(MLP_p(z))

MLP blocks: softplus hidden layers, linear output, zero biases. Initialisation as in the authors'
code (their ``MLP2``: ``tf.layers.Dense(kernel_initializer=
tf.contrib.layers.variance_scaling_initializer())``, i.e. the contrib *defaults*): factor 2,
fan-in, ``truncated_normal(0, sqrt(1.3 * 2 / fan_in))`` cut at two of its stddevs, so
|w| < 2 sqrt(2.6 / fan_in) and Var w = 2.6 * 0.7737 / fan_in ~ 2.01 / fan_in (He-like). A
"scale 1" reading comes from their unused ``MLP`` class (``factor=1.``, also the only place with an
``l2_regularizer(0.1)``); no regulariser reaches their loss (``tf.losses.get_regularization_loss``
sums an empty collection), and ours has none. ``MLPLeaves.log_weights`` gives the importance
log-weights log p(x_s|z) + log p(z) - log q(z|x_s) from which ``models.spvae.spvae`` forms
each leaf's estimate.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BINOMIAL_N = 255
LOG_2PI = math.log(2 * math.pi)
# tf.contrib.layers.variance_scaling_initializer() defaults (the authors' MLP2 and conv dense
# layers): factor 2, FAN_IN, truncated normal with stddev parameter sqrt(1.3 * factor / fan_in)
VS_FACTOR = 2.0
VS_TRUNC = 1.3


def tf_variance_scaling_(w: Tensor, fan_in: int, factor: float = VS_FACTOR) -> Tensor:
    """In place, as TF1 contrib's variance_scaling_initializer(factor, 'FAN_IN', uniform=False):
    N(0, s^2) with s = sqrt(1.3 factor / fan_in), redrawn outside [-2 s, 2 s] (tf.truncated_normal).
    """
    std = math.sqrt(VS_TRUNC * factor / fan_in)
    with torch.no_grad():
        return nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std)


def tf_glorot_uniform_(w: Tensor, fan_in: int, fan_out: int) -> Tensor:
    """In place, TF1's default kernel initialiser of ``tf.layers.Conv2D``/``Conv2DTranspose``
    (``glorot_uniform``): U(-l, l), l = sqrt(6 / (fan_in + fan_out)); fans include the kernel area.
    """
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        return w.uniform_(-limit, limit)


class GroupedMLP(nn.Module):
    """``groups`` independent MLPs of equal shape: x [G, N, in] -> [G, N, out], one batched
    matmul per layer; softplus between layers, linear output
    (docs/specs/spvae.md#14-mlp-leaf-vaes)."""

    def __init__(self, groups: int, sizes: list[int], init_factor: float = VS_FACTOR):
        super().__init__()
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
            # the authors' tf.contrib variance scaling (module docstring), zero biases
            w = tf_variance_scaling_(torch.empty(groups, n_in, n_out), n_in, init_factor)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(torch.zeros(groups, 1, n_out)))

    def forward(self, x: Tensor) -> Tensor:
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(b, x, w)
            if i < last:
                x = F.softplus(x)
        return x


class GaussianPatch:
    """N(m, 1 / tau) per value, m = sigmoid(out[0]), tau = 1 + out[1]^2: two decoder heads."""

    heads = 2

    def log_prob(self, out: Tensor, x: Tensor) -> Tensor:
        """log p(x_s|z) summed over the patch. ``out``: decoder outputs [H, V, ..., D] (H heads),
        ``x`` broadcastable to [V, ..., D]. Returns [V, ...]."""
        m, tau = torch.sigmoid(out[0]), 1 + out[1].square()
        return 0.5 * (torch.log(tau) - LOG_2PI - tau * (x - m).square()).sum(-1)

    def sample(self, out: Tensor, mean: bool) -> Tensor:
        m, tau = torch.sigmoid(out[0]), 1 + out[1].square()
        return m if mean else m + torch.randn_like(m) / tau.sqrt()


class BernoulliPatch:
    """Bernoulli(sigmoid(out[0])) per value: one decoder head of logits."""

    heads = 1

    def log_prob(self, out: Tensor, x: Tensor) -> Tensor:
        logits = out[0]
        return -F.binary_cross_entropy_with_logits(
            logits, x.expand_as(logits), reduction="none"
        ).sum(-1)

    def sample(self, out: Tensor, mean: bool) -> Tensor:
        p = torch.sigmoid(out[0])
        return p if mean else torch.bernoulli(p)


class BinomialPatch:
    """Binomial(255, sigmoid(out[0])) on n = 255 x per value: one decoder head of logits."""

    heads = 1

    def log_prob(self, out: Tensor, x: Tensor) -> Tensor:
        logits = out[0]
        # the lgamma form also accepts non-integer n (docs/specs/spvae.md#15-likelihoods)
        n = BINOMIAL_N * x
        log_choose = (
            math.lgamma(BINOMIAL_N + 1) - torch.lgamma(n + 1) - torch.lgamma(BINOMIAL_N + 1 - n)
        ).sum(-1)
        # n log p + (255 - n) log(1 - p) with p = sigmoid(l) is n l - 255 softplus(l): two ops
        return log_choose + (n * logits - BINOMIAL_N * F.softplus(logits)).sum(-1)

    def sample(self, out: Tensor, mean: bool) -> Tensor:
        p = torch.sigmoid(out[0])
        if mean:
            return p
        return torch.distributions.Binomial(BINOMIAL_N, probs=p).sample() / BINOMIAL_N


PATCH_LIKELIHOODS = {"gaussian": GaussianPatch(), "binomial": BinomialPatch(),
                     "bernoulli": BernoulliPatch()}  # fmt: skip
"""The leaves' likelihoods by their config name (model/likelihood)."""
SPVAE_LIKELIHOODS = tuple(PATCH_LIKELIHOODS)


class MLPLeaves(nn.Module):
    """``n_leaves`` independent leaf VAEs on patches of ``patch_dim`` values
    (docs/specs/spvae.md#14-mlp-leaf-vaes)."""

    def __init__(self, n_leaves: int, patch_dim: int, cfg, patch_shape=None):
        super().__init__()
        self.n_leaves, self.patch_dim, self.latent_dim = n_leaves, patch_dim, cfg.latent_dim
        # (C, h, w) of a patch; conv leaves need it, square cells of cfg.cell_size by default
        self.patch_shape = patch_shape
        self.likelihood = PATCH_LIKELIHOODS[cfg.likelihood]
        self.heads = self.likelihood.heads
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
        log_px = self.likelihood.log_prob(self.decode(z), x.unsqueeze(1))
        return log_px + log_p - log_q

    def sample(self, n: int, mean: bool, device) -> Tensor:
        """Patches from every leaf: [V, n, D]."""
        z = torch.randn(self.n_leaves, n, self.latent_dim, device=device)
        return self.likelihood.sample(self.decode(z), mean)


def conv_spatial_sizes(cell, n_layers: int, stride: int) -> list[tuple[int, int]]:
    """Spatial (h, w) before and after each 'same' convolution: ceil(size / stride) per layer
    (odd kernels, padding kernel // 2). ``cell`` is an int (square) or (h, w)."""
    hw = (cell, cell) if isinstance(cell, int) else tuple(cell)
    sizes = [hw]
    for _ in range(n_layers):
        hw = tuple(-(-d // stride) for d in hw)
        sizes.append(hw)
    return sizes


def tf_conv_init_(convs: nn.ModuleList, groups: int) -> None:
    """The authors' (transposed) convolutions are ``tf.layers.Conv2D``/``Conv2DTranspose`` with no
    initialiser given: TF1 ``glorot_uniform`` kernels and zero biases, per group (each group is
    one leaf's convolution; fans are those of one group: channels x kernel area)."""
    for conv in convs:
        w = conv.weight  # Conv2d [G*out, in, k, k]; ConvTranspose2d [G*in, out, k, k]
        area = w.shape[2] * w.shape[3]
        fan_a, fan_b = (w.shape[0] // groups) * area, w.shape[1] * area
        tf_glorot_uniform_(w, fan_a, fan_b)  # the limit is symmetric in the two fans
        with torch.no_grad():
            conv.bias.zero_()


class GroupedConvEncoder(nn.Module):
    """``groups`` conv-dense encoders of equal shape (docs/specs/spvae.md#17-convolutional-leaves):
    [G, N, C*h*w] -> [G, N, out]. Convs kxk 'same' (stride ``cfg.stride``: 1 in the leaves, 2 in the
    ConvVAE baseline) with softplus, flatten, Dense(n_dense) softplus, linear head; all groups in
    one grouped convolution (``groups=G``) per layer. ``cell``: an int (square patch) or (h, w)."""

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
        tf_conv_init_(self.convs, groups)
        last = spatial[-1][0] * spatial[-1][1]
        self.dense = GroupedMLP(groups, [sizes[-1] * last, cfg.n_dense, out])

    def forward(self, x: Tensor) -> Tensor:
        g, n = x.shape[:2]
        h = x.transpose(0, 1).reshape(n, g * self.channels, *self.hw)
        for conv in self.convs:
            h = F.softplus(conv(h))
        return self.dense(h.reshape(n, g, -1).transpose(0, 1))


class GroupedConvDecoder(nn.Module):
    """The mirror image (docs/specs/spvae.md#17-convolutional-leaves, order derived): z ->
    Dense(n_dense) softplus -> Dense(last filters x h' x w') softplus -> transposed convs (filters
    reversed) with softplus between -> transposed conv to C channels, linear: [G, N, nz] -> [G, N,
    C*h*w]. With stride > 1 each transposed conv's ``output_padding`` restores the encoder's size at
    that depth exactly."""

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
        tf_conv_init_(self.convs, groups)
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
    """Leaf VAEs with conv-dense encoders and decoders
    (docs/specs/spvae.md#17-convolutional-leaves); same heads and likelihoods. Separate networks per
    head as in the MLP leaves (two encoders: mean, precision; one or two decoders). Initialisation
    as the authors' ``src/tfconvnet.py``: (transposed) convolutions TF1 ``glorot_uniform`` with zero
    biases (``tf.layers`` defaults), dense layers contrib variance scaling (factor 2, module
    docstring).

    Known architecture differences from ``tfconvnet.IWAEABC_conv`` (not changed here): theirs
    shares one conv-dense trunk between the mean and precision heads (encoder: two Dense heads;
    decoder: two final 1-filter transposed convs), where ours has separate networks per head; and
    their decoder has no Dense(n_dense) (z -> Dense(filters x h x w) -> transposed convs over
    ``filters[:-1]`` reversed -> head), where ours has z -> Dense(n_dense) -> Dense(...)."""

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
