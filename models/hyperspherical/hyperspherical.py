"""Hyperspherical VAEs and their Gaussian baseline (docs/specs/hyperspherical.md, sections 2-3).

    "svae"   S-VAE (Davidson et al. 2018): one von Mises-Fisher posterior on S^d, uniform prior.
    "psvae"  product-space S-VAE (Davidson et al. 2019): z = (z_1, ..., z_K), z_i on S^{d_i}.
    "nvae"   N-VAE: the Gaussian baseline of the same papers on the same MLP (not the NVAE of
             Vahdat & Kautz 2020), with a diagonal, single shared or full covariance.

Dimension convention (docs/specs/hyperspherical.md#21-dimension-convention): ``latent_dim`` is the
*manifold* dimension. A sphere S^d lives in R^(d+1), so the UAI "d = 10" S-VAE has an 11-dimensional
ambient latent, and a product of spheres (d_1, ..., d_K) feeds sum_i (d_i + 1) numbers to the
decoder. The N-VAE with latent_dim d uses R^d.

Architecture, shared by the three (docs/specs/hyperspherical.md, sections 2.2-2.3), with
``hidden_dims`` "256,128":
    encoder  x (D) -> Linear(D, 256) -> ReLU -> Linear(256, 128) -> ReLU -> heads
    vMF      loc_head:   Linear(128, sum_i (d_i + 1)), normalised per sphere  -> mu_i
             kappa_head: Linear(128, K), softplus + 1 (one kappa per sphere)  -> kappa_i
    Gaussian loc_head: Linear(128, d); scale_head: Linear(128, d | 1 | d(d+1)/2) by covariance
    decoder  z -> Linear(., 128) -> ReLU -> Linear(128, 256) -> ReLU -> Linear(256, D) -> p(x|z)
PyTorch's default initialisation (the authors document no other). The S-VAE is the product-space
S-VAE with one sphere: same module, same parameter names and shapes.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal

from models.base import LatentVariableModel
from models.fields import check_choice, check_positive_int, parse_int_list
from models.hyperspherical.concatenated import Concatenated
from models.hyperspherical.distributions import HypersphericalUniform, VonMisesFisher, sphere
from models.layers import flat_dim, mlp
from models.likelihoods import LIKELIHOODS, likelihood_head

BESSEL_RATIOS = ("exact", "approx")
COVARIANCES = ("diagonal", "single", "full")
FULL_COVARIANCE_EPS = 1e-5
"""Added to the softplus'd diagonal of the full-covariance Cholesky factor, so that it stays
invertible (log-density and KL solve with it) when softplus underflows."""


def _check_common(cfg) -> None:
    parse_int_list("hidden_dims", cfg.hidden_dims, "256,128")
    check_choice("likelihood", cfg.likelihood, tuple(sorted(LIKELIHOODS)), "p(x|z)")


# --- Configs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SVAEConfig:
    latent_dim: int = 10
    """Manifold dimension d of the sphere S^d; z lives in R^(d+1) (UAI "d = 10": 11 numbers)."""
    hidden_dims: str = "256,128"
    """Encoder hidden ReLU layer widths, comma-separated; the decoder uses them reversed."""
    likelihood: str = "bernoulli"
    """p(x|z): 'bernoulli' (binarised data, the papers) or 'gaussian' (one learned variance)."""
    bessel_ratio: str = "exact"
    """A_m(kappa) in the KL: 'exact' (UAI library) or 'approx' (product-space code,
    docs/specs/hyperspherical.md#13-bessel-ratio)."""

    def __post_init__(self):
        check_positive_int("latent_dim", self.latent_dim, "the manifold dimension d of S^d")
        _check_common(self)
        check_choice("bessel_ratio", self.bessel_ratio, BESSEL_RATIOS, "Bessel ratio A_m")

    @property
    def sphere_dims(self) -> tuple[int, ...]:
        """Manifold dimensions of the spheres: (latent_dim,)."""
        return (self.latent_dim,)

    @property
    def hidden_widths(self) -> tuple[int, ...]:
        return parse_int_list("hidden_dims", self.hidden_dims, "256,128")


@dataclass(frozen=True)
class PSVAEConfig:
    latent_dim: int = 5
    """Total manifold dimension sum_i d_i of the product of spheres."""
    spheres: str = "5"
    """Manifold dimensions d_i of the sub-spheres S^{d_i}, comma-separated, adding up to latent_dim
    (e.g. "2,2,1"); each lives in R^(d_i+1). The order does not matter (see ProductSpaceSVAE)."""
    hidden_dims: str = "256,128"
    """Encoder hidden ReLU layer widths, comma-separated; the decoder uses them reversed."""
    likelihood: str = "bernoulli"
    """p(x|z): 'bernoulli' (binarised data, the papers) or 'gaussian' (one learned variance)."""
    bessel_ratio: str = "exact"
    """A_m(kappa) in the KL: 'exact' (UAI library) or 'approx' (product-space code,
    docs/specs/hyperspherical.md#13-bessel-ratio)."""

    def __post_init__(self):
        check_positive_int("latent_dim", self.latent_dim, "the total manifold dimension")
        dims = parse_int_list("spheres", self.spheres, "2,2,1")
        if sum(dims) != self.latent_dim:
            raise ValueError(
                f"spheres {self.spheres!r} add up to {sum(dims)} but latent_dim is "
                f"{self.latent_dim}: the sphere dimensions must add up to latent_dim; change "
                f"spheres (e.g. '{self.latent_dim}', one sphere, or parts adding up to it) or set "
                f"latent_dim={sum(dims)}"
            )
        _check_common(self)
        check_choice("bessel_ratio", self.bessel_ratio, BESSEL_RATIOS, "Bessel ratio A_m")

    @property
    def sphere_dims(self) -> tuple[int, ...]:
        """The parsed ``spheres``, in the order given: "2,2,1" -> (2, 2, 1)."""
        return parse_int_list("spheres", self.spheres, "2,2,1")

    @property
    def hidden_widths(self) -> tuple[int, ...]:
        return parse_int_list("hidden_dims", self.hidden_dims, "256,128")


@dataclass(frozen=True)
class NVAEConfig:
    latent_dim: int = 10
    """Dimension d of the Gaussian latent z in R^d."""
    hidden_dims: str = "256,128"
    """Encoder hidden ReLU layer widths, comma-separated; the decoder uses them reversed."""
    likelihood: str = "bernoulli"
    """p(x|z): 'bernoulli' (binarised data, the papers) or 'gaussian' (one learned variance)."""
    covariance: str = "diagonal"
    """q(z|x)'s covariance (authors' -cvm): 'diagonal' (softplus std per dim), 'single' (one
    softplus std per example, all dims) or 'full' (Cholesky factor, softplus diagonal + 1e-5)."""

    def __post_init__(self):
        check_positive_int("latent_dim", self.latent_dim, "the dimension d of z in R^d")
        _check_common(self)
        check_choice("covariance", self.covariance, COVARIANCES, "of q(z|x)")

    @property
    def hidden_widths(self) -> tuple[int, ...]:
        return parse_int_list("hidden_dims", self.hidden_dims, "256,128")


# --- Distributions ----------------------------------------------------------------------------


class _NetworkVonMisesFisher(VonMisesFisher):
    """A VonMisesFisher for parameters straight out of a network, which may be NaN/inf once
    training has diverged.

    VonMisesFisher raises ValueError at construction for a non-finite or non-positive kappa or a
    loc that is not unit-norm, and its rejection sampler would never accept a NaN kappa. A
    ValueError mid-epoch would crash the trial instead of letting the trainer's NaN guard record
    it as diverged. So when some vectors are bad, they are replaced by harmless ones (loc e_1,
    kappa 1) before the parent's check, and marked: every output for them (samples, log_prob,
    entropy, mean, KL to the uniform) is NaN. A diverged network thus gives a NaN loss, and the
    trainer ends the trial with DivergedError, as for any other family. A loc whose norm
    underflowed in F.normalize (pre-normalised norm < 1e-12) counts as bad too.

    Healthy parameters (the normal case) go to the parent untouched: the test costs three small
    ops and one host synchronisation (the parent's own check makes one as well), not a
    differentiable where/add per step.
    """

    _nan: Tensor | None = None

    def __init__(self, loc: Tensor, scale: Tensor, ratio: str = "exact"):
        with torch.no_grad():  # [..., 1]; NaN compares False
            ok = (scale > 0) & (scale < math.inf) & sphere.check(loc).unsqueeze(-1)
        if bool(ok.all()):
            super().__init__(loc, scale, validate_args=False, ratio=ratio)
            return
        e1 = torch.eye(1, loc.shape[-1], dtype=loc.dtype, device=loc.device)[0]
        loc, scale = torch.where(ok, loc, e1), torch.where(ok, scale, 1.0)
        super().__init__(loc, scale, validate_args=False, ratio=ratio)
        nan = torch.where(ok.squeeze(-1), 0.0, math.nan).to(self.loc.dtype)
        self._nan = nan.expand(self.batch_shape)

    def _mark(self, t: Tensor, event: bool = False) -> Tensor:
        if self._nan is None:
            return t
        return t + (self._nan.unsqueeze(-1) if event else self._nan)

    def rsample(self, sample_shape: torch.Size | tuple = ()) -> Tensor:
        return self._mark(super().rsample(sample_shape), event=True)

    def log_prob(self, value: Tensor) -> Tensor:
        return self._mark(super().log_prob(value))

    @property
    def mean(self) -> Tensor:
        return self._mark(super().mean, event=True)

    def entropy(self) -> Tensor:
        return self._mark(super().entropy())

    def kl_to_uniform(self) -> Tensor:  # used by the registered KL(VonMisesFisher || uniform)
        return self._mark(super().kl_to_uniform())


# --- Models -----------------------------------------------------------------------------------


class ProductSpaceSVAE(LatentVariableModel):
    """Product-space S-VAE: q(z|x) = prod_i vMF(z_i; mu_i(x), kappa_i(x)), p(z) = prod_i U(S^{d_i}),
    KL = sum_i KL_i in closed form.

    Layout of z (and of the loc head's outputs): the spheres sorted by decreasing dimension, so
    "1,2" and "2,1" are the same model (a product of spheres does not depend on their order, and
    the decoder's first layer is dense). Spheres of one dimension form a group that is one
    VonMisesFisher call with batch shape [B, n] ("ten x S^1" is one vMF of batch [B, 10] in R^2),
    and takes n (d + 1) consecutive entries of z, sphere after sphere. ``layout`` lists the groups
    as (ambient dimension d + 1, number of spheres) in z's order.
    """

    Config = PSVAEConfig
    analytic_kl = True

    def __init__(self, cfg: PSVAEConfig | SVAEConfig, x_shape: tuple[int, ...]):
        super().__init__()
        d_x, widths = flat_dim(x_shape), cfg.hidden_widths
        counts = Counter(cfg.sphere_dims)
        self.layout: tuple[tuple[int, int], ...] = tuple(
            (d + 1, counts[d]) for d in sorted(counts, reverse=True)
        )
        self.ambient_dim = sum(m * n for m, n in self.layout)
        self.num_spheres = sum(n for _, n in self.layout)
        self.bessel_ratio = cfg.bessel_ratio
        self.encoder = mlp([d_x, *widths], final_activation=True)
        self.loc_head = nn.Linear(widths[-1], self.ambient_dim)
        self.kappa_head = nn.Linear(widths[-1], self.num_spheres)
        self.decoder = mlp([self.ambient_dim, *reversed(widths), d_x])
        self.p_x = likelihood_head(cfg.likelihood, x_shape)

    def heads(self, x: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Per group of ``layout``: (loc [B, n, m] unit-norm, kappa [B, n, 1] >= 1)."""
        h = self.encoder(x.flatten(1))
        locs = self.loc_head(h)
        # +1 prevents collapse (docs/specs/hyperspherical.md#22-encoder)
        kappas = F.softplus(self.kappa_head(h)) + 1
        out, i, k = [], 0, 0
        for m, n in self.layout:
            loc = F.normalize(locs[:, i : i + n * m].unflatten(-1, (n, m)), dim=-1)
            out.append((loc, kappas[:, k : k + n].unsqueeze(-1)))
            i, k = i + n * m, k + n
        return out

    def posterior(self, x: Tensor) -> Distribution:
        return Concatenated(
            Independent(_NetworkVonMisesFisher(loc, kappa, self.bessel_ratio), 1)
            for loc, kappa in self.heads(x)
        )

    def prior(self) -> Distribution:
        w = self.kappa_head.weight
        return Concatenated(
            Independent(HypersphericalUniform(m, (n,), w.device, w.dtype, validate_args=False), 1)
            for m, n in self.layout
        )

    def likelihood(self, z: Tensor) -> Distribution:
        return self.p_x(self.decoder(z))

    def initialise(self, x_train: Tensor) -> None:
        self.p_x.initialise(x_train)


class SVAE(ProductSpaceSVAE):
    """S-VAE: one vMF on S^d (R^(d+1)), uniform prior, closed-form KL. The product-space S-VAE
    with spheres = str(d): same parameters, same computation."""

    Config = SVAEConfig


class NVAE(LatentVariableModel):
    """N-VAE: q(z|x) = N(mu(x), Sigma(x)) on R^d, prior N(0, I), closed-form KL.

    Sigma by ``covariance``: 'diagonal' and 'single' are an Independent(Normal) with std
    softplus(scale_head(h)) ([B, d], or [B, 1] expanded to d); 'full' is a MultivariateNormal
    whose Cholesky factor L takes scale_head's d(d+1)/2 outputs in torch.tril_indices order
    (row by row), the diagonal through softplus + FULL_COVARIANCE_EPS.
    """

    Config = NVAEConfig
    analytic_kl = True

    def __init__(self, cfg: NVAEConfig, x_shape: tuple[int, ...]):
        super().__init__()
        d_x, widths, d = flat_dim(x_shape), cfg.hidden_widths, cfg.latent_dim
        self.covariance = cfg.covariance
        n_scale = {"diagonal": d, "single": 1, "full": d * (d + 1) // 2}[cfg.covariance]
        self.encoder = mlp([d_x, *widths], final_activation=True)
        self.loc_head = nn.Linear(widths[-1], d)
        self.scale_head = nn.Linear(widths[-1], n_scale)
        self.decoder = mlp([d, *reversed(widths), d_x])
        self.p_x = likelihood_head(cfg.likelihood, x_shape)
        self.register_buffer("p_z_loc", torch.zeros(d), persistent=False)
        if cfg.covariance == "full":
            rows, cols = torch.tril_indices(d, d)
            self.register_buffer("_tril_flat", rows * d + cols, persistent=False)
            self.register_buffer("_tril_diag", rows == cols, persistent=False)

    def posterior(self, x: Tensor) -> Distribution:
        h = self.encoder(x.flatten(1))
        mu, s = self.loc_head(h), self.scale_head(h)
        if self.covariance == "full":
            d = mu.shape[-1]
            entries = torch.where(self._tril_diag, F.softplus(s) + FULL_COVARIANCE_EPS, s)
            flat = s.new_zeros(*s.shape[:-1], d * d).index_copy(-1, self._tril_flat, entries)
            return MultivariateNormal(
                mu, scale_tril=flat.unflatten(-1, (d, d)), validate_args=False
            )
        std = F.softplus(s).expand_as(mu)  # 'single': [B, 1] -> [B, d]
        return Independent(Normal(mu, std, validate_args=False), 1)

    def prior(self) -> Distribution:
        loc = self.p_z_loc
        if self.covariance == "full":
            eye = torch.eye(loc.shape[0], dtype=loc.dtype, device=loc.device)
            return MultivariateNormal(loc, scale_tril=eye, validate_args=False)
        return Independent(Normal(loc, torch.ones_like(loc), validate_args=False), 1)

    def likelihood(self, z: Tensor) -> Distribution:
        return self.p_x(self.decoder(z))

    def initialise(self, x_train: Tensor) -> None:
        self.p_x.initialise(x_train)
