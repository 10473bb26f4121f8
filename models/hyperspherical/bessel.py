"""Modified Bessel functions of the first kind for the von Mises-Fisher distribution, pure torch
(CPU and CUDA, float32 and float64 in, computed in float64 inside):

    log_ive(v, k)      log(I_v(k) e^-k); finite where ive underflows (v = 250, k = 1e-3)
    ive(v, k)          I_v(k) e^-k, the authors' op (scipy.special.ive)
    bessel_ratio(v, k) I_{v+1}(k) / I_v(k); A_m(k) with v = m/2 - 1
    log_hyp0f1(v, k)   log 0F1(; v+1; k^2/4) = log(Gamma(v+1) (2/k)^v I_v(k)); gives KL(vMF || U)
                       without cancellation as k -> 0

each differentiable in k through a custom ``autograd.Function`` (never in the order v, a python
float >= 0); ``bessel_terms(v, k)`` gives log_ive, log_hyp0f1 and bessel_ratio at once.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import torch
from torch import Tensor

# --- Bessel functions -------------------------------------------------------------------------
#
# Method (float64 throughout). Two regions of (v, x), chosen by x^2 <= 2 (v + 1):
#   * small x: the power series I_v(x) = (x/2)^v / Gamma(v+1) * 0F1(; v+1; x^2/4). Every term is
#     positive and the term ratio is (x^2/4) / (k (v+k)) <= 1/(2k), so 16 terms reach 1e-18
#     relative. The ratio I_{v+1}/I_v is (x/2)/(v+1) * 0F1(v+2) / 0F1(v+1), both series.
#   * otherwise: Debye's uniform asymptotic expansion (DLMF 10.41.3) with the polynomials
#     u_0..u_16 (DLMF 10.41.10, generated exactly below) at an order nu = v + n >= 10 and at
#     nu + 1; it is uniform in x, so one formula covers x from ~1 to 1e5 and beyond (truncation
#     error ~1e-14 in log ive at nu = 10, less above). Written as
#         log ive_nu(x) = nu / (s + z) - nu asinh(1/z) - log(2 pi nu)/2 - log1p(z^2)/4
#                         + log sum_k u_k(1/s) / nu^k,          z = x / nu, s = sqrt(1 + z^2),
#     which has no cancellation at large x (the e^-x scaling is exact). Orders v < 10 come down
#     from nu with the ratio form of the recurrence, r_{o-1} = 1 / (2 o / x + r_o), r_o =
#     I_{o+1}/I_o, which is stable downwards (I_v is the minimal solution upwards): at most 10
#     steps, all terms positive.
# Measured against mpmath for v in [0, 600], x in [1e-3, 1e5]: |error of log ive| <= 1e-12, i.e.
# <= 6e-14 of its magnitude (ive to ~1e-12 relative; 2e-13 from scipy.special.ive where that does
# not underflow); the ratio and log 0F1 to 3e-13 relative; d/dx log ive to 5e-10 relative; d/dx r
# to 3e-7 relative for x <= 1e4 (1.5e-5 at x = 1e5: there it is an O(1/x^2) difference of O(1/x)
# terms).
# Derivatives in x from the same ratio r = I_{v+1}/I_v:
#     d/dx log I_v = r + v/x   (so d ive/dx = ive (r + v/x - 1), identical to the
#                               ive(v-1) - ive(v) (v + x)/x of
#                               docs/specs/hyperspherical.md#14-bessel-function-and-its-gradient
#                               by I_{v-1} = I_{v+1} + (2v/x) I_v)
#     d/dx r       = 1 - r^2 - (2v + 1) r / x
#     d/dx log 0F1 = r.

_SERIES_TERMS = 16
_DEBYE_TERMS = 16
_DEBYE_MIN_ORDER = 10.0


@functools.cache
def _debye_polynomials() -> tuple[tuple[float, ...], ...]:
    """Coefficients (ascending powers of t) of Debye's u_0..u_K, from the exact recurrence
    u_{k+1}(t) = t^2 (1 - t^2) u_k'(t) / 2 + (1/8) int_0^t (1 - 5 s^2) u_k(s) ds (DLMF 10.41.10),
    padded to a common length 3K + 1."""
    polys = [[Fraction(1)]]
    for _ in range(_DEBYE_TERMS):
        p = polys[-1]
        nxt = [Fraction(0)] * (len(p) + 4)
        for i in range(1, len(p)):  # t^2 (1 - t^2) p'(t) / 2
            nxt[i + 1] += i * p[i] / 2
            nxt[i + 3] -= i * p[i] / 2
        for i, c in enumerate(p):  # (1/8) int_0^t (1 - 5 s^2) p(s) ds
            nxt[i + 1] += c / (8 * (i + 1))
            nxt[i + 3] -= 5 * c / (8 * (i + 3))
        polys.append(nxt)
    width = 3 * _DEBYE_TERMS + 1
    return tuple(tuple(float(c) for c in (p + [Fraction(0)] * width)[:width]) for p in polys)


@functools.lru_cache(maxsize=64)
def _debye_coefficients(nu: float, device: torch.device) -> Tensor:
    """[2, 3K+1]: coefficients in t of sum_k u_k(t) / o^k for the orders o = nu and nu + 1,
    float64, cached per (order, device) so a call makes no host-to-device copy."""
    u = torch.tensor(_debye_polynomials(), dtype=torch.float64)  # [K+1, 3K+1]
    k = torch.arange(u.shape[0], dtype=torch.float64)
    inv_powers = torch.stack([nu**-k, (nu + 1) ** -k])  # [2, K+1]
    return (inv_powers @ u).to(device)


def _debye_log_ive(nu: float, x: Tensor) -> Tensor:
    """log ive_o(x) for o = nu and nu + 1 ([..., 2]) by the uniform asymptotic expansion;
    accurate for nu >= 10, any x > 0."""
    orders = nu + torch.arange(2, dtype=x.dtype, device=x.device)
    z = x.unsqueeze(-1) / orders  # [..., 2]
    s = torch.sqrt(1 + z * z)
    coef = _debye_coefficients(nu, x.device)
    t_powers = torch.cumprod((1 / s).unsqueeze(-1).expand(*s.shape, coef.shape[1] - 1), -1)
    series = coef[:, 0] + (t_powers * coef[:, 1:]).sum(-1)  # sum_k u_k(t) / o^k
    return (
        orders / (s + z)
        - orders * torch.asinh(1 / z)
        - 0.5 * torch.log(2 * math.pi * orders)
        - 0.25 * torch.log1p(z * z)
        + torch.log(series)
    )


def _log_hyp0f1_series(v: float, x: Tensor) -> Tensor:
    """log 0F1(; b; x^2/4) for b = v + 1 and v + 2 ([..., 2]) by the power series; for
    x^2 <= 2 (v + 1) the term ratio is <= 1/(2k), so 16 terms reach 1e-18 relative."""
    k = torch.arange(1, _SERIES_TERMS + 1, dtype=x.dtype, device=x.device)
    b = v + 1 + torch.arange(2, dtype=x.dtype, device=x.device)
    denominators = 4 * k * (b.unsqueeze(-1) - 1 + k)  # [2, K]
    terms = torch.cumprod((x * x)[..., None, None] / denominators, dim=-1)
    return torch.log1p(terms.sum(-1))


def _series_branch(v: float, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(log ive_v, log 0F1(; v+1; x^2/4), I_{v+1}/I_v) by the power series, for x <= edge."""
    hyp = _log_hyp0f1_series(v, x)  # b = v + 1, v + 2
    ratio = x / (2 * (v + 1)) * torch.exp(hyp[..., 1] - hyp[..., 0])
    hyp = hyp[..., 0]
    log_ive_v = hyp + torch.xlogy(torch.full_like(x, v), x / 2) - math.lgamma(v + 1) - x
    return log_ive_v, hyp, ratio


