"""The VLAE paper's families (VLAE, SA-VAE, VAE+HF, VAE+IAF) against closed forms and autograd.

The registry-wide contract (finite terms, gradients, IWAE) is in test_models.py; bad
hyperparameters and the authors' initialisation in test_vlae_config.py.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.autograd.functional import hessian, jacobian
from torch.distributions import MultivariateNormal, kl_divergence

import models
from models.posteriors import PrecisionGaussian, diagonal_normal
from models.vlae.flows import MADE, HouseholderFlow, IAFFlow
from models.vlae.savae import SVI_CLIP
from models.vlae.vlae import tangent_forward

X_SHAPE = (1, 2, 3)  # D = 6: small enough for closed forms and full Jacobians
D, Z = 6, 3


def build(family: str, **config) -> nn.Module:
    torch.manual_seed(0)
    return models.build(family, {"latent_dim": Z, "hidden_dim": 8, **config}, X_SHAPE).double()


def data(n: int = 5, binary: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, *X_SHAPE, generator=g, dtype=torch.float64)
    return torch.bernoulli(x, generator=g) if binary else 2 * x - 1


def linear_gaussian_vlae(sigma2: float = 0.3, **config) -> nn.Module:
    """VLAE whose decoder is one linear map g(z) = W z + b with output variance sigma2."""
    model = build("vlae", likelihood="gaussian", **config)
    torch.manual_seed(2)
    model.decoder = nn.Sequential(nn.Linear(Z, D)).double()
    with torch.no_grad():
        model.p_x.log_var.fill_(math.log(sigma2))
    return model


def exact_posterior(model, x, sigma2):
    """p(z|x) = N(S W^T (x - b) / s2, S), S = (I + W^T W / s2)^-1, and log p(x) = log N(b, WW^T +
    s2 I), for p(z) = N(0, I), p(x|z) = N(W z + b, s2 I)."""
    w, b = model.decoder[0].weight, model.decoder[0].bias
    cov = torch.linalg.inv(torch.eye(Z, dtype=w.dtype) + w.T @ w / sigma2)
    mean = (x.flatten(1) - b) @ w @ cov / sigma2
    marginal = MultivariateNormal(b, w @ w.T + sigma2 * torch.eye(D, dtype=w.dtype))
    return mean, cov, marginal.log_prob(x.flatten(1))


# --- VLAE -------------------------------------------------------------------------------------


@pytest.mark.parametrize("updates", [1, 3])
def test_vlae_on_a_linear_gaussian_decoder_is_the_exact_posterior(updates):
    sigma2, x = 0.3, data()
    model = linear_gaussian_vlae(sigma2, updates=updates, update_lr=1.0, analytic_kl=False)
    mean, cov, log_px = exact_posterior(model, x, sigma2)
    with torch.no_grad():
        q_z = model.posterior(x)
        assert torch.allclose(q_z.mean, mean, atol=1e-10)
        assert torch.allclose(q_z.covariance_matrix, cov.expand(5, Z, Z), atol=1e-10)
        # q = p(z|x) makes log p(x|z) + log p(z) - log q(z|x) = log p(x) for every sample z
        for _ in range(3):
            assert torch.allclose(model(x).elbo, log_px, atol=1e-9)
        standard = MultivariateNormal(0 * mean, torch.eye(Z, dtype=mean.dtype))
        exact_kl = kl_divergence(MultivariateNormal(mean, cov), standard)
        assert torch.allclose(kl_divergence(q_z, model.prior()), exact_kl, atol=1e-10)


@pytest.mark.parametrize("schedule", ["harmonic", "geometric"])
def test_vlae_damped_updates_follow_the_schedule(schedule):
    """With a linear decoder mu* is the exact mode whatever mu_t, so mu_T - mu* shrinks by
    prod_t (1 - eta_t) from the encoder's mu_0 - mu*."""
    sigma2, x = 0.3, data()
    model = linear_gaussian_vlae(sigma2, updates=4, vlae_eta_schedule=schedule)
    mean, _, _ = exact_posterior(model, x, sigma2)
    etas = [0.5 / (t + 1) if schedule == "harmonic" else 0.5 * 0.9**t for t in range(4)]
    with torch.no_grad():
        mu_0 = model.q_head(model.encoder(x.flatten(1)))
        expected = mean + math.prod(1 - e for e in etas) * (mu_0 - mean)
        assert torch.allclose(model.mode(x), expected, atol=1e-10)


