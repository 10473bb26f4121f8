"""Distributions on the unit sphere: the von Mises-Fisher posterior and the uniform prior of the
hyperspherical VAEs (Davidson et al. 2018;
docs/specs/hyperspherical.md#1-the-von-mises-fisher-distribution).

Dimension convention: ``m`` is always the *ambient* dimension. A vMF or uniform distribution with
``m`` lives on the sphere S^{m-1} in R^m (the papers' "S^d" is m = d + 1). The Bessel order of a
vMF in R^m is v = m/2 - 1.

The Bessel functions they need are in ``models.hyperspherical.bessel`` (re-exported here). Also
``log_vmf_normaliser(m, k)`` = log C_m(k) and ``log_sphere_area(m)`` = log |S^{m-1}|.
"""

from __future__ import annotations

import math
from numbers import Real

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints
from torch.distributions.kl import register_kl

from models.hyperspherical.bessel import (  # noqa: F401  (re-exported: the vMF's public Bessel helpers)
    bessel_ratio,
    bessel_terms,
    ive,
    log_hyp0f1,
    log_ive,
)


def log_sphere_area(m: int) -> float:
    """log |S^{m-1}|, the area of the unit sphere in R^m: log 2 + (m/2) log pi - lgamma(m/2)."""
    return math.log(2) + (m / 2) * math.log(math.pi) - math.lgamma(m / 2)


def log_vmf_normaliser(m: int, kappa: Tensor) -> Tensor:
    """log C_m(kappa) of the vMF in R^m; derivative -A_m(kappa).
    docs/specs/hyperspherical.md#11-density-and-normaliser writes it
    (m/2 - 1) log kappa - (m/2) log 2 pi - (kappa + log ive(m/2 - 1, kappa)); computed here as the
    equal -log|S^{m-1}| - log 0F1(; m/2; kappa^2/4), whose value and gradient do not cancel as
    kappa -> 0."""
    k = kappa.to(torch.float64)
    return (-log_sphere_area(m) - log_hyp0f1(m / 2 - 1, k)).to(kappa.dtype)


# --- Distributions ----------------------------------------------------------------------------


def _unit_tolerance(dtype: torch.dtype) -> float:
    """How far from 1 a norm may be and still count as unit: 1e-4 in float32, 1e-6 in float64."""
    return min(0.05, max(1e-6, 1000 * torch.finfo(dtype).eps))


class _Sphere(constraints.Constraint):
    """Vectors of unit norm in the last dimension."""

    event_dim = 1

    def check(self, value: Tensor) -> Tensor:
        return (torch.linalg.vector_norm(value, dim=-1) - 1).abs() <= _unit_tolerance(value.dtype)


sphere = _Sphere()


