"""Gaussian posteriors of the VLAE paper's families (Park, Kim & Kim, ICML 2019).

``diagonal_normal``: the encoder's q(z|x) = N(mu, diag exp(log_var)) (VAE, SA-VAE, HF, IAF base).
``PrecisionGaussian``: N(loc, Lambda^-1) held by the Cholesky factor U of its precision,
Lambda = U U^T (VLAE's Laplace posterior, docs/specs/vlae.md#63-posterior-and-elbo). Sampling and
the density use triangular solves with U, never an explicit inverse of Lambda; its KL to a diagonal
Gaussian (the prior) is registered, so ``kl_divergence(q_z, p_z)`` and the shared IWAE estimator
work unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal, constraints, register_kl


def diagonal_normal(mu: Tensor, log_var: Tensor) -> Independent:
    """N(mu, diag exp(log_var)) with one event over the last dimension."""
    return Independent(Normal(mu, torch.exp(0.5 * log_var), validate_args=False), 1)


class PrecisionGaussian(Distribution):
    """N(loc, Lambda^-1) with Lambda = U U^T, U lower triangular with a positive diagonal.

    loc [..., d], precision_tril U [..., d, d]. A sample is loc + U^-T eps, eps ~ N(0, I), since
    U^-T U^-1 = Lambda^-1; log q(z) = -d/2 log 2pi + sum log diag U - |U^T (z - loc)|^2 / 2.
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc: Tensor, precision_tril: Tensor):
        self.loc, self.precision_tril = loc, precision_tril
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=False)

    @property
    def mean(self) -> Tensor:
        return self.loc

    @property
    def covariance_matrix(self) -> Tensor:
        return torch.cholesky_inverse(self.precision_tril)

    def rsample(self, sample_shape: torch.Size | tuple = ()) -> Tensor:
        sample_shape = torch.Size(sample_shape)
        n = math.prod(sample_shape)
        # All n draws as right-hand sides of one triangular solve per example: U^T y = eps.
        eps = torch.randn(*self.loc.shape, n, dtype=self.loc.dtype, device=self.loc.device)
        y = torch.linalg.solve_triangular(self.precision_tril.mT, eps, upper=True)  # [..., d, n]
        y = y.movedim(-1, 0).reshape(*sample_shape, *self.loc.shape)
        return self.loc + y

    def log_prob(self, value: Tensor) -> Tensor:
        u = self.precision_tril
        m = torch.einsum("...i,...ij->...j", value - self.loc, u)  # U^T (z - loc)
        half_log_det = u.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        d = self.loc.shape[-1]
        return half_log_det - 0.5 * (d * math.log(2 * math.pi) + m.square().sum(-1))

    def entropy(self) -> Tensor:
        d = self.loc.shape[-1]
        half_log_det = self.precision_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        return 0.5 * d * (1 + math.log(2 * math.pi)) - half_log_det


@register_kl(PrecisionGaussian, Independent)
def _kl_precision_gaussian_diagonal(q: PrecisionGaussian, p: Independent) -> Tensor:
    """KL(N(m_q, Lambda^-1) || N(m_p, diag s^2)) =
    1/2 [sum_i (Lambda^-1)_ii / s_i^2 + |(m_q - m_p) / s|^2 - d + 2 sum log s_i + log det Lambda].

    (Lambda^-1)_ii is the squared norm of column i of U^-1 (Lambda^-1 = U^-T U^-1).
    """
    if not isinstance(p.base_dist, Normal) or p.reinterpreted_batch_ndims != 1:
        raise NotImplementedError("KL(PrecisionGaussian || p) needs p = Independent(Normal, 1)")
    u = q.precision_tril
    eye = torch.eye(u.shape[-1], dtype=u.dtype, device=u.device)
    u_inv = torch.linalg.solve_triangular(u, eye.expand_as(u), upper=False)
    var_q = u_inv.square().sum(-2)  # diagonal of Lambda^-1
    s2 = p.base_dist.scale.square()
    log_det_precision = 2 * u.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return 0.5 * (
        (var_q / s2).sum(-1)
        + ((q.loc - p.base_dist.loc).square() / s2).sum(-1)
        - q.loc.shape[-1]
        + s2.log().sum(-1)
        + log_det_precision
    )