def log_joint(model, x_one):
    """z -> log p(x|z) + log p(z) for one example."""
    return lambda z: model.likelihood(z).log_prob(x_one) + model.prior().log_prob(z)


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_vlae_update_is_the_newton_step_of_the_relu_decoder(likelihood):
    """A ReLU decoder is piecewise linear, so -Hessian of log p(x|z) + log p(z) is J^T W J + I:
    Lambda is the exact negative Hessian and an undamped update the exact Newton step (up to the
    authors' 1e-5 added to p(1 - p) for the Bernoulli)."""
    x = data(3, binary=likelihood == "bernoulli")
    model = build("vlae", likelihood=likelihood, updates=1, update_lr=1.0)
    model.initialise(x)
    with torch.no_grad():
        mu_0 = model.q_head(model.encoder(x.flatten(1)))
        chol, _ = model.laplace(x.flatten(1), mu_0)
        mu_1 = model.mode(x)
    tol = 1e-3 if likelihood == "bernoulli" else 1e-9
    for i in range(3):
        f = log_joint(model, x[i])
        neg_h = -hessian(f, mu_0[i])
        grad = jacobian(f, mu_0[i])
        assert torch.allclose(chol[i] @ chol[i].T, neg_h, rtol=tol, atol=tol)
        newton = mu_0[i] + torch.linalg.solve(neg_h, grad)
        assert torch.allclose(mu_1[i], newton, rtol=tol, atol=tol)


def test_decoder_jacobian_is_batched_and_exact():
    model = build("vlae", hidden_dim=16)
    z = torch.randn(7, Z, dtype=torch.float64)
    out, jac_t = tangent_forward(model.decoder, z)
    assert out.shape == (7, D) and jac_t.shape == (7, Z, D)
    assert torch.allclose(out, model.decoder(z))
    for i in range(7):
        assert torch.allclose(jac_t[i].T, jacobian(model.decoder, z[i]), atol=1e-12)


def test_precision_gaussian_density_samples_and_kl():
    torch.manual_seed(3)
    a = torch.randn(2, Z, Z, dtype=torch.float64)
    precision = a @ a.mT + 0.5 * torch.eye(Z, dtype=torch.float64)
    loc = torch.randn(2, Z, dtype=torch.float64)
    q = PrecisionGaussian(loc, torch.linalg.cholesky(precision))
    reference = MultivariateNormal(loc, precision_matrix=precision)
    z = q.rsample((4000,))
    assert z.shape == (4000, 2, Z)
    assert torch.allclose(q.log_prob(z), reference.log_prob(z), atol=1e-10)
    assert torch.allclose(q.entropy(), reference.entropy(), atol=1e-10)
    empirical = torch.einsum("nbi,nbj->bij", z - loc, z - loc) / z.shape[0]
    assert torch.allclose(empirical, reference.covariance_matrix, atol=0.1)
    zero = torch.zeros(Z, dtype=torch.float64)
    prior = diagonal_normal(zero, zero)
    standard = MultivariateNormal(zero, torch.eye(Z, dtype=torch.float64))
    assert torch.allclose(kl_divergence(q, prior), kl_divergence(reference, standard), atol=1e-10)


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_vlae_non_finite_values_give_a_nan_elbo_not_an_exception(likelihood):
    x = data(4, binary=likelihood == "bernoulli")
    model = build("vlae", likelihood=likelihood)
    with torch.no_grad():
        model.decoder[0].weight[0, 0] = float("inf")
        assert torch.isnan(model(x).elbo).all()
    if likelihood == "gaussian":  # sigma^2 -> 0: an infinite precision
        model = build("vlae", likelihood=likelihood)
        with torch.no_grad():
            model.p_x.log_var.fill_(-1e4)
            assert torch.isnan(model(x).elbo).all()