class VonMisesFisher(Distribution):
    """von Mises-Fisher distribution on S^{m-1} in R^m: q(z) = C_m(kappa) exp(kappa loc.z).

    ``loc`` [..., m] is the unit mean direction, ``scale`` [..., 1] the concentration kappa > 0
    (one per vector, as the authors' code; the leading dims broadcast). ``ratio`` picks how A_m
    is computed in ``mean``, ``entropy`` and the KL: 'exact' (the default, the UAI library) or
    'approx' (the product-space code); the log-normaliser is always exact.

    ``rsample`` is Wood's (1994) rejection sampler, vectorised, reparameterised through the
    accepted w(eps, kappa) and a Householder reflection, without the score-function correction
    term (docs/specs/hyperspherical.md, sections 1.5-1.6). Parameters are checked at construction
    whatever ``validate_args`` says: kappa must be finite and positive, loc unit-norm.
    """

    arg_constraints = {"loc": constraints.real_vector, "scale": constraints.positive}
    support = sphere
    has_rsample = True
    proposals = 4
    """Beta proposals per row per round of the rejection sampler. The authors' code uses 20; the law
    of the samples does not depend on it. Wood's acceptance rate is >= 0.65 for every m and
    kappa, so 4 leave ~1% of the rows to a second round and cost ~2x less on a CPU than 20."""

    def __init__(
        self, loc: Tensor, scale: Tensor, validate_args: bool | None = None, ratio: str = "exact"
    ):
        if ratio not in ("exact", "approx"):
            raise ValueError(f"ratio must be 'exact' or 'approx', got {ratio!r}")
        if loc.dim() < 1 or loc.shape[-1] < 2:
            raise ValueError(f"loc must have shape [..., m] with m >= 2, got {tuple(loc.shape)}")
        if scale.dim() < 1 or scale.shape[-1] != 1:
            raise ValueError(
                f"scale (kappa) must have shape [..., 1], one concentration per vector, got "
                f"{tuple(scale.shape)}; use kappa.unsqueeze(-1)"
            )
        dtype = torch.promote_types(loc.dtype, scale.dtype)
        if not dtype.is_floating_point:
            raise ValueError(f"loc and scale must be floating point, got {dtype}")
        batch_shape = torch.broadcast_shapes(loc.shape[:-1], scale.shape[:-1])
        self.m = loc.shape[-1]
        self.loc = loc.to(dtype).expand(*batch_shape, self.m)
        self.scale = scale.to(dtype).expand(*batch_shape, 1)
        self.ratio = ratio
        _check_parameters(self.loc, self.scale)
        # The parameters are checked above; the base class would check them a second time
        # (another host sync), so it only gets the flag that governs checking samples.
        super().__init__(batch_shape, torch.Size([self.m]), validate_args=False)
        if validate_args is not None:
            self._validate_args = validate_args
        else:
            self._validate_args = Distribution._validate_args

    @property
    def order(self) -> float:
        """The Bessel order v = m/2 - 1."""
        return self.m / 2 - 1

    def _kappa_terms(self) -> tuple[Tensor, Tensor, Tensor]:
        """(kappa, A_m(kappa) as selected by ``ratio``, log 0F1(; m/2; kappa^2/4)), float64,
        shape batch_shape, from one Bessel evaluation."""
        kappa = self.scale.squeeze(-1).to(torch.float64)
        _, hyp, ratio = bessel_terms(self.order, kappa)
        if self.ratio == "approx":
            ratio = bessel_ratio(self.order, kappa, approx=True)
        return kappa, ratio, hyp

    @property
    def mean(self) -> Tensor:
        """A_m(kappa) loc."""
        kappa = self.scale.squeeze(-1).to(torch.float64)
        a = bessel_ratio(self.order, kappa, approx=self.ratio == "approx")
        return a.to(self.loc.dtype).unsqueeze(-1) * self.loc

    def entropy(self) -> Tensor:
        """H = -kappa A_m - log C_m = -kappa A_m + log 0F1 + log |S^{m-1}|."""
        kappa, ratio, hyp = self._kappa_terms()
        return (-kappa * ratio + hyp + log_sphere_area(self.m)).to(self.loc.dtype)

    def kl_to_uniform(self) -> Tensor:
        """KL(q || U(S^{m-1})) = kappa A_m + log C_m + log |S^{m-1}| = kappa A_m - log 0F1, which
        keeps its relative accuracy as kappa -> 0 (KL ~ kappa^2 / 2m)."""
        kappa, ratio, hyp = self._kappa_terms()
        return (kappa * ratio - hyp).to(self.loc.dtype)

    def log_prob(self, value: Tensor) -> Tensor:
        """log C_m + kappa loc.z, computed as (log C_m + kappa) - kappa |z - loc|^2 / 2, exact on
        the sphere and free of the cancellation of two ~kappa terms (large kappa, float32)."""
        if self._validate_args:
            self._validate_sample(value)
        kappa = self.scale.squeeze(-1)
        k64 = kappa.to(torch.float64)
        v = self.order
        log_c_plus_kappa = v * torch.log(k64) - (self.m / 2) * math.log(2 * math.pi)
        log_c_plus_kappa = (log_c_plus_kappa - log_ive(v, k64)).to(self.loc.dtype)
        return log_c_plus_kappa - kappa * (value - self.loc).pow(2).sum(-1) / 2

    def sample(self, sample_shape: torch.Size | tuple = ()) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def rsample(self, sample_shape: torch.Size | tuple = ()) -> Tensor:
        """Samples [*sample_shape, *batch_shape, m], differentiable in loc and scale."""
        shape = self._extended_shape(torch.Size(sample_shape))
        m = self.m
        kappa = self.scale.expand(*shape[:-1], 1).reshape(-1).to(torch.float64)
        loc = self.loc.expand(shape).reshape(-1, m)
        omw = _sample_one_minus_w(kappa, m, self.proposals).clamp(0, 2)  # 1 - w, float64
        sin = torch.sqrt((omw * (2 - omw)).clamp_min(torch.finfo(torch.float64).tiny))
        v = torch.randn(loc.shape[0], m - 1, dtype=loc.dtype, device=loc.device)
        if m == 2:  # S^0 = {-1, +1}: the sign, never 0/|0| (randn returns an exact 0 now and
            v = torch.where(v < 0, -1.0, 1.0).to(loc.dtype)  # then: NaN in a k=100 evaluation)
        else:
            v = v / torch.linalg.vector_norm(v, dim=-1, keepdim=True)  # uniform on S^{m-2}
        z0 = torch.cat([(1 - omw).to(loc.dtype).unsqueeze(-1), sin.to(loc.dtype)[:, None] * v], -1)
        return _reflect(z0, loc).reshape(shape)