def _debye_branch(v: float, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The same three by Debye's expansion at nu = v + n >= 10 and nu + 1, then n steps of the
    backward recurrence; for x >= edge."""
    n = max(0, math.ceil(_DEBYE_MIN_ORDER - v))
    debye = _debye_log_ive(v + n, x)
    log_ive_v = debye[..., 0]
    ratio = torch.exp(debye[..., 1] - log_ive_v)
    if n:
        inv_x = 1 / x
        product = torch.ones_like(x)
        for order in reversed(range(n)):  # r_{v+j} = 1 / (2 (v+j+1) / x + r_{v+j+1})
            ratio = torch.add(ratio, inv_x, alpha=2 * (v + order + 1)).reciprocal_()
            product.mul_(ratio)
        log_ive_v = log_ive_v - torch.log(product)
    hyp = log_ive_v + x - v * torch.log(x / 2) + math.lgamma(v + 1)
    return log_ive_v, hyp, ratio


def _bessel(v: float, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(log ive_v(x), log 0F1(; v+1; x^2/4), I_{v+1}(x) / I_v(x)) in float64, for x >= 0."""
    x = x.to(torch.float64)
    edge = math.sqrt(2 * (v + 1))  # the series region is x <= edge (nan goes to Debye)
    small = x <= edge
    # Each branch is ~20 small ops, so when every element is in one region (the usual case in
    # training) only that branch runs; a mixed batch runs both on all elements and selects,
    # which for small batches is faster than gathering and scattering subsets. One host sync;
    # the vMF constructor syncs anyway.
    n_small = int(small.sum())
    if n_small == 0:  # no x < 0 here (nan goes to this branch and stays nan)
        return _debye_branch(v, x)
    if n_small == x.numel():
        out = _series_branch(v, x)
    else:  # each branch on x clamped into its region, so neither sees inf or nan
        series, debye = _series_branch(v, x.clamp(max=edge)), _debye_branch(v, x.clamp(min=edge))
        out = tuple(torch.where(small, s, d) for s, d in zip(series, debye, strict=True))
    invalid = x < 0
    return tuple(torch.where(invalid, float("nan"), o) for o in out)  # type: ignore[return-value]


def _check_order(v: float | Tensor) -> float:
    v = float(v)
    if not v >= 0 or not math.isfinite(v):
        raise ValueError(f"the Bessel order v must be a finite number >= 0, got {v}")
    return v


class _Bessel(torch.autograd.Function):
    """(log ive_v(x), log 0F1(; v+1; x^2/4), I_{v+1}/I_v) in x's dtype, differentiable in x."""

    @staticmethod
    def forward(ctx, x: Tensor, v: float) -> tuple[Tensor, Tensor, Tensor]:
        log_ive_v, hyp, ratio = _bessel(v, x)
        ctx.v = v
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, ratio)
        return log_ive_v.to(x.dtype), hyp.to(x.dtype), ratio.to(x.dtype)

    @staticmethod
    def backward(ctx, g_log_ive, g_hyp, g_ratio) -> tuple[Tensor | None, None]:
        x, r = ctx.saved_tensors
        x64 = x.to(torch.float64)
        slope = torch.zeros_like(r)
        if g_log_ive is not None:  # d/dx log ive = r + v/x - 1
            slope = slope + g_log_ive.to(r.dtype) * (r + ctx.v / x64 - 1)
        if g_hyp is not None:  # d/dx log 0F1 = r
            slope = slope + g_hyp.to(r.dtype) * r
        if g_ratio is not None:  # dr/dx = 1 - r^2 - (2v+1) r/x
            slope = slope + g_ratio.to(r.dtype) * (1 - r * r - (2 * ctx.v + 1) * r / x64)
        return slope.to(x.dtype), None


