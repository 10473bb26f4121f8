"""SA-VAE: the semi-amortised VAE (Kim et al. 2018) as the VLAE paper's baseline,
docs/specs/vlae.md#3-sa-vae.

On the VAE's MLP backbone and likelihood heads (models/vae.py). The encoder's lambda_0 = (mu,
log sigma^2) is refined by T steps of stochastic variational inference, each ascending a
single-sample ELBO of the example:

    g_k = grad_lambda ELBO(lambda_{k-1}; x)   (per example; g_mu and g_logvar each clipped to
                                                L2 norm <= 5 per example)
    lambda_k = lambda_{k-1} + alpha g_k,       k = 1 .. T,

and q(z|x) = N(mu_T, diag exp(logvar_T)). In training the steps stay in the autograd graph
(second-order terms, as the authors' code does), so the loss trains encoder and decoder through all
T steps. Evaluation (no grad: validation ELBO, importance sampling) runs the same steps with the
graph dropped after each one.

The authors' code differs in three ways, each changing the reported SA-VAE numbers
(docs/specs/vlae.md, sections 3 and 11: SA-VAE below the VAE): the ``savae_*`` switches of
``SAVAEConfig`` reproduce them. Numerics: non-finite gradients propagate to a NaN ELBO (the trainer
records "diverged").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Distribution, kl_divergence

from models.base import DEFAULT_MAX_ROWS, streaming_iwae
from models.fields import check_choice, check_positive_int
from models.likelihoods import LIKELIHOODS
from models.posteriors import diagonal_normal
from models.vae import VAE, VAEConfig

SVI_CLIP = 5.0
"""Each of g_mu and g_logvar is clipped to this L2 norm per example (authors' constant)."""


@dataclass(frozen=True)
class SAVAEConfig(VAEConfig):
    """VAEConfig's fields (analytic_kl also used inside the SVI steps) and the refinement's."""

    svi_steps: int = 4
    """T: SVI refinement steps of (mu, log sigma^2) (authors' n_svi_step: 4)."""
    svi_lr: float = 5e-4
    """alpha, the step size on the per-example ELBO gradient (authors' default 5e-4; the paper's
    grid {1.0, 0.1, 1e-3, 5e-4, 1e-4})."""
    savae_repo_sign: bool = False
    """Authors' sign: lambda += alpha grad(-ELBO), i.e. descent on the ELBO (False: ascent)."""
    savae_batch_mean_grad: bool = False
    """Authors' gradient of the batch-mean loss: steps divided by the batch size in ``forward``
    (training, validation), not in ``log_likelihood`` (their importance sampling runs batch 1)."""
    savae_squared_norm_clip: bool = False
    """Authors' clip (their utils.clip_grad_norm) g / max(1, |g|^2 / 5), |g|^2 each example's
    squared L2 norm (their sum over the last axis; False: per-example L2 norm clipped to 5)."""

    def __post_init__(self):
        super().__post_init__()
        check_choice("likelihood", self.likelihood, tuple(sorted(LIKELIHOODS)), "p(x|z)")
        check_positive_int("svi_steps", self.svi_steps, "T, the number of SVI steps")
        if not self.svi_lr > 0:
            raise ValueError(f"svi_lr (the SVI step size) must be > 0, got {self.svi_lr!r}")


class SAVAE(VAE):
    """VAE whose q(z|x) is the encoder's output refined by T SVI steps (see the module docs)."""

    Config = SAVAEConfig

    def __init__(self, cfg: SAVAEConfig, x_shape: tuple[int, ...]):
        super().__init__(cfg, x_shape)
        self.svi_steps, self.svi_lr = cfg.svi_steps, cfg.svi_lr
        self.sign = -1.0 if cfg.savae_repo_sign else 1.0
        self.batch_mean_grad = cfg.savae_batch_mean_grad
        self.squared_norm_clip = cfg.savae_squared_norm_clip

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """lambda_0 = (mu, log sigma^2) from the encoder."""
        return self.q_head(self.encoder(x.flatten(1))).chunk(2, dim=-1)

    def svi_elbo(self, x: Tensor, mu: Tensor, log_var: Tensor) -> Tensor:
        """Single-sample ELBO per example of q = N(mu, diag exp(log_var)), the SVI objective."""
        q_z = diagonal_normal(mu, log_var)
        z = q_z.rsample()
        p_z = self.prior()
        kl = kl_divergence(q_z, p_z) if self.analytic_kl else q_z.log_prob(z) - p_z.log_prob(z)
        return self.likelihood(z).log_prob(x) - kl

    def clip(self, g: Tensor) -> Tensor:
        """Per-example L2 clip to 5, or the authors' per-example squared-norm division."""
        if self.squared_norm_clip:
            return g * (SVI_CLIP / g.square().sum(-1, keepdim=True).clamp(min=SVI_CLIP))
        # clamp before rsqrt: no division by zero and a finite second derivative at g = 0
        return g * (SVI_CLIP * g.square().sum(-1, keepdim=True).clamp(min=SVI_CLIP**2).rsqrt())

    def refine(
        self, x: Tensor, mu: Tensor, log_var: Tensor, grad_scale: float = 1.0
    ) -> tuple[Tensor, Tensor]:
        """lambda_T after T SVI steps from (mu, log_var), differentiable when grad is enabled."""
        differentiable = torch.is_grad_enabled() and (mu.requires_grad or log_var.requires_grad)
        with torch.enable_grad():  # the steps need gradients, also under no_grad evaluation
            for _ in range(self.svi_steps):
                if not differentiable:
                    mu, log_var = mu.detach().requires_grad_(), log_var.detach().requires_grad_()
                elbo = self.svi_elbo(x, mu, log_var)
                grads = torch.autograd.grad(
                    elbo.sum(), (mu, log_var), create_graph=differentiable
                )  # the sum's gradient is each example's own: examples do not interact
                g_mu, g_log_var = (self.clip(g * grad_scale) for g in grads)
                mu = mu + self.sign * self.svi_lr * g_mu
                log_var = log_var + self.sign * self.svi_lr * g_log_var
        if not differentiable:
            mu, log_var = mu.detach(), log_var.detach()
        return mu, log_var

    def posterior(self, x: Tensor) -> Distribution:
        scale = 1.0 / x.shape[0] if self.batch_mean_grad else 1.0
        return diagonal_normal(*self.refine(x, *self.encode(x), grad_scale=scale))

    @torch.no_grad()
    def log_likelihood(self, x: Tensor, k: int, max_rows: int = DEFAULT_MAX_ROWS) -> Tensor:
        """IWAE estimate with the refined q as proposal, refined once per example (steps never
        scaled by the batch size: the authors' importance sampling runs one example at a time)."""
        q_z = diagonal_normal(*self.refine(x, *self.encode(x)))
        p_z = self.prior()

        def log_w(c: int) -> Tensor:
            z = q_z.sample((c,))
            return self.likelihood(z).log_prob(x) + p_z.log_prob(z) - q_z.log_prob(z)

        return streaming_iwae(log_w, k, chunk=max(1, max_rows // x.shape[0]))