def _check_parameters(loc: Tensor, scale: Tensor) -> None:
    """ValueError for kappa <= 0 or non-finite, or loc not unit-norm (one host sync)."""
    with torch.no_grad():
        bad_kappa = ~(torch.isfinite(scale) & (scale > 0))
        norms = torch.linalg.vector_norm(loc, dim=-1)
        tol = _unit_tolerance(loc.dtype)
        bad_loc = ~((norms - 1).abs() <= tol)
        if not bool(bad_kappa.any() | bad_loc.any()):
            return
        if bool(bad_kappa.any()):
            bad = scale[bad_kappa]
            what = "NaN" if bool(bad.isnan().any()) else "inf" if bool(bad.isinf().any()) else "0"
            what = "<= 0" if what == "0" else what
            raise ValueError(
                f"VonMisesFisher: scale (the concentration kappa) must be finite and > 0; "
                f"{bad.numel()} value(s) are {what}, e.g. {bad.flatten()[0].item()}"
            )
        bad = norms[bad_loc]
        if not bool(bad.isfinite().all()):
            raise ValueError("VonMisesFisher: loc contains NaN or inf")
        raise ValueError(
            f"VonMisesFisher: loc must be unit-norm in its last dimension (| |loc| - 1 | <= "
            f"{tol:g}); {bad.numel()} vector(s) are not, e.g. norm {bad.flatten()[0].item():.6g}. "
            f"Normalise it: loc / loc.norm(dim=-1, keepdim=True)"
        )


def _sample_one_minus_w(kappa: Tensor, m: int, proposals: int) -> Tensor:
    """1 - w, w = mu.z of a vMF sample in R^m, per kappa [N] (float64). Computing 1 - w rather
    than w keeps its relative accuracy for large kappa (1 - w ~ (m-1)/(2 kappa))."""
    if m == 3:  # closed form: w = 1 + log(u + (1 - u) e^{-2 kappa}) / kappa, u ~ U(0, 1]
        r = torch.rand_like(kappa)  # r = 1 - u in [0, 1)
        k_small, k_large = kappa.clamp(max=1), kappa.clamp(min=1)  # no inf in either branch
        log_small = torch.log1p(r * torch.expm1(-2 * k_small)) / k_small
        log_large = torch.logaddexp(torch.log1p(-r), torch.log(r) - 2 * k_large) / k_large
        return -torch.where(kappa < 1, log_small, log_large)
    # Wood's envelope parameter b = (-2 kappa + c) / (m - 1), written without the cancellation
    # at large kappa. The authors' code instead blends in b_app = (m - 1) / (4 kappa) for
    # kappa > 10; with any b but this one the acceptance ratio exceeds 1 somewhere
    # (4ab/(1+b) != m - 1) and the samples are biased unless kappa >> m: at m = 50, kappa = 50 the
    # mean of w comes out 35 standard errors low in 20000 samples (KS p ~ 1e-227); see
    # test_wood_b_is_exact.
    m1 = m - 1
    c = torch.sqrt(4 * kappa * kappa + m1 * m1)
    b = m1 / (2 * kappa + c)
    a = (m1 + 2 * kappa + c) / 4
    d = 4 * a * b / (1 + b) - m1 * math.log(m1)
    eps = _wood_rejection(b.detach(), a.detach(), d.detach(), m1, proposals)
    return 2 * b * eps / (1 - (1 - b) * eps)  # 1 - w for w = (1 - (1+b) eps) / (1 - (1-b) eps)