# --- VAE+HF and VAE+IAF -----------------------------------------------------------------------


def flow_jacobian(flow, z_0, h):
    """Per-example Jacobian dz_T/dz_0 [B, d, d] for fixed h, by autograd."""
    return torch.stack([jacobian(lambda z, i=i: flow(z, h[i])[0], z_0[i]) for i in range(len(z_0))])


def test_householder_flow_is_an_orthogonal_volume_preserving_map():
    torch.manual_seed(4)
    flow = HouseholderFlow(context_dim=8, latent_dim=5, steps=3).double()
    z_0, h = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 8, dtype=torch.float64)
    z_t, log_det = flow(z_0, h)
    jac = flow_jacobian(flow, z_0, h)
    assert torch.allclose(jac @ jac.mT, torch.eye(5, dtype=torch.float64).expand(4, 5, 5))
    assert torch.allclose(torch.linalg.det(jac).abs(), torch.ones(4, dtype=torch.float64))
    assert torch.allclose(log_det, torch.zeros(4, dtype=torch.float64))
    assert not torch.allclose(z_t, z_0)


def test_hf_closed_form_kl_is_the_mean_of_the_monte_carlo_kl():
    x = data(3)
    mc, exact = build("vae_hf", analytic_kl=False), build("vae_hf", analytic_kl=True)
    torch.manual_seed(5)
    with torch.no_grad():
        kls = torch.stack([mc(x).kl for _ in range(4000)])
        closed = exact(x).kl
    se = kls.std(0) / math.sqrt(kls.shape[0])
    assert ((kls.mean(0) - closed).abs() < 4 * se).all()


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_iaf_log_det_matches_the_autograd_jacobian(steps):
    torch.manual_seed(6)
    flow = IAFFlow(latent_dim=5, context_dim=8, width=12, steps=steps, mask_context=False)
    flow = flow.double()
    z_0, h = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 8, dtype=torch.float64)
    _, log_det = flow(z_0, h)
    sign, log_abs_det = torch.linalg.slogdet(flow_jacobian(flow, z_0, h))
    assert (sign > 0).all()
    assert torch.allclose(log_det, log_abs_det, atol=1e-10)


def test_iaf_step_is_triangular_in_the_autoregressive_order():
    torch.manual_seed(7)
    flow = IAFFlow(latent_dim=5, context_dim=8, width=12, steps=1, mask_context=False).double()
    z_0, h = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 8, dtype=torch.float64)
    jac = flow_jacobian(flow, z_0, h)
    upper = torch.triu(jac, diagonal=1)
    assert (upper == 0).all()  # z_T,i depends on z_0,j only for j <= i
    assert (torch.tril(jac, diagonal=-1) != 0).any()  # and really on earlier dimensions
    _, s = flow.steps[0](z_0, flow.steps[0].context(h))
    assert torch.allclose(jac.diagonal(dim1=-2, dim2=-1), torch.sigmoid(s))


@pytest.mark.parametrize("mask_context", [False, True])
def test_iaf_context_reaches_the_flow_unless_masked_as_the_authors_did(mask_context):
    torch.manual_seed(8)
    made = MADE(latent_dim=5, context_dim=8, width=12, mask_context=mask_context).double()
    z = torch.randn(4, 5, dtype=torch.float64)
    h = torch.randn(4, 8, dtype=torch.float64)
    m_1, _ = made(z, made.context(h))
    m_2, _ = made(z, made.context(h + 1))
    assert torch.allclose(m_1, m_2) == mask_context


# --- SA-VAE -----------------------------------------------------------------------------------


