"""The Bessel functions of the vMF (models/hyperspherical/bessel.py): values against
scipy.special.ive (and mpmath where ive underflows), derivatives against closed forms and finite
differences, gradcheck."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special as sp
import torch

from models.hyperspherical.bessel import _debye_polynomials, bessel_ratio, ive, log_hyp0f1, log_ive

F64 = torch.float64
ORDERS = [0.0, 0.5, 1.0, 4.0, 24.0, 99.0, 499.0]
KAPPAS = [1e-3, 0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5]


def t64(values) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


# --- Bessel functions -------------------------------------------------------------------------


def test_debye_polynomials_match_dlmf():
    u = _debye_polynomials()
    np.testing.assert_allclose(u[1][:4], [0, 3 / 24, 0, -5 / 24], rtol=1e-15)
    np.testing.assert_allclose(u[2][:7], [0, 0, 81 / 1152, 0, -462 / 1152, 0, 385 / 1152])
    assert all(c == 0 for c in u[3][10:])  # u_k has degree 3k


@pytest.mark.parametrize("v", ORDERS)
def test_ive_and_log_ive_match_scipy(v):
    x = t64(KAPPAS)
    ref = sp.ive(v, x.numpy())
    ok = ref > 1e-290  # scipy underflows beyond; that region is checked against mpmath below
    got = ive(v, x).numpy()
    np.testing.assert_allclose(got[ok], ref[ok], rtol=1e-11, atol=0)
    np.testing.assert_allclose(log_ive(v, x).numpy()[ok], np.log(ref[ok]), rtol=1e-12, atol=1e-12)
    assert (got[~ok] < 1e-280).all()


@pytest.mark.parametrize("v", [24.0, 99.0, 250.0, 499.0])
def test_log_ive_where_ive_underflows_matches_mpmath(v):
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 40
    kappas = [1e-3, 1e-2, 0.1, 1.0, 10.0]
    got = log_ive(v, t64(kappas)).numpy()
    for g, k in zip(got, kappas, strict=True):
        k = mp.mpf(k)  # log I_v = log 0F1(;v+1;k^2/4) + v log(k/2) - lgamma(v+1), exact in mpmath
        ref = mp.log(mp.hyp0f1(v + 1, k * k / 4)) + v * mp.log(k / 2) - mp.loggamma(v + 1) - k
        assert np.isfinite(g)
        assert abs(g - float(ref)) <= 1e-15 * abs(float(ref)) + 1e-13, (v, float(k), g, ref)


@pytest.mark.parametrize("v", ORDERS)
def test_float32_in_float32_out(v):
    x32 = torch.tensor(KAPPAS, dtype=torch.float32)
    for fn in (ive, log_ive, bessel_ratio, log_hyp0f1):
        out = fn(v, x32)
        assert out.dtype == torch.float32
        ref = fn(v, x32.to(F64))
        big = ref.abs() > 1e-30  # ive underflows float32 below ~1e-38
        torch.testing.assert_close(out.to(F64)[big], ref[big], rtol=2e-7, atol=0)


@pytest.mark.parametrize("v", ORDERS)
def test_bessel_ratio_exact(v):
    x = t64(KAPPAS)
    got = bessel_ratio(v, x).numpy()
    num, den = sp.ive(v + 1, x.numpy()), sp.ive(v, x.numpy())
    ok = (num > 1e-290) & (den > 1e-290)
    np.testing.assert_allclose(got[ok], num[ok] / den[ok], rtol=1e-11)
    small = x.numpy() < 1e-2  # I_{v+1}/I_v ~ (x/2)/(v+1) as x -> 0, also where ive underflows
    np.testing.assert_allclose(got[small], x.numpy()[small] / (2 * (v + 1)), rtol=1e-4)
    assert ((got > 0) & (got < 1)).all()


def test_bessel_ratio_approx_is_the_product_space_formula():
    k = torch.logspace(-3, 5, 40, dtype=F64)
    for m in (3, 10, 50, 1000):
        v = m / 2  # docs/specs/hyperspherical.md#13-bessel-ratio: A_m = I_v / I_{v-1} with v = m/2
        lam = [v + (a - 1) / 2 for a in (0, 2)]
        delta = [(v - 0.5) + la / (2 * torch.sqrt(la * la + k * k)) for la in lam]
        ref = sum(k / (d + torch.sqrt(d * d + k * k)) for d in delta) / 2
        approx = bessel_ratio(m / 2 - 1, k, approx=True)
        torch.testing.assert_close(approx, ref, rtol=1e-14, atol=0)
        exact = bessel_ratio(m / 2 - 1, k)
        assert ((approx / exact - 1).abs() < 0.03).all()  # 2.5% at m = 3, 1e-7 at m = 1000


@pytest.mark.parametrize("v", ORDERS)
def test_log_ive_gradient_closed_form_and_finite_differences(v):
    x = t64(KAPPAS).requires_grad_()
    (grad,) = torch.autograd.grad(log_ive(v, x).sum(), x)
    assert torch.isfinite(grad).all()
    x0 = x.detach()
    # closed form d/dx log ive = I_{v+1}/I_v + v/x - 1 (ratio checked against scipy above)
    closed = bessel_ratio(v, x0) + v / x0 - 1
    torch.testing.assert_close(grad, closed, rtol=1e-9, atol=0)
    h = 1e-5 * x0
    fd = (log_ive(v, x0 + h) - log_ive(v, x0 - h)) / (2 * h)
    torch.testing.assert_close(grad, fd, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("v", [0.0, 0.5, 1.0, 4.0, 24.0])
def test_ive_gradient_is_the_reference_formula(v):
    x = t64(KAPPAS).requires_grad_()
    (grad,) = torch.autograd.grad(ive(v, x).sum(), x)
    xn = x.detach().numpy()
    # docs/specs/hyperspherical.md#14-bessel-function-and-its-gradient
    ref = sp.ive(v - 1, xn) - sp.ive(v, xn) * (v + xn) / xn
    # the formula cancels at large x (ref ~ ive / (2x)); compare at the scale of its terms
    scale = sp.ive(v - 1, xn) + sp.ive(v, xn) * (v + xn) / xn
    assert (np.abs(grad.numpy() - ref) <= 1e-12 * scale).all()


@pytest.mark.parametrize("v", [0.0, 0.5, 4.0, 24.0, 99.0, 499.0])
def test_bessel_ratio_and_hyp0f1_gradients(v):
    x = t64(KAPPAS).requires_grad_()
    (g_ratio,) = torch.autograd.grad(bessel_ratio(v, x).sum(), x)
    (g_hyp,) = torch.autograd.grad(log_hyp0f1(v, x).sum(), x)
    x0 = x.detach()
    r = bessel_ratio(v, x0)
    torch.testing.assert_close(g_hyp, r, rtol=1e-15, atol=0)  # d/dx log 0F1 = I_{v+1}/I_v
    h = 1e-4 * x0
    fd = (bessel_ratio(v, x0 + h) - bessel_ratio(v, x0 - h)) / (2 * h)
    # dr/dx ~ (2v+1)/(2 x^2) at large x: an O(1/x^2) difference of O(1/x) terms
    torch.testing.assert_close(g_ratio, fd, rtol=1e-4, atol=1e-15)
    assert (g_ratio > 0).all()


def test_gradcheck_every_function():
    x = t64([0.05, 0.9, 1.3, 3.0, 40.0, 700.0]).requires_grad_()
    for v in (0.0, 1.5, 4.0, 30.0):
        for fn in (ive, log_ive, bessel_ratio, log_hyp0f1):
            assert torch.autograd.gradcheck(lambda k, fn=fn, v=v: fn(v, k), (x,))


def test_bessel_edge_cases():
    assert ive(0.0, t64([0.0])).item() == 1.0
    assert ive(2.0, t64([0.0])).item() == 0.0
    assert torch.isnan(log_ive(0.5, t64([-1.0]))).all()
    with pytest.raises(ValueError, match="order"):
        log_ive(-0.5, t64([1.0]))