def _wood_rejection(b: Tensor, a: Tensor, d: Tensor, m1: int, proposals: int) -> Tensor:
    """The accepted eps ~ Beta((m-1)/2, (m-1)/2) of Wood's sampler, per row of b, a, d [N]:
    ``proposals`` candidates per row per round, rounds until every row has accepted one."""
    two_ab, one_minus_b = (2 * a * b)[:, None], (1 - b)[:, None]
    shape = torch.full((b.shape[0], proposals), m1 / 2, dtype=b.dtype, device=b.device)

    def propose(rows: slice | Tensor) -> tuple[Tensor, Tensor]:
        """(eps [n, proposals], whether each is accepted) for the given rows."""
        conc = shape[rows]
        x, y = torch._standard_gamma(conc), torch._standard_gamma(conc)
        e = x / (x + y)  # ~ Beta(m1/2, m1/2); cheaper than torch.distributions.Beta
        t = two_ab[rows] / (1 - one_minus_b[rows] * e)
        accept = m1 * torch.log(t) - t + d[rows, None] > torch.log(torch.rand_like(e))
        return e, accept

    def first_accepted(e: Tensor, accept: Tensor) -> Tensor:
        first = accept.to(torch.uint8).argmax(-1, keepdim=True)
        return e.gather(-1, first).squeeze(-1)

    # Round 1 on every row, with no index gathers: ~99% of the rows accept here (see
    # ``VonMisesFisher.proposals``); the few others are redrawn below, only those rows.
    e, accept = propose(slice(None))
    eps = first_accepted(e, accept)
    hit = accept.any(-1)
    if bool(hit.all()):
        return eps
    todo = (~hit).nonzero().squeeze(-1)
    while todo.numel() > 0:
        e, accept = propose(todo)
        hit = accept.any(-1)
        eps[todo[hit]] = first_accepted(e, accept)[hit]
        todo = todo[~hit]
    return eps


def _reflect(z0: Tensor, mu: Tensor) -> Tensor:
    """An orthogonal map sending e_1 to mu, applied to z0 [N, m]: the Householder reflection
    with u = e_1 - mu when mu_1 <= 0, else minus the one with u = e_1 + mu. |u|^2 >= 2 either
    way, so mu near e_1 neither divides by ~0 nor blows up the gradient; z0's law is invariant
    under reflections fixing e_1, so both give the same distribution."""
    sigma = torch.where(mu[:, :1] > 0, -1.0, 1.0).to(mu.dtype)
    e1 = torch.zeros(mu.shape[-1], dtype=mu.dtype, device=mu.device)
    e1[0] = 1
    u = e1 - sigma * mu
    proj = (z0 * u).sum(-1, keepdim=True) / (u * u).sum(-1, keepdim=True)
    return sigma * (z0 - 2 * proj * u)


class HypersphericalUniform(Distribution):
    """The uniform distribution on S^{m-1} in R^m; ``dim`` is m, the ambient dimension (the
    papers' prior U(S^d) is dim = d + 1). log p(z) = -log |S^{m-1}|."""

    arg_constraints: dict = {}
    support = sphere
    has_rsample = True

    def __init__(
        self,
        dim: int,
        batch_shape: torch.Size | tuple = (),
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        validate_args: bool | None = None,
    ):
        if not isinstance(dim, Real) or int(dim) != dim or dim < 1:
            raise ValueError(f"dim (the ambient dimension m of S^(m-1)) must be >= 1, got {dim}")
        self.dim = int(dim)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = dtype or torch.get_default_dtype()
        super().__init__(torch.Size(batch_shape), torch.Size([self.dim]), validate_args)

    @property
    def log_area(self) -> float:
        return log_sphere_area(self.dim)

    @property
    def mean(self) -> Tensor:
        return torch.zeros(self._extended_shape(), dtype=self.dtype, device=self.device)

    def rsample(self, sample_shape: torch.Size | tuple = ()) -> Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        x = torch.randn(shape, dtype=self.dtype, device=self.device)
        return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True)

    def sample(self, sample_shape: torch.Size | tuple = ()) -> Tensor:
        return self.rsample(sample_shape)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        shape = torch.broadcast_shapes(value.shape[:-1], self.batch_shape)
        return torch.full(shape, -self.log_area, dtype=value.dtype, device=value.device)

    def entropy(self) -> Tensor:
        return torch.full(self.batch_shape, self.log_area, dtype=self.dtype, device=self.device)


@register_kl(VonMisesFisher, HypersphericalUniform)
def _kl_vmf_uniform(q: VonMisesFisher, p: HypersphericalUniform) -> Tensor:
    """KL(vMF || U) = kappa A_m(kappa) + log C_m(kappa) + log |S^{m-1}|; independent of loc."""
    if q.m != p.dim:
        raise ValueError(f"KL(vMF in R^{q.m} || uniform in R^{p.dim}): the dimensions differ")
    return q.kl_to_uniform().expand(torch.broadcast_shapes(q.batch_shape, p.batch_shape))
