"""The top-down hierarchical VAE of Kuzina & Tomczak, which alone is the Ladder VAE baseline
(docs/specs/hierarchical.md#1-top-down-backbone; the authors' model/encoder.py and
model/decoder.py).

A deterministic bottom-up encoder gives one feature map per latent layer; a top-down decoder
state s is shared by the prior and the posterior. From the top latent down, per layer l:

    p(z_l | z_>l)    = N(mu_p, sigma_p^2), (mu_p, log sigma_p^2, h) = prior_net(s)
    q(z_l | z_>l, x) = N(mu_q, sigma_q^2), (mu_q, log sigma_q^2)    = posterior_net(s_enc + s)
    s <- s + h;  s <- Upsample(ResBlocks(s + Conv1x1(z_l)))   (upsampled after a scale's last)

and p(x | z) reads the final state through a 3x3 conv. The KL of every layer is closed-form
between its two diagonal Gaussians at the sampled upper latents; ``Terms.extras`` carries each.

Latent hierarchy: ``latent_scales`` lists the latents per scale bottom-up ("4,4": four 14x14
then four 7x7 latents on 28x28 images; 0 = a scale with none, the state is upsampled past it),
each ``latent_width`` channels. Scale s has num_ch * scale_ch_mult^s channels (rounded down at
each step, as the authors do). The initial state is a fixed zero tensor (DCT-VAE's code).

Encoders: "per_latent" (LadderEncoder, DCT-VAE MNIST/OMNIGLOT: its own block stack per latent,
fed from the previous one) or "per_scale" (SmallLadderEncoder: one stack per scale, its output
shared by the scale's latents). Variances (both p and q): "softplus", sigma^2 = softplus_beta(raw)
(DCT-VAE, beta 0.7), or "log", raw = log sigma^2; then log sigma^2 clamped to
[logvar_min, logvar_max] (DCT-VAE [-5, 0]; DVP-VAE "log" with [-10, 1]).

Initialisation as the authors': the prior net's last conv is zero (every prior starts at
N(0, 1) after the clamp, and h = 0), the posterior net's last conv weights uniform(-1, 1), and the
last conv of each layer's state block and the z projection scaled by sqrt(1 / L) (L latents).

Deviations (docs/specs/hierarchical.md#10-deviations-from-the-authors-code): the importance weights
of ``log_likelihood`` are log p(x|z) + log p(z) - log q(z) at the sampled z, the intended IWAE; the
authors' estimator log-mean-exps ELBOs whose KLs are the analytic ones (``iwae_weights="authors"``),
which is no importance weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import DEFAULT_MAX_ROWS, Terms, streaming_iwae
from models.fields import parse_int_list
from models.hierarchical.blocks import DecoderBlock, EncoderBlock
from models.hierarchical.ddpm import gaussian_kl, normal_log_prob
from models.hierarchical.ladder_config import (  # noqa: F401 (re-exported: they lived here)
    ENCODERS,
    INIT_STATES,
    IWAE_WEIGHTS,
    POSTERIOR_INPUTS,
    PQ_NETS,
    PRIOR_MODES,
    UPSAMPLING,
    VAR_MODES,
    LadderConfig,
)
from models.hierarchical.outputs import (  # noqa: F401 (re-exported: they lived here)
    LIKELIHOODS,
    OUTPUTS,
    BernoulliOutput,
    MixtureOutput,
)


@dataclass
class Context:
    """What the top of a pass hands down the decoder: a context family's context u and its terms
    (LadderVAE.top), and the conditioning of ``condition_on_last``. The plain ladder has no u; its
    conditioning is the top latent, set by the pass."""

    u: Tensor | None = None
    """The context: DCT-VAE's quantised DCT coefficients, DVP-VAE's draw from q(u | x) or p(u)."""
    condition: Tensor | None = None
    """Added at every scale change with condition_on_last: DCT-VAE's context image; else the top
    latent (the pass sets it)."""
    nll_bound: Tensor | None = None
    """The context's term of the KL [B] (when the pass computes terms): DCT-VAE's -log p(u)
    bound, DVP-VAE's log q(u | x) - log p(u)."""
    q_u: tuple[Tensor, Tensor] | None = None
    """DVP-VAE: q(u | x)'s mean and log-variance (encoding passes)."""
    image: Tensor | None = None
    """DVP-VAE: u as an image, read by every prior net."""


