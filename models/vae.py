"""The Gaussian VAE (Kingma & Welling 2014) on the VLAE paper's MLP backbone.

Encoder x -> Linear(D, H) -> ReLU -> Linear(H, H) -> ReLU -> (mu, log sigma^2) heads;
decoder z -> Linear(z, H) -> ReLU -> Linear(H, H) -> ReLU -> Linear(H, D)  (Park et al. 2019;
docs/specs/vlae.md#1-shared-backbone). Prior N(0, I), diagonal Gaussian posterior.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from models.base import LatentVariableModel
from models.fields import check_choice
from models.layers import flat_dim, mlp, vlae_init_
from models.likelihoods import LIKELIHOODS, likelihood_head


@dataclass(frozen=True)
class VAEConfig:
    latent_dim: int = 50
    """Size of z (VLAE paper: 50)."""
    hidden_dim: int = 500
    """Width of each of the 2 hidden ReLU layers of encoder and decoder (VLAE paper: 500)."""
    likelihood: str = "gaussian"
    """p(x|z): 'gaussian' (one learned variance; continuous data) or 'bernoulli' (binary)."""
    analytic_kl: bool = True
    """Closed-form KL(q||p); False: the single-sample Monte-Carlo KL of the VLAE code."""
    fused_head_init: bool = False
    """Initialise the [mean; log-variance] head as one layer of fan-out 2z (this project's code
    before 2026-12-02), not as the authors' two layers of fan-out z each (the default)."""

    def __post_init__(self):
        if self.latent_dim < 1 or self.hidden_dim < 1:
            raise ValueError(
                f"latent_dim and hidden_dim must be >= 1, got {self.latent_dim}, {self.hidden_dim}"
            )
        check_choice("likelihood", self.likelihood, tuple(sorted(LIKELIHOODS)), "p(x|z)")


class VAE(LatentVariableModel):
    Config = VAEConfig

    def __init__(self, cfg: VAEConfig, x_shape: tuple[int, ...]):
        super().__init__()
        d, h, z = flat_dim(x_shape), cfg.hidden_dim, cfg.latent_dim
        self.analytic_kl = cfg.analytic_kl
        self.encoder = mlp([d, h, h], final_activation=True)
        self.q_head = nn.Linear(h, 2 * z)  # mean and log-variance, one matmul
        self.decoder = mlp([z, h, h, d])
        self.p_x = likelihood_head(cfg.likelihood, x_shape)
        self.register_buffer("p_z_loc", torch.zeros(z), persistent=False)
        vlae_init_(self, fused=None if cfg.fused_head_init else {self.q_head: 2})

    def posterior(self, x: Tensor) -> Distribution:
        mu, log_var = self.q_head(self.encoder(x.flatten(1))).chunk(2, dim=-1)
        return Independent(Normal(mu, torch.exp(0.5 * log_var), validate_args=False), 1)

    def prior(self) -> Distribution:
        loc = self.p_z_loc
        return Independent(Normal(loc, torch.ones_like(loc), validate_args=False), 1)

    def likelihood(self, z: Tensor) -> Distribution:
        return self.p_x(self.decoder(z))

    def initialise(self, x_train: Tensor) -> None:
        self.p_x.initialise(x_train)