def elbo_of(model, x, mu, log_var, samples=256):
    """A precise ELBO of q = N(mu, diag exp(log_var)): closed-form KL, averaged log p(x|z)."""
    q = diagonal_normal(mu, log_var)
    log_px_z = model.likelihood(q.sample((samples,))).log_prob(x).mean(0)
    return log_px_z - kl_divergence(q, model.prior())


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_savae_refinement_raises_the_elbo_of_a_fixed_decoder(likelihood):
    """Ascent by default; the authors' sign (savae_repo_sign) lowers the ELBO instead."""
    x = data(16, binary=likelihood == "bernoulli")
    gains = {}
    for repo_sign in (False, True):
        model = build("savae", likelihood=likelihood, svi_lr=0.05, savae_repo_sign=repo_sign)
        model.initialise(x)
        per_seed = []
        for seed in range(4):
            torch.manual_seed(seed)
            with torch.no_grad():
                mu, log_var = model.encode(x)
                refined = model.refine(x, mu, log_var)
                per_seed.append(elbo_of(model, x, *refined) - elbo_of(model, x, mu, log_var))
        gain = torch.stack(per_seed)  # [seeds, examples]
        gains[repo_sign] = (gain.mean() / (gain.std() / math.sqrt(gain.numel()))).item()
    # mean gain in standard errors: clearly up with the paper's sign, down with the authors'
    assert gains[False] > 3, gains
    assert gains[True] < -3, gains


def test_savae_training_backpropagates_through_the_svi_steps():
    x = data(4)
    model = build("savae", svi_lr=0.05)
    mu, log_var = model.encode(x)
    mu_t, _ = model.refine(x, mu, log_var)
    # the decoder moves mu_T only through the SVI gradients: second-order terms are in the graph
    (grad,) = torch.autograd.grad(mu_t.sum(), model.decoder[-1].weight)
    assert grad.abs().sum() > 0
    with torch.no_grad():  # evaluation: the same steps, the graph dropped
        assert model.refine(x, mu.detach(), log_var.detach())[0].grad_fn is None


def test_savae_authors_batch_mean_steps_only_in_forward():
    """savae_batch_mean_grad: steps on the batch-mean gradient in forward (training, validation),
    the per-example gradient in log_likelihood (the authors' one-example importance sampling)."""
    x = data(4)
    authors = build("savae", svi_lr=0.05, savae_batch_mean_grad=True)
    paper = build("savae", svi_lr=0.05)
    with torch.no_grad():
        for model, scale in ((authors, 1 / 4), (paper, 1.0)):
            torch.manual_seed(0)
            expected = model.refine(x, *model.encode(x), grad_scale=scale)[0]
            torch.manual_seed(0)
            assert torch.allclose(model.posterior(x).mean, expected)
        assert not torch.allclose(authors.posterior(x).mean, paper.posterior(x).mean)
        log_px = []
        for model in (authors, paper):
            torch.manual_seed(0)
            log_px.append(model.log_likelihood(x, k=3))
        assert torch.allclose(*log_px)


def test_savae_gradient_clips():
    per_example = build("savae")
    g = torch.tensor([[3.0, 4.0], [30.0, 40.0], [0.0, 0.0]], dtype=torch.float64)
    clipped = per_example.clip(g)
    assert torch.allclose(clipped[0], g[0]) and torch.allclose(clipped[2], g[2])
    assert torch.allclose(clipped[1].norm(), torch.tensor(SVI_CLIP, dtype=torch.float64))
    authors = build("savae", savae_squared_norm_clip=True)  # their utils.clip_grad_norm
    s = g.square().sum(-1)  # per example (their sum over the last axis): 25, 2500, 0
    expected = g / torch.clamp(s / SVI_CLIP, min=1).unsqueeze(-1)
    assert torch.allclose(authors.clip(g), expected)
    assert torch.allclose(authors.clip(g).square().sum(-1)[:2], 25 / s[:2])  # both above 5