class _Ive(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, v: float) -> Tensor:
        log_ive_v, _, ratio = _bessel(v, x)
        value = torch.exp(log_ive_v)
        ctx.v = v
        ctx.save_for_backward(x, value, ratio)
        return value.to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        x, value, ratio = ctx.saved_tensors
        # slope = ive(v-1) - ive(v) (v + x)/x
        # (docs/specs/hyperspherical.md#14-bessel-function-and-its-gradient)
        slope = value * (ratio + ctx.v / x.to(torch.float64) - 1)
        return grad * slope.to(grad.dtype), None


def bessel_terms(v: float, kappa: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(log_ive, log_hyp0f1, bessel_ratio)(v, kappa) from one evaluation, each differentiable."""
    return _Bessel.apply(kappa, _check_order(v))


def log_ive(v: float, kappa: Tensor) -> Tensor:
    """log(I_v(kappa) e^-kappa), any shape of kappa >= 0; differentiable in kappa.

    Use this, not ``ive(...).log()``: ive underflows for large v and small kappa (v = 250,
    kappa = 1e-3 is ~1e-1300) where its log is an ordinary number.
    """
    return bessel_terms(v, kappa)[0]


def ive(v: float, kappa: Tensor) -> Tensor:
    """Exponentially scaled modified Bessel function of the first kind, I_v(kappa) e^-kappa
    (scipy.special.ive); gradient in kappa only, ive(v-1) - ive(v) (v + kappa)/kappa."""
    return _Ive.apply(kappa, _check_order(v))


def _ratio_approx(v: float, kappa: Tensor) -> Tensor:
    """The product-space code's approximation of I_{v+1}/I_v
    (docs/specs/hyperspherical.md#13-bessel-ratio, whose v is our v + 1): the mean of the bounds B_0
    and B_2 of Ruiz-Antolin and Segura."""
    nu = v + 1

    def bound(a: float) -> Tensor:
        lam = nu + (a - 1) / 2
        delta = (nu - 0.5) + lam / (2 * torch.sqrt(lam * lam + kappa * kappa))
        return kappa / (delta + torch.sqrt(delta * delta + kappa * kappa))

    return (bound(0.0) + bound(2.0)) / 2


def bessel_ratio(v: float, kappa: Tensor, approx: bool = False) -> Tensor:
    """I_{v+1}(kappa) / I_v(kappa); with v = m/2 - 1 this is A_m(kappa), the mean resultant
    length of a vMF in R^m. Exact by default (the UAI library); ``approx=True`` is the
    product-space code's closed-form approximation
    (docs/specs/hyperspherical.md#13-bessel-ratio)."""
    v = _check_order(v)
    if approx:
        return _ratio_approx(v, kappa.to(torch.float64)).to(kappa.dtype)
    return bessel_terms(v, kappa)[2]


def log_hyp0f1(v: float, kappa: Tensor) -> Tensor:
    """log 0F1(; v+1; kappa^2/4) = log(Gamma(v+1) (2/kappa)^v I_v(kappa)) >= 0; its derivative
    in kappa is I_{v+1}/I_v. It is -log C_m(kappa) - log|S^{m-1}| for v = m/2 - 1, so the vMF's
    KL and entropy keep full relative accuracy as kappa -> 0."""
    return bessel_terms(v, kappa)[1]