@dataclass
class Layer:
    """One latent layer of a pass: its sample, the two Gaussians' parameters and its KL [B]."""

    z: Tensor
    q: tuple[Tensor, Tensor]
    p: tuple[Tensor, Tensor]
    kl: Tensor


def hierarchy(cfg: LadderConfig, x_shape: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """(latents, channels, size) per scale, bottom-up; ValueError naming model/latent_scales when
    the image cannot be halved that often."""
    _, height, width = x_shape
    scales = parse_int_list("latent_scales", cfg.latent_scales, "4,4", minimum=0)
    halvings = len(scales) - (1 if cfg.start_scale_at_x else 0)
    side = min(height, width)
    can = 0
    while side % 2 == 0 and side > 1:
        side //= 2
        can += 1
    if halvings > can or height != width:
        raise ValueError(
            f"latent_scales {cfg.latent_scales!r} has {len(scales)} scales: the {height}x{width} "
            f"image would be halved {halvings} times, but it can be halved {can} times "
            f"(square images only); use at most {can + (1 if cfg.start_scale_at_x else 0)} "
            "scales (e.g. '4,4' on 28x28)"
        )
    channels = [cfg.num_ch]
    for _ in scales[1:]:
        channels.append(int(channels[-1] * cfg.scale_ch_mult))
    first = 0 if cfg.start_scale_at_x else 1
    pairs = enumerate(zip(scales, channels, strict=True))
    return [(n, c, height // 2 ** (s + first)) for s, (n, c) in pairs]


class LadderEncoder(nn.Module):
    """x in the encoder's units -> one feature map per latent layer, bottom-up."""

    def __init__(self, cfg: LadderConfig, x_shape: tuple[int, ...]):
        super().__init__()
        block = dict(activation=cfg.activation, batch_norm=cfg.batch_norm,
                     weight_norm=cfg.weight_norm, gate=cfg.res_gate)  # fmt: skip
        self.stem = nn.Conv2d(x_shape[0], cfg.num_ch, 1)
        self.stacks = nn.ModuleList()
        self.repeats: list[int] = []
        ch, size = cfg.num_ch, x_shape[-1]
        for n, c, s in hierarchy(cfg, x_shape):
            stacks = n if cfg.encoder == "per_latent" else min(n, 1)
            for i in range(stacks):
                layers: list[nn.Module] = []
                for _ in range(cfg.enc_blocks):
                    layers.append(EncoderBlock(ch, int(ch * cfg.block_ch_mult), c, **block))
                    ch = c
                if i == 0:
                    layers.append(nn.AvgPool2d(size // s))
                    size = s
                self.stacks.append(nn.Sequential(*layers))
                self.repeats.append(1 if cfg.encoder == "per_latent" else n)

    def forward(self, x: Tensor) -> list[Tensor]:
        d, feats = self.stem(x), []
        for stack, repeat in zip(self.stacks, self.repeats, strict=True):
            d = stack(d)
            feats += [d] * repeat
        return feats


class TopDownLayer(nn.Module):
    """One latent layer of the decoder: its prior and posterior nets and its state update."""

    def __init__(
        self, cfg: LadderConfig, c_in: int, c_out: int, out_size: int | None, n: int,
        cond: int = 0, last: bool = False,
    ):  # fmt: skip
        """``cond``: channels concatenated to the prior net's input (DVP-VAE's context);
        ``last`` with aggregate_latents: the state is not updated (nothing reads it)."""
        super().__init__()
        w, mult = cfg.latent_width, cfg.block_ch_mult
        block = dict(activation=cfg.activation, batch_norm=cfg.batch_norm,
                     weight_norm=cfg.weight_norm, gate=cfg.res_gate)  # fmt: skip
        self.cfg, self.width = cfg, w
        residual = cfg.pq_nets == "residual"
        self.prior_net = DecoderBlock(c_in + cond, int(c_in * mult), 2 * w + c_in,
                                      mode=cfg.prior_mode, residual=residual, zero_last=True,
                                      **block)  # fmt: skip
        self.posterior_net = DecoderBlock(c_in, max(int(c_in * mult), 1), 2 * w, mode="2x3",
                                          residual=residual, zero_last=residual,
                                          **block)  # fmt: skip
        if not residual:
            nn.init.uniform_(self.posterior_net.last.weight, -1, 1)
        self.updates = not (last and cfg.aggregate_latents)
        if self.updates:
            self.z_up = nn.Conv2d(w, c_in, 1)
            self.state = nn.Sequential(*[
                DecoderBlock(c_in, int(c_in * mult), c_out if b == cfg.dec_blocks - 1 else c_in,
                             mode="2x3", **block)
                for b in range(cfg.dec_blocks)
            ])  # fmt: skip
            with torch.no_grad():  # stability: sqrt(1/L) on the residual branch and z's conv
                self.state[-1].last.weight.mul_(math.sqrt(1 / n))
                self.z_up.weight.mul_(math.sqrt(1 / n))
        self.out_size = out_size

    def log_var(self, raw: Tensor) -> Tensor:
        if self.cfg.var_mode == "softplus":
            raw = torch.log(F.softplus(raw, beta=self.cfg.softplus_beta))
        return raw.clamp(self.cfg.logvar_min, self.cfg.logvar_max)

    def prior(self, s: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        net_in = s if cond is None else torch.cat([s, cond], dim=1)
        mu, raw, h = self.prior_net(net_in).split([self.width, self.width, s.shape[1]], dim=1)
        return mu, self.log_var(raw), h

    def forward(
        self, s: Tensor, s_enc: Tensor | None, temperature: float = 1.0,
        cond: Tensor | None = None,
    ):  # fmt: skip
        """(new state, Layer); s_enc None draws z from the prior (std scaled by temperature);
        ``cond`` joins the prior net's input."""
        p_mu, p_lv, h = self.prior(s, cond)
        if s_enc is None:
            z = p_mu + temperature * torch.exp(0.5 * p_lv) * torch.randn_like(p_mu)
            layer = Layer(z, (p_mu, p_lv), (p_mu, p_lv), torch.zeros_like(p_mu[:, 0, 0, 0]))
        else:
            q_in = s_enc + s if self.cfg.posterior_input == "sum" else (s_enc + s) / math.sqrt(2)
            q_mu, q_raw = self.posterior_net(q_in).chunk(2, dim=1)
            q_lv = self.log_var(q_raw)
            z = q_mu + torch.exp(0.5 * q_lv) * torch.randn_like(q_mu)
            kl = gaussian_kl(q_mu, q_lv, p_mu, p_lv).flatten(1).sum(1)
            layer = Layer(z, (q_mu, q_lv), (p_mu, p_lv), kl)
        if not self.updates:
            return s + h, layer
        s = self.state(s + h + self.z_up(z))
        if self.out_size is not None and self.out_size != s.shape[-1]:
            s = F.interpolate(s, size=self.out_size, mode=self.cfg.upsample)
        return s, layer


class LadderVAE(nn.Module):
    """The Ladder VAE family ("ladder"): the backbone above with no context."""

    Config = LadderConfig
    unit_interval_data = True  # x in [0, 1]: binary, or 8-bit levels on the 1/255 grid
    channels_last = True  # a conv net: the trainer keeps it in channels-last layout on CUDA
    context_in_units = True  # a context u counts among the active units (DCT-VAE's authors)

    def __init__(self, cfg: LadderConfig, x_shape: tuple[int, ...]):
        super().__init__()
        self.cfg, self.x_shape = cfg, tuple(x_shape)
        self.output = OUTPUTS[cfg.likelihood].from_config(cfg, self.x_shape)
        scales = hierarchy(cfg, self.x_shape)
        self.encoder = LadderEncoder(cfg, self.x_shape)
        # top-down: (channels, size) of every latent, then where each layer's state goes next
        layers = [(c, s) for n, c, s in reversed(scales) for _ in range(n)]
        self.n_latents = len(layers)
        self.layers = nn.ModuleList()
        for i, (c, s) in enumerate(layers):
            nxt = layers[i + 1] if i + 1 < len(layers) else (c, x_shape[-1])
            self.layers.append(TopDownLayer(
                cfg, c, nxt[0], nxt[1] if nxt[1] != s else None, self.n_latents,
                cond=self.prior_condition_channels(), last=i + 1 == len(layers),
            ))  # fmt: skip
        top_c, top_s = layers[0]
        init = torch.zeros if cfg.init_state == "zeros" else torch.ones
        self.register_buffer("s_top", init(1, top_c, top_s, top_s))
        bottom = layers[-1][0]
        post = [DecoderBlock(bottom, int(bottom * cfg.block_ch_mult), bottom,
                             activation=cfg.activation, batch_norm=cfg.batch_norm,
                             weight_norm=cfg.weight_norm, zero_last=i == cfg.post_blocks - 1,
                             gate=cfg.res_gate)
                for i in range(cfg.post_blocks)]  # fmt: skip
        if cfg.aggregate_latents:  # the latents, summed at the image size, to features
            post.insert(0, nn.Conv2d(cfg.latent_width, bottom, 1))
        self.out = nn.Sequential(*post, nn.Conv2d(bottom, self.output.channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].bias)
        self.cond_at = nn.ModuleDict()  # what is added to the state after a scale change, by size
        if cfg.condition_on_last:
            for layer in list(self.layers)[:-1]:
                if layer.out_size is not None:
                    c_out = layer.state[-1].last.out_channels
                    self.cond_at[str(layer.out_size)] = self.conditioning(c_out, layer.out_size)

    def conditioning(self, c_out: int, size: int) -> nn.Module:
        """The top latent to a state of c_out channels (nearest upsampling, then a 1x1 conv)."""
        return nn.Sequential(nn.Upsample(size=size, mode="nearest"),
                             nn.Conv2d(self.cfg.latent_width, c_out, 1))  # fmt: skip

    # --- hooks a context family (DCT-VAE, DVP-VAE) overrides ------------------------------------
    def prior_condition_channels(self) -> int:
        """Channels every prior net reads beside the state (DVP-VAE: the context image's)."""
        return 0

    def layer_condition(self, context: Context, s: Tensor) -> Tensor | None:
        """What the prior net of the layer whose input state is ``s`` reads beside it."""
        return None

    def context_log_weight(self, context: Context) -> Tensor | float:
        """log p(u) - log q(u | x) of a stochastic context in one pass's weight (0 without)."""
        return 0.0

    def initialise(self, x_train: Tensor) -> None:
        """Data-dependent initialisation before the first step (none for the plain ladder)."""

    def top(self, s: Tensor, x: Tensor | None, n: int, terms: bool) -> tuple[Tensor, Context]:
        """The state before the first latent layer and the context (none here); with ``terms``
        the context's -log p(u) bound too."""
        return s, Context()

    def condition(self, s: Tensor, context: Context, scale_changed: bool) -> Tensor:
        """After a scale change (with condition_on_last): the state plus the conditioning."""
        if scale_changed and self.cfg.condition_on_last:
            return s + self.cond_at[str(s.shape[-1])](context.condition)
        return s

    # --- the pass ------------------------------------------------------------------------------
    def encoder_input(self, x: Tensor) -> Tensor:
        return (255.0 * x - self.cfg.input_mean) / self.cfg.input_std

    def likelihood(self, out: Tensor):
        return self.output.distribution(out)

    def log_px_z(self, out: Tensor, x: Tensor) -> Tensor:
        return self.output.log_prob(out, x)

    def decode(self, x: Tensor | None, n: int, temperature: float = 1.0, terms: bool = True):
        """One top-down pass: (likelihood parameters, layers, context). With x, every latent
        from q (encoding); without, n draws from the prior."""
        feats = self.encoder(self.encoder_input(x))[::-1] if x is not None else None
        s = self.s_top.expand(n, -1, -1, -1)
        s, context = self.top(s, x, n, terms and x is not None)
        layers = []
        for i, block in enumerate(self.layers):
            size = s.shape[-1]
            cond = self.layer_condition(context, s)
            s, layer = block(s, None if feats is None else feats[i], temperature, cond)
            layers.append(layer)
            if context.condition is None:  # the top latent, unless a context is set
                context.condition = layer.z
            if i + 1 < len(self.layers):
                s = self.condition(s, context, s.shape[-1] != size)
        if self.cfg.aggregate_latents:
            side = self.x_shape[-1]
            ups = [F.interpolate(layer.z, size=side, mode="bilinear") for layer in layers]
            s = torch.stack(ups).sum(0) / math.sqrt(len(layers))
        return self.out(s), layers, context

    def forward(self, x: Tensor) -> Terms:
        out, layers, context = self.decode(x, x.shape[0])
        extras = {f"kl_z{i}": layer.kl for i, layer in enumerate(layers)}
        kl = torch.stack([layer.kl for layer in layers]).sum(0)
        if context.nll_bound is not None:
            extras["context_nll"] = context.nll_bound
            kl = kl + context.nll_bound
        return Terms(log_px_z=self.log_px_z(out, x), kl=kl, extras=extras)

    def log_weight(self, x: Tensor) -> Tensor:
        """One full pass's log importance weight [B] (or its ELBO, iwae_weights="authors")."""
        out, layers, context = self.decode(x, x.shape[0], terms=False)
        log_w = self.log_px_z(out, x) + self.context_log_weight(context)
        for layer in layers:
            if self.cfg.iwae_weights == "authors":
                log_w = log_w - layer.kl
            else:
                log_w = (log_w + normal_log_prob(layer.z, *layer.p)
                         - normal_log_prob(layer.z, *layer.q))  # fmt: skip
        return log_w

    @torch.no_grad()
    def log_likelihood(self, x: Tensor, k: int, max_rows: int = DEFAULT_MAX_ROWS) -> Tensor:
        """log (1/k) sum_k w_k over k full stochastic passes [B]
        (docs/specs/hierarchical.md#6-evaluation), chunked over k; always of the evaluation-mode
        model (no dropout, no context dither), whatever its mode."""
        chunk = max(1, max_rows // x.shape[0])
        was_training = self.training
        self.eval()

        def log_w(c: int) -> Tensor:
            rows = x.repeat(c, *([1] * (x.dim() - 1)))
            return self.log_weight(rows).view(c, x.shape[0])

        try:
            return streaming_iwae(log_w, k, chunk) + self.context_log_prob(x)
        finally:
            self.train(was_training)

    def context_log_prob(self, x: Tensor) -> Tensor | float:
        """log p(u) of a deterministic context, estimated once per image (0 without one)."""
        return 0.0

    @torch.no_grad()
    def latent_means(self, x: Tensor) -> Tensor:
        """E_q[z_l] of every layer at the sampled upper layers, flattened [B, D] (active units)."""
        _, layers, context = self.decode(x, x.shape[0], terms=False)
        means = [layer.q[0].flatten(1) for layer in layers]
        if context.u is not None and self.context_in_units:  # DCT-VAE's authors count it; not DVP's
            means.insert(0, context.u.flatten(1))
        return torch.cat(means, dim=1)

    @torch.no_grad()
    def sample(self, n: int, mean: bool = False, temperature: float = 1.0) -> Tensor:
        """n images in [0, 1] from the prior (latent stds scaled by ``temperature``); ``mean``
        gives the Bernoulli probabilities or the mixture's mean instead of a draw."""
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0 (it scales the prior's standard "
                             f"deviations; 1 = the model itself), got {temperature}")  # fmt: skip
        out, _, _ = self.decode(None, n, temperature)
        p_x = self.likelihood(out)
        return self.output.to_data(p_x.mean if mean else p_x.sample())
