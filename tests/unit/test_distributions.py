"""The hyperspherical distributions (models/hyperspherical/distributions.py) against scipy, mpmath
and the maths (the Bessel functions: tests/unit/test_bessel.py).

Samplers: the law of w = mu.z against its density (Kolmogorov-Smirnov), moments, pathwise
gradients against finite differences with common random numbers. Densities: normalisation by
quadrature, KL and entropy against Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats as st
import torch
from torch.distributions import kl_divergence

from models.hyperspherical.bessel import bessel_ratio, log_ive
from models.hyperspherical.distributions import (
    HypersphericalUniform,
    VonMisesFisher,
    log_sphere_area,
    log_vmf_normaliser,
)
from tests.unit.test_bessel import F64, KAPPAS, t64


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


# --- The normaliser ---------------------------------------------------------------------------


@pytest.mark.parametrize("m", [3, 10, 50, 200, 1000])
def test_log_normaliser_and_its_gradient(m):
    kappa = t64(KAPPAS).requires_grad_()
    log_c = log_vmf_normaliser(m, kappa)
    (grad,) = torch.autograd.grad(log_c.sum(), kappa)
    assert torch.isfinite(log_c).all() and torch.isfinite(grad).all()
    k = kappa.detach()
    # d/dk log C_m = (m/2-1)/k - d/dk log I_v = -A_m(k)
    torch.testing.assert_close(grad, -bessel_ratio(m / 2 - 1, k), rtol=1e-9, atol=1e-15)
    h = 1e-5 * k
    fd = (log_vmf_normaliser(m, k + h) - log_vmf_normaliser(m, k - h)) / (2 * h)
    rounding = 1e-15 * log_c.detach().abs() / h  # the difference of two ~log|S| numbers
    assert ((grad - fd).abs() <= 1e-6 * fd.abs() + rounding).all()
    # the reference's form of log C_m (section 1.1), through log ive
    v = m / 2 - 1
    reference = v * k.log() - (m / 2) * math.log(2 * math.pi) - k - log_ive(v, k)
    torch.testing.assert_close(log_c.detach(), reference, rtol=1e-13, atol=1e-11)


# --- Sampling ---------------------------------------------------------------------------------


def w_cdf(m: int, kappa: float):
    """CDF of 1 - w, w = mu.z, under vMF(m, kappa): density of u = kappa (1 - w) on [0, 2 kappa]
    is prop. to e^-u u^a (2 - u/kappa)^a, a = (m-3)/2, integrated on a fine grid."""
    a = (m - 3) / 2
    u = np.linspace(0.0, min(2 * kappa, 80.0 + 4 * m), 200_001)
    with np.errstate(divide="ignore"):
        log_f = -u + a * (np.log(u) + np.log(np.clip(2 - u / kappa, 0, None))) if a else -u
    f = np.exp(log_f - log_f[np.isfinite(log_f)].max())
    cdf = np.concatenate([[0.0], np.cumsum((f[1:] + f[:-1]) / 2)])
    cdf /= cdf[-1]
    return lambda one_minus_w: np.interp(kappa * one_minus_w, u, cdf)


@pytest.mark.parametrize("m", [3, 10, 50])
@pytest.mark.parametrize("kappa", [0.1, 10.0, 1000.0])
def test_samples_follow_the_vmf(m, kappa):
    torch.manual_seed(m * 7 + int(kappa))
    mu = unit(torch.arange(1.0, m + 1, dtype=F64).sin())  # not an axis
    q = VonMisesFisher(mu, t64([kappa]))
    n = 20_000
    z = q.sample((n,))
    assert z.shape == (n, m)
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(n, dtype=F64), rtol=0, atol=1e-14)
    one_minus_w = ((z - mu) ** 2).sum(-1) / 2  # 1 - mu.z, exact on the sphere
    assert st.kstest(one_minus_w.numpy(), w_cdf(m, kappa)).pvalue > 1e-3
    # mean resultant: E[mu.z] = A_m(kappa), the rest of the mean is 0 (direction = mu)
    w = 1 - one_minus_w
    a_m = bessel_ratio(m / 2 - 1, t64(kappa)).item()
    assert abs(w.mean().item() - a_m) < 4 * w.std().item() / math.sqrt(n)
    zbar = z.mean(0)
    perp = zbar - (zbar @ mu) * mu
    assert perp.pow(2).sum().item() < 10 * (1 - (w**2).mean().item()) / n
    if kappa >= 10:
        assert torch.nn.functional.cosine_similarity(zbar, mu, dim=0).item() > 0.99


@pytest.mark.parametrize("m,kappa", [(10, 20.0), (50, 50.0), (50, 200.0)])
def test_wood_b_is_exact(m, kappa):
    # kappa > 10 but not >> m: the reference's blend with b_app = (m-1)/(4 kappa) fails this
    # (m = 50, kappa = 50: KS p ~ 1e-227, mean of w 35 standard errors low)
    torch.manual_seed(11)
    q = VonMisesFisher(unit(torch.ones(m, dtype=F64)), t64([kappa]))
    one_minus_w = ((q.sample((20_000,)) - q.loc) ** 2).sum(-1) / 2
    assert st.kstest(one_minus_w.numpy(), w_cdf(m, kappa)).pvalue > 1e-3
    a_m = bessel_ratio(m / 2 - 1, t64(kappa)).item()
    assert abs(1 - one_minus_w.mean().item() - a_m) < 4 * one_minus_w.std().item() / math.sqrt(2e4)


def test_float32_sampling_at_large_kappa():
    torch.manual_seed(0)
    m, kappa, n = 10, 1e5, 4000
    mu = unit(torch.arange(1.0, m + 1).cos())
    q = VonMisesFisher(mu, torch.tensor([kappa]))
    z = q.rsample((n,))
    assert z.dtype == torch.float32
    assert ((z.norm(dim=-1) - 1).abs() < 1e-6).all()
    one_minus_w = ((z - mu) ** 2).sum(-1).double() / 2
    expect = 1 - bessel_ratio(m / 2 - 1, t64(kappa)).item()  # ~ (m-1)/(2 kappa)
    assert abs(one_minus_w.mean().item() - expect) < 5 * one_minus_w.std().item() / math.sqrt(n)
    # log_prob in float32 agrees with float64 on the same points (no kappa-sized cancellation)
    q64 = VonMisesFisher(mu.double(), t64([kappa]))
    torch.testing.assert_close(q.log_prob(z).double(), q64.log_prob(z.double()), rtol=0, atol=2e-3)


def test_m3_closed_form_small_and_large_kappa():
    torch.manual_seed(1)
    for kappa in (1e-4, 0.5, 3.0, 1e4):
        q = VonMisesFisher(unit(t64([1.0, -2.0, 0.5])), t64([kappa]))
        z = q.sample((20_000,))
        one_minus_w = ((z - q.loc) ** 2).sum(-1) / 2
        assert ((one_minus_w >= 0) & (one_minus_w <= 2)).all()
        assert st.kstest(one_minus_w.numpy(), w_cdf(3, kappa)).pvalue > 1e-3


# --- Densities, entropy, KL -------------------------------------------------------------------


@pytest.mark.parametrize("kappa", [0.3, 5.0, 40.0])
def test_log_prob_integrates_to_one_m2(kappa):
    phi = torch.linspace(0, 2 * math.pi, 4097, dtype=F64)[:-1]
    z = torch.stack([phi.cos(), phi.sin()], -1)
    q = VonMisesFisher(unit(t64([0.6, -0.8])), t64([kappa]))
    total = q.log_prob(z).exp().mean() * 2 * math.pi  # periodic trapezoid: spectral accuracy
    assert abs(total.item() - 1) < 1e-12


@pytest.mark.parametrize("kappa", [0.3, 5.0, 40.0])
def test_log_prob_integrates_to_one_m3(kappa):
    cos_t, weights = np.polynomial.legendre.leggauss(400)  # Gauss-Legendre in cos(theta)
    phi = torch.linspace(0, 2 * math.pi, 801, dtype=F64)[:-1]
    c = t64(cos_t)[:, None]
    s = (1 - c**2).sqrt()
    z = torch.stack([s * phi.cos(), s * phi.sin(), c.expand(-1, 800)], -1)
    q = VonMisesFisher(unit(t64([1.0, 2.0, -0.5])), t64([kappa]))  # off the quadrature's axis
    total = (q.log_prob(z).exp().mean(-1) * t64(weights)).sum() * 2 * math.pi
    assert abs(total.item() - 1) < 1e-9


@pytest.mark.parametrize("m", [3, 10, 50])
@pytest.mark.parametrize("kappa", [0.5, 20.0, 500.0])
def test_kl_and_entropy_against_monte_carlo(m, kappa):
    torch.manual_seed(m + int(kappa))
    q = VonMisesFisher(unit(torch.randn(m, dtype=F64)), t64([kappa]))
    p = HypersphericalUniform(m, dtype=F64)
    z = q.sample((20_000,))
    log_q = q.log_prob(z)
    log_ratio = log_q - p.log_prob(z)
    kl = kl_divergence(q, p)
    se = log_ratio.std().item() / math.sqrt(len(z)) + 1e-12
    assert kl.shape == ()
    assert abs(kl.item() - log_ratio.mean().item()) < 4 * se
    assert abs(q.entropy().item() + log_q.mean().item()) < 4 * se
    torch.testing.assert_close(q.entropy(), p.entropy() - kl, rtol=1e-12, atol=1e-12)


def test_kl_is_nonnegative_and_vanishes_as_kappa_goes_to_zero():
    kappa = torch.logspace(-4, 5, 200, dtype=F64)[:, None]
    for m in (2, 3, 10, 50, 200, 1000):
        kl = VonMisesFisher(unit(torch.ones(200, m, dtype=F64)), kappa).kl_to_uniform()
        assert torch.isfinite(kl).all() and (kl > 0).all()
        assert (kl.diff() > 0).all()  # increasing in kappa
        tiny = t64([[1e-6], [1e-4], [1e-3]])
        kl0 = VonMisesFisher(unit(torch.ones(3, m, dtype=F64)), tiny).kl_to_uniform()
        # KL = kappa^2 / (2m) + O(kappa^4): computed without cancellation
        torch.testing.assert_close(kl0, tiny[:, 0] ** 2 / (2 * m), rtol=1e-5, atol=0)


def test_kl_gradient_in_kappa():
    # d KL / d kappa = kappa A_m'(kappa) > 0
    for m in (3, 10, 100):
        kappa = t64(KAPPAS).requires_grad_()
        q = VonMisesFisher(unit(torch.ones(len(KAPPAS), m, dtype=F64)), kappa[:, None])
        (grad,) = torch.autograd.grad(q.kl_to_uniform().sum(), kappa)
        k = kappa.detach()
        h = 1e-4 * k

        def kl_at(kk, m=m):
            loc = unit(torch.ones(len(kk), m, dtype=F64))
            return VonMisesFisher(loc, kk[:, None]).kl_to_uniform()

        torch.testing.assert_close(grad, (kl_at(k + h) - kl_at(k - h)) / (2 * h), rtol=1e-4, atol=0)
        assert (grad > 0).all()


def test_approx_ratio_option():
    m, kappa = 10, t64([[0.5], [5.0], [50.0]])
    mu = unit(torch.ones(3, m, dtype=F64))
    exact, approx = VonMisesFisher(mu, kappa), VonMisesFisher(mu, kappa, ratio="approx")
    a = bessel_ratio(m / 2 - 1, kappa[:, 0], approx=True)
    torch.testing.assert_close(approx.mean, a[:, None] * mu)
    torch.testing.assert_close(approx.kl_to_uniform(), exact.kl_to_uniform(), rtol=1e-2, atol=1e-4)
    torch.testing.assert_close(approx.log_prob(mu), exact.log_prob(mu))  # normaliser stays exact
    with pytest.raises(ValueError, match="ratio"):
        VonMisesFisher(mu, kappa, ratio="fast")


# --- Gradients through rsample ----------------------------------------------------------------


def smooth_f(z: torch.Tensor) -> torch.Tensor:
    c = torch.linspace(-1, 1, z.shape[-1], dtype=z.dtype)
    return ((z @ c) ** 2 + torch.sin(3 * z[..., 0] - z[..., -1])).mean()


def f_of_sample(loc, kappa, seed, n=2000):
    torch.manual_seed(seed)  # common random numbers: same proposals, same acceptances
    return smooth_f(VonMisesFisher(loc, kappa).rsample((n,)))


@pytest.mark.parametrize("m", [3, 10, 50])
@pytest.mark.parametrize("kappa", [0.7, 15.0, 300.0])
def test_rsample_gradients_match_finite_differences(m, kappa):
    gen = torch.Generator().manual_seed(m)
    for sign in (1.0, -1.0):  # both branches of the reflection (mu_1 > 0 and mu_1 < 0)
        mu = torch.randn(m, dtype=F64, generator=gen)
        mu[0] = sign * (mu[0].abs() + 0.3)
        mu = unit(mu)
        loc, k = mu.clone().requires_grad_(), t64([kappa]).requires_grad_()
        g_loc, g_k = torch.autograd.grad(f_of_sample(loc, k, seed=3), (loc, k))
        h = 1e-6 * kappa
        up, down = f_of_sample(mu, t64([kappa + h]), 3), f_of_sample(mu, t64([kappa - h]), 3)
        fd_k = (up - down) / (2 * h)
        assert abs(g_k.item() - fd_k.item()) <= 1e-5 * abs(fd_k.item()) + 1e-9
        tangent = torch.randn(m, dtype=F64, generator=gen)
        tangent = tangent - (tangent @ mu) * mu
        eps = 1e-6
        fd_loc = (
            f_of_sample(unit(mu + eps * tangent), t64([kappa]), 3)
            - f_of_sample(unit(mu - eps * tangent), t64([kappa]), 3)
        ) / (2 * eps)
        assert abs((g_loc @ tangent).item() - fd_loc.item()) <= 1e-5 * abs(fd_loc.item()) + 1e-9


def test_m3_pathwise_gradient_is_unbiased_for_the_mean():
    # m = 3 samples by inversion, so d/dk E[mu.z] = E[d w/dk] = A_3'(k) exactly in expectation.
    # (Wood's sampler without the g_cor term, m != 3, is biased in this sense:
    # docs/specs/hyperspherical.md#16-gradient-estimator.)
    torch.manual_seed(5)
    n, mu = 20_000, unit(t64([0.3, -1.0, 2.0]))
    for kappa in (0.5, 5.0, 50.0):
        k = torch.full((n, 1), kappa, dtype=F64, requires_grad=True)
        z = VonMisesFisher(mu.expand(n, 3), k).rsample()
        (g,) = torch.autograd.grad((z @ mu).sum(), k)  # per-sample d w / d kappa
        k0 = t64([kappa]).requires_grad_()
        (a_prime,) = torch.autograd.grad(bessel_ratio(0.5, k0).sum(), k0)
        assert abs(g.mean().item() - a_prime.item()) < 4 * g.std().item() / math.sqrt(n)


# --- Construction, shapes, the uniform --------------------------------------------------------


@pytest.mark.parametrize(
    "kappa,match",
    [(0.0, "<= 0"), (-1.0, "<= 0"), (float("nan"), "NaN"), (float("inf"), "inf")],
)
def test_bad_kappa_is_a_clear_error(kappa, match):
    with pytest.raises(ValueError, match=rf"kappa.*{match}"):
        VonMisesFisher(unit(torch.ones(2, 5)), torch.tensor([[1.0], [kappa]]))


def test_bad_loc_is_a_clear_error():
    with pytest.raises(ValueError, match="unit-norm.*Normalise"):
        VonMisesFisher(torch.ones(5), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="NaN"):
        VonMisesFisher(torch.tensor([float("nan"), 0.0, 1.0]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match=r"\[\.\.\., 1\]"):
        VonMisesFisher(unit(torch.ones(4, 5)), torch.ones(4))
    VonMisesFisher(unit(torch.ones(4, 5)) * (1 + 5e-5), torch.ones(4, 1))  # float32 rounding ok


def test_batch_shapes():
    torch.manual_seed(0)
    m = 6
    loc = unit(torch.randn(4, 3, m))
    kappa = torch.rand(4, 3, 1) * 50 + 0.1
    q = VonMisesFisher(loc, kappa)
    assert q.batch_shape == (4, 3) and q.event_shape == (m,)
    z = q.rsample((5,))
    assert z.shape == (5, 4, 3, m) and z.dtype == torch.float32
    assert q.log_prob(z).shape == (5, 4, 3)
    assert q.entropy().shape == (4, 3) and q.mean.shape == (4, 3, m)
    p = HypersphericalUniform(m)
    assert kl_divergence(q, p).shape == (4, 3)
    assert kl_divergence(q, HypersphericalUniform(m, batch_shape=(2, 4, 3))).shape == (2, 4, 3)
    # kappa broadcasts over leading dims
    assert VonMisesFisher(loc, torch.ones(1, 3, 1)).rsample().shape == (4, 3, m)
    with pytest.raises(ValueError, match="R\\^6"):
        kl_divergence(q, HypersphericalUniform(m + 1))


def test_rsample_is_differentiable_in_batched_parameters():
    torch.manual_seed(0)
    loc = unit(torch.randn(8, 10)).requires_grad_()
    kappa = (torch.rand(8, 1) * 100 + 1).requires_grad_()
    z = VonMisesFisher(loc, kappa).rsample((3,))
    (z[..., :2].sum() + z.pow(3).sum()).backward()
    assert torch.isfinite(loc.grad).all() and torch.isfinite(kappa.grad).all()
    assert kappa.grad.abs().sum() > 0


def test_hyperspherical_uniform():
    p = HypersphericalUniform(3, batch_shape=(2,), dtype=F64)
    assert p.event_shape == (3,) and p.batch_shape == (2,)
    torch.testing.assert_close(p.entropy(), t64([math.log(4 * math.pi)] * 2))  # |S^2| = 4 pi
    z = p.sample((1000,))
    assert z.shape == (1000, 2, 3)
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(1000, 2, dtype=F64))
    log_p = torch.full((1000, 2), -math.log(4 * math.pi), dtype=F64)
    torch.testing.assert_close(p.log_prob(z), log_p)
    assert abs(log_sphere_area(2) - math.log(2 * math.pi)) < 1e-15  # the circle
    # uniform = vMF as kappa -> 0; first coordinate of a uniform point has mean 0, var 1/m
    z = HypersphericalUniform(10, dtype=F64).sample((20_000,))
    assert abs(z[:, 0].mean().item()) < 4 * math.sqrt(0.1 / 20_000)
    with pytest.raises(ValueError, match="ambient"):
        HypersphericalUniform(0)


def test_circle_samples_survive_an_exact_zero_from_randn(monkeypatch):
    """m = 2: the tangent direction is a sign; randn can return an exact 0 (seen as a NaN sample
    in an S^1 x 5 product evaluated with k = 100 on 10,000 images)."""
    real = torch.randn
    monkeypatch.setattr(torch, "randn", lambda *a, **k: real(*a, **k) * 0.0)
    q = VonMisesFisher(torch.tensor([[0.6, 0.8]]), torch.tensor([[50.0]]))
    z = q.rsample((1000,))
    assert torch.isfinite(z).all()
    assert torch.allclose(z.norm(dim=-1), torch.ones(1000), atol=1e-5)
