"""Normalising flows on the VAE posterior sample: VAE+HF and VAE+IAF, docs/specs/vlae.md,
sections 4 and 5.

On the VAE's MLP backbone and likelihood heads (models/vae.py). z_0 ~ q_0(z|x) = N(mu, diag sigma^2)
from the encoder, z_T = f_T o ... o f_1 (z_0), each f conditioned on the encoder's last hidden
activation h, and log q(z_T|x) = log q_0(z_0|x) - sum_t log |det df_t/dz|. The KL is the
single-sample Monte-Carlo log q(z_T|x) - log p(z_T) of the paper's objective; for HF, whose
reflections only rotate q_0, KL(q(z_T|x)||p) = KL(q_0||p) exactly and HFConfig.analytic_kl (default,
as in VAEConfig) uses that closed form instead.

Householder flow (Tomczak & Welling 2016): z <- (I - 2 v v^T / |v|^2) z with v_1 = Linear(H, d)(h),
v_k = Linear_k(d, d)(v_{k-1}); volume preserving (log-det 0).
IAF (Kingma et al. 2016): a MADE per step reads [z; h] and gives (m, s); sigma = sigmoid(s),
z <- sigma * z + (1 - sigma) * m, log-det sum log sigma; z reversed between steps.

Numerics: a zero Householder vector or non-finite values give a NaN ELBO (the trainer records
"diverged"), never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Independent, kl_divergence

from models.base import DEFAULT_MAX_ROWS, Terms, streaming_iwae
from models.fields import check_choice, check_positive_int
from models.layers import vlae_init_
from models.likelihoods import LIKELIHOODS
from models.posteriors import diagonal_normal
from models.vae import VAE

IAF_SCALE_BIAS = 2.0
"""Initial bias c_s of the IAF gate logits: sigma = sigmoid(2) ~ 0.88 (authors' constant)."""


@dataclass(frozen=True)
class FlowConfig:
    latent_dim: int = 50
    """Size of z (VLAE paper: 50)."""
    hidden_dim: int = 500
    """Width of each of the 2 hidden ReLU layers of encoder and decoder (VLAE paper: 500)."""
    likelihood: str = "gaussian"
    """p(x|z): 'gaussian' (one learned variance; continuous data) or 'bernoulli' (binary)."""
    flows: int = 4
    """T: number of flow steps applied to the posterior sample (authors' n_flow: 4)."""
    fused_head_init: bool = False
    """Initialise the [mean; log-variance] head as one layer of fan-out 2z (this project's code
    before 2026-12-02), not as the authors' two layers of fan-out z each (the default)."""

    def __post_init__(self):
        check_positive_int("latent_dim", self.latent_dim, "the size of z")
        check_positive_int("hidden_dim", self.hidden_dim, "the hidden layers' width")
        check_choice("likelihood", self.likelihood, tuple(sorted(LIKELIHOODS)), "p(x|z)")
        check_positive_int("flows", self.flows, "T, the number of flow steps")


@dataclass(frozen=True)
class HFConfig(FlowConfig):
    """VAE+HF: FlowConfig's fields; ``flows`` Householder reflections."""

    analytic_kl: bool = True
    """KL(q_0||p) in closed form, which is exactly KL(q(z_T|x)||p): the reflections are an
    x-dependent rotation and p(z) = N(0, I) is isotropic. False: the paper's single-sample
    log q_0(z_0|x) - log p(z_T). Same default as VAEConfig."""


@dataclass(frozen=True)
class IAFConfig(FlowConfig):
    """VAE+IAF: FlowConfig's fields; ``flows`` IAF steps. KL: always the Monte-Carlo estimate."""

    iaf_dim: int = 500
    """Width of each MADE's single hidden layer (authors' iaf_dim: 500; need not equal H)."""
    iaf_mask_context: bool = False
    """Authors' defect: the MADE masks zero the context h, so the flow ignores x beyond z_0
    (False: h reaches every hidden unit, as intended)."""

    def __post_init__(self):
        super().__post_init__()
        check_positive_int("iaf_dim", self.iaf_dim, "the MADE hidden width")

    @property
    def analytic_kl(self) -> bool:
        """IAF has no closed-form KL: the Monte-Carlo log q(z_T|x) - log p(z_T)."""
        return False


class HouseholderFlow(nn.Module):
    """T reflections z <- z - 2 v (v . z) / |v|^2; the v_k depend on h only
    (docs/specs/vlae.md#4-householder-flow)."""

    def __init__(self, context_dim: int, latent_dim: int, steps: int):
        super().__init__()
        self.first = nn.Linear(context_dim, latent_dim)
        self.rest = nn.ModuleList(nn.Linear(latent_dim, latent_dim) for _ in range(steps - 1))

    def forward(self, z: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """(z_T, log |det dz_T/dz_0| = 0); z [..., B, d] broadcasts against h [B, H]."""
        v = self.first(h)
        for k in range(len(self.rest) + 1):
            if k:
                v = self.rest[k - 1](v)
            z = z - 2 * v * ((z * v).sum(-1, keepdim=True) / v.square().sum(-1, keepdim=True))
        return z, z.new_zeros(z.shape[:-1])


class MADE(nn.Module):
    """One IAF step's autoregressive network: [z; h] -> PReLU hidden -> (m, s)
    (docs/specs/vlae.md#5-inverse-autoregressive-flow).

    Degrees: z_i has degree i in 1..d, hidden unit k a degree m(k) drawn from 1..d-1 (from torch's
    seeded generator; masks are buffers, saved in checkpoints). M_W[k, i] = [m(k) >= i],
    M_V[i, k] = [i > m(k)]: output i sees only z_<i. The context h reaches every hidden unit.
    """

    def __init__(self, latent_dim: int, context_dim: int, width: int, mask_context: bool):
        super().__init__()
        d = latent_dim
        degrees = torch.randint(1, d, (width,)) if d > 1 else torch.zeros(width, dtype=torch.long)
        inputs = torch.arange(1, d + 1)
        self.register_buffer("mask_w", (degrees[:, None] >= inputs[None, :]).float())
        self.register_buffer("mask_v", (inputs[:, None] > degrees[None, :]).float())
        self.w_z = nn.Linear(d, width, bias=False)
        self.w_h = None if mask_context else nn.Linear(context_dim, width, bias=False)
        self.b = nn.Parameter(torch.empty(width))
        self.act = nn.PReLU()
        self.v_m, self.v_s = nn.Linear(width, d), nn.Linear(width, d)
        vlae_init_(self)
        nn.init.normal_(self.b)
        nn.init.normal_(self.v_m.bias)
        nn.init.constant_(self.v_s.bias, IAF_SCALE_BIAS)

    def context(self, h: Tensor) -> Tensor:
        """The hidden layer's input from h, plus its bias: computed once per example."""
        return self.b if self.w_h is None else self.w_h(h) + self.b

    def forward(self, z: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        a = self.act(F.linear(z, self.w_z.weight * self.mask_w) + context)
        m = F.linear(a, self.v_m.weight * self.mask_v, self.v_m.bias)
        s = F.linear(a, self.v_s.weight * self.mask_v, self.v_s.bias)
        return m, s


class IAFFlow(nn.Module):
    """T gated IAF steps; z reversed before every step but the first, and back if T is even."""

    def __init__(self, latent_dim: int, context_dim: int, width: int, steps: int, mask_context):
        super().__init__()
        self.steps = nn.ModuleList(
            MADE(latent_dim, context_dim, width, mask_context) for _ in range(steps)
        )

    def forward(self, z: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """(z_T, log |det dz_T/dz_0| = sum_t sum_i log sigma_ti); z [..., B, d], h [B, H]."""
        log_det = z.new_zeros(z.shape[:-1])
        for t, made in enumerate(self.steps):
            if t:
                z = z.flip(-1)
            m, s = made(z, made.context(h))
            sigma = torch.sigmoid(s)
            z = sigma * z + (1 - sigma) * m
            log_det = log_det + F.logsigmoid(s).sum(-1)
        if len(self.steps) % 2 == 0:
            z = z.flip(-1)
        return z, log_det


class FlowVAE(VAE):
    """VAE whose posterior sample is pushed through ``self.flow(z, h) -> (z_T, log_det)``."""

    flow: nn.Module

    def encode(self, x: Tensor) -> tuple[Tensor, Independent]:
        """The encoder's last hidden activation h and q_0(z|x)."""
        h = self.encoder(x.flatten(1))
        return h, diagonal_normal(*self.q_head(h).chunk(2, dim=-1))

    def flow_log_w(self, x: Tensor, h: Tensor, q_0, z_0: Tensor) -> tuple[Tensor, Tensor]:
        """log p(x|z_T) and the Monte-Carlo KL log q(z_T|x) - log p(z_T) for samples z_0 of q_0."""
        z, log_det = self.flow(z_0, h)
        log_q = q_0.log_prob(z_0) - log_det
        return self.likelihood(z).log_prob(x), log_q - self.prior().log_prob(z)

    def forward(self, x: Tensor) -> Terms:
        h, q_0 = self.encode(x)
        log_px_z, kl = self.flow_log_w(x, h, q_0, q_0.rsample())
        if self.analytic_kl:  # set only where exact: HF's rotations (see HFConfig.analytic_kl)
            kl = kl_divergence(q_0, self.prior())
        return Terms(log_px_z=log_px_z, kl=kl)

    @torch.no_grad()
    def log_likelihood(self, x: Tensor, k: int, max_rows: int = DEFAULT_MAX_ROWS) -> Tensor:
        """IWAE estimate with the flow's q(z_T|x) as proposal, the encoder run once."""
        h, q_0 = self.encode(x)

        def log_w(c: int) -> Tensor:
            log_px_z, kl = self.flow_log_w(x, h, q_0, q_0.sample((c,)))
            return log_px_z - kl

        return streaming_iwae(log_w, k, chunk=max(1, max_rows // x.shape[0]))

    def posterior(self, x: Tensor):
        raise NotImplementedError(
            "q(z_T|x) of a flow has a density only at its own samples: use forward() (ELBO terms) "
            "or log_likelihood(); encode(x) gives q_0(z|x)"
        )


class VAEHF(FlowVAE):
    """VAE+HF (docs/specs/vlae.md#4-householder-flow)."""

    Config = HFConfig

    def __init__(self, cfg: HFConfig, x_shape: tuple[int, ...]):
        super().__init__(cfg, x_shape)
        self.flow = HouseholderFlow(cfg.hidden_dim, cfg.latent_dim, cfg.flows)
        vlae_init_(self.flow)


class VAEIAF(FlowVAE):
    """VAE+IAF (docs/specs/vlae.md#5-inverse-autoregressive-flow)."""

    Config = IAFConfig

    def __init__(self, cfg: IAFConfig, x_shape: tuple[int, ...]):
        super().__init__(cfg, x_shape)
        self.flow = IAFFlow(
            cfg.latent_dim, cfg.hidden_dim, cfg.iaf_dim, cfg.flows, cfg.iaf_mask_context
        )
