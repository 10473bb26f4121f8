"""The model contract every family implements, and the one importance-sampling estimator.

A family is an ``nn.Module`` built from its own frozen config dataclass and the data shape only:

    forward(x) -> Terms            per-example log p(x|z) and KL, ELBO = log_px_z - kl
    log_likelihood(x, k) -> [B]    importance-sampled estimate of log p(x), chunked over k
    sample(n) -> x                 draws from the model
    latent_means(x) -> [B, D]      E_q[z] of every latent unit, flattened (for active units);
                                   optional: absent, or NotImplementedError, when q has no mean

Single-latent families only say how to encode (``posterior``), what the prior is, and how to decode
(``likelihood`` and ``decode``); everything else here is shared.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, kl_divergence

# Rows (examples x importance samples) pushed through the decoder at once in log_likelihood.
# 2**13 rows of a 784-pixel image are a 26 MB float32 tensor, under glibc's 32 MB mmap threshold:
# the CPU reuses heap memory instead of page-faulting fresh pages for every chunk (2**15 rows made
# the k=5000 evaluation 1.5-1.8x slower on the CPU). Still a large enough GEMM for a GPU.
DEFAULT_MAX_ROWS = 2**13


@dataclass
class Terms:
    """Per-example loss terms, each of shape [B]. ``extras`` holds family-specific named terms."""

    log_px_z: Tensor
    kl: Tensor
    extras: dict[str, Tensor] = field(default_factory=dict)

    @property
    def elbo(self) -> Tensor:
        return self.log_px_z - self.kl


def streaming_iwae(log_w_chunk: Callable[[int], Tensor], k: int, chunk: int) -> Tensor:
    """log (1/k) sum_i w_i from chunks of log-weights, never holding all k at once.

    ``log_w_chunk(c)`` returns log-weights of shape [c, B] for c fresh importance samples.
    The IWAE bound of Burda et al. (2016), eq. 8; a running logsumexp keeps memory at O(chunk x B).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1 importance samples, got {k}")
    total = None
    done = 0
    while done < k:
        c = min(chunk, k - done)
        lse = torch.logsumexp(log_w_chunk(c), dim=0)
        total = lse if total is None else torch.logaddexp(total, lse)
        done += c
    return total - math.log(k)


class LatentVariableModel(nn.Module):
    """Shared machinery of single-latent families: ELBO terms and the generic IWAE estimator.

    Subclasses implement ``posterior(x) -> q(z|x)``, ``prior() -> p(z)`` and
    ``likelihood(z) -> p(x|z)`` (each a ``torch.distributions.Distribution`` whose event covers one
    example), and set ``analytic_kl`` when KL(q || p) has a registered closed form they want used.
    """

    analytic_kl: bool = True

    def posterior(self, x: Tensor) -> Distribution:
        raise NotImplementedError

    def prior(self) -> Distribution:
        raise NotImplementedError

    def likelihood(self, z: Tensor) -> Distribution:
        raise NotImplementedError

    def initialise(self, x_train: Tensor) -> None:
        """Data-dependent initialisation before the first step (e.g. an output variance)."""

    def forward(self, x: Tensor) -> Terms:
        q_z = self.posterior(x)
        z = q_z.rsample()
        log_px_z = self.likelihood(z).log_prob(x)
        p_z = self.prior()
        if self.analytic_kl:
            kl = kl_divergence(q_z, p_z)
        else:  # single-sample Monte-Carlo KL, as in the VLAE paper's objective
            kl = q_z.log_prob(z) - p_z.log_prob(z)
        return Terms(log_px_z=log_px_z, kl=kl)

    @torch.no_grad()
    def log_likelihood(self, x: Tensor, k: int, max_rows: int = DEFAULT_MAX_ROWS) -> Tensor:
        """Importance-sampled log p(x) with q(z|x) as proposal (Burda et al. 2016), shape [B]."""
        q_z = self.posterior(x)
        p_z = self.prior()

        def log_w(c: int) -> Tensor:
            z = q_z.sample((c,))  # [c, B, d]
            return self.likelihood(z).log_prob(x) + p_z.log_prob(z) - q_z.log_prob(z)

        return streaming_iwae(log_w, k, chunk=max(1, max_rows // x.shape[0]))

    @torch.no_grad()
    def latent_means(self, x: Tensor) -> Tensor:
        """E_q[z|x] of every latent unit, flattened to [B, D]: the statistic of active units.

        A hierarchical family overrides it with each layer's mean given the sampled layers above
        (one stochastic pass), concatenated. A posterior without a closed-form mean (a flow's
        q(z_T|x)) raises NotImplementedError, and the evaluation reports no active units.
        """
        return self.posterior(x).mean.reshape(x.shape[0], -1)

    @torch.no_grad()
    def sample(self, n: int, mean: bool = False) -> Tensor:
        """n draws x ~ p(x|z) p(z); with ``mean`` the decoder's mean image instead of a draw."""
        z = self.prior().sample((n,))
        p_x = self.likelihood(z)
        return p_x.mean if mean else p_x.sample()
