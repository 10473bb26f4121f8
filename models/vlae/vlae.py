"""VLAE: the Variational Laplace Autoencoder (Park, Kim & Kim, ICML 2019),
docs/specs/vlae.md#6-vlae.

On the VAE's MLP backbone and likelihood heads (models/vae.py). The encoder's mean mu_0 starts an
iterative mode search of log p(x|z) + log p(z) that linearises the decoder with its Jacobian J:

    Lambda_t = J_t^T W_t J_t + I,   mu*_t = mu_t + Lambda_t^-1 (J_t^T r_t - mu_t),
    mu_{t+1} = (1 - eta_t) mu_t + eta_t mu*_t,   t = 0 .. T-1,

Gaussian output (sigma^2 = exp(log_var)): W = I / sigma^2, r = (x - g(mu_t)) / sigma^2; mu*_t is
then the exact posterior mode of the linearised model, docs/specs/vlae.md#62-mode-search's
Lambda^-1 J^T (x - b_t) / sigma^2 with b_t = g(mu_t) - J_t mu_t, rearranged.
Bernoulli output (J of the logits): p = sigmoid clamped to [1e-5, 1 - 1e-5],
W = diag(p (1 - p) + 1e-5), r = x - p; mu*_t is a Newton step on log p(x|z) + log p(z).
q(z|x) = N(mu_T, Lambda_T^-1), Lambda_T recomputed at mu_T
(docs/specs/vlae.md#63-posterior-and-elbo). Gradients flow through the unrolled updates, the solves
and the Jacobians (no stop-gradient, as the paper and its code do).

Numerics: Lambda >= I is never singular in exact arithmetic. Non-finite values (an overflowing
Jacobian, sigma^2 -> 0) make its Cholesky factorisation fail; those examples get a NaN factor and
hence a NaN ELBO, which the trainer records as "diverged". No exception is raised.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.fields import check_choice, check_positive_int
from models.layers import vlae_init_
from models.likelihoods import LIKELIHOODS, BernoulliHead, GaussianHead
from models.posteriors import PrecisionGaussian
from models.vae import VAE, VAEConfig

ETA_SCHEDULES = ("harmonic", "geometric")
BERNOULLI_CLAMP = 1e-5
"""p is clamped to [1e-5, 1 - 1e-5] and 1e-5 is added to p (1 - p) in W (authors' constants)."""


@dataclass(frozen=True)
class VLAEConfig(VAEConfig):
    """VAEConfig's fields (analytic_kl: closed-form KL of the full-covariance Gaussian to the prior;
    False: the paper's single-sample log q(z|x) - log p(z)) and the mode search's."""

    updates: int = 4
    """T: number of mode-search updates from the encoder's mean (authors' n_update: 4)."""
    update_lr: float = 0.5
    """eta_0 in (0, 1] of the damped update (authors' update_lr: 0.5; 1 = undamped first step)."""
    vlae_eta_schedule: str = "harmonic"
    """eta_t: 'harmonic' eta_0 / (t + 1) (authors' code at HEAD) or 'geometric' eta_0 * 0.9^t
    (their first commit's 0.9^t with update_lr=1)."""

    def __post_init__(self):
        super().__post_init__()
        check_choice("likelihood", self.likelihood, tuple(sorted(LIKELIHOODS)), "p(x|z)")
        check_positive_int("updates", self.updates, "T, the number of mode-search updates")
        if not 0.0 < self.update_lr <= 1.0:
            raise ValueError(
                f"update_lr (eta_0 of the damped mode update) must be in (0, 1], got "
                f"{self.update_lr!r}; the authors use update_lr=0.5"
            )
        check_choice("vlae_eta_schedule", self.vlae_eta_schedule, ETA_SCHEDULES, "eta_t")


def tangent_forward(layers: nn.Sequential, z: Tensor) -> tuple[Tensor, Tensor]:
    """Output and transposed Jacobian of a Sequential of Linear and ReLU layers, batched.

    Forward mode over the d latent directions: returns f(z) [B, n] and J^T [B, d, n]. Each Linear
    maps all B*d tangents in one matmul (as a batch of B*d inputs); ReLU zeroes those of inactive
    units (J = W_L diag(r) ... diag(r) W_1, docs/specs/vlae.md#61-decoder-jacobian).
    """
    out, jac_t = z, None
    for layer in layers:
        if isinstance(layer, nn.Linear):
            out = layer(out)
            w_t = layer.weight.mT
            jac_t = w_t.expand(*z.shape[:-1], *w_t.shape) if jac_t is None else jac_t @ w_t
        elif isinstance(layer, nn.ReLU):
            active = out > 0
            out = F.relu(out)
            jac_t = jac_t * active.unsqueeze(-2)
        else:
            raise TypeError(f"tangent_forward supports Linear and ReLU layers, got {layer!r}")
    if jac_t is None:  # an empty Sequential: the identity
        jac_t = torch.eye(z.shape[-1], dtype=z.dtype, device=z.device).expand(*z.shape, -1)
    return out, jac_t


def gaussian_curvature(body_t: Tensor, head: nn.Linear, out: Tensor, x: Tensor, log_var: Tensor):
    """J^T J / sigma^2 [B, d, d] and J^T (x - g) / sigma^2 [B, d], with J = W_head (body Jacobian).

    J^T J = B^T (W^T W) B uses the [H, H] Gram matrix of the last layer: cheaper than forming J
    [B, D, d] when D > H (784 pixels, 500 hidden units).
    """
    precision = torch.exp(-log_var)
    gram = head.weight.mT @ head.weight
    jtj = (body_t @ gram) @ body_t.mT
    jtr = (body_t @ ((x - out) @ head.weight).unsqueeze(-1)).squeeze(-1)
    return jtj * precision, jtr * precision


def bernoulli_curvature(body_t: Tensor, head: nn.Linear, out: Tensor, x: Tensor, log_var=None):
    """J^T diag(p (1 - p) + 1e-5) J [B, d, d] and J^T (x - p) [B, d]; J: Jacobian of the logits."""
    p = torch.sigmoid(out).clamp(BERNOULLI_CLAMP, 1 - BERNOULLI_CLAMP)
    jac_t = body_t @ head.weight.mT  # [B, d, D]
    weights = p * (1 - p) + BERNOULLI_CLAMP
    jwj = (jac_t * weights.unsqueeze(-2)) @ jac_t.mT
    jtr = (jac_t @ (x - p).unsqueeze(-1)).squeeze(-1)
    return jwj, jtr


CURVATURES = {GaussianHead: gaussian_curvature, BernoulliHead: bernoulli_curvature}


def cholesky_or_nan(a: Tensor) -> Tensor:
    """Lower Cholesky factor of a batch of SPD matrices; NaN for those that fail (non-finite)."""
    chol, info = torch.linalg.cholesky_ex(a)
    bad = (info != 0) | ~torch.isfinite(a).all(-1).all(-1)
    return torch.where(bad[..., None, None], torch.full_like(chol, float("nan")), chol)


class VLAE(VAE):
    """VAE backbone + Laplace posterior at the iteratively searched mode
    (docs/specs/vlae.md#6-vlae).

    ``posterior(x)`` is the full-covariance q(z|x) = N(mu_T, Lambda^-1) as a ``PrecisionGaussian``,
    so the shared ELBO (``forward``) and IWAE estimator (``log_likelihood``) apply unchanged.
    See the module docstring for the numerics (NaN, never an exception).
    """

    Config = VLAEConfig

    def __init__(self, cfg: VLAEConfig, x_shape: tuple[int, ...]):
        super().__init__(cfg, x_shape)
        # The encoder's log-variance head is unused by VLAE (docs/specs/vlae.md#62-mode-search): a
        # mean-only head.
        self.q_head = nn.Linear(cfg.hidden_dim, cfg.latent_dim)
        vlae_init_(self.q_head)
        self.updates, self.update_lr = cfg.updates, cfg.update_lr
        self.geometric = cfg.vlae_eta_schedule == "geometric"
        self.curvature = CURVATURES[type(self.p_x)]

    def eta(self, t: int) -> float:
        """Damping of update t = 0 .. T-1 (docs/specs/vlae.md#62-mode-search)."""
        return self.update_lr * 0.9**t if self.geometric else self.update_lr / (t + 1)

    def laplace(self, x_flat: Tensor, mu: Tensor) -> tuple[Tensor, Tensor]:
        """Cholesky factor U of Lambda at mu [B, d, d] and the full step Lambda^-1 (J^T r - mu)."""
        body, head = self.decoder[:-1], self.decoder[-1]
        hidden, body_t = tangent_forward(body, mu)
        out = head(hidden)
        log_var = getattr(self.p_x, "log_var", None)
        jwj, jtr = self.curvature(body_t, head, out, x_flat, log_var)
        eye = torch.eye(mu.shape[-1], dtype=mu.dtype, device=mu.device)
        chol = cholesky_or_nan(jwj + eye)
        step = torch.cholesky_solve((jtr - mu).unsqueeze(-1), chol).squeeze(-1)
        return chol, step

    def mode(self, x: Tensor) -> Tensor:
        """mu_T: T damped Gauss-Newton (Gaussian) / Newton (Bernoulli) updates from mu_0."""
        x_flat = x.flatten(1)
        mu = self.q_head(self.encoder(x_flat))
        for t in range(self.updates):
            _, step = self.laplace(x_flat, mu)
            mu = mu + self.eta(t) * step  # = (1 - eta_t) mu_t + eta_t mu*_t
        return mu

    def posterior(self, x: Tensor) -> PrecisionGaussian:
        mu = self.mode(x)
        chol, _ = self.laplace(x.flatten(1), mu)
        return PrecisionGaussian(mu, chol)
