"""The model contract, checked for every registered family and likelihood."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent, Normal

import models
from models.base import LatentVariableModel, streaming_iwae

X_SHAPE = (1, 28, 28)
HIERARCHICAL = {"ladder", "dct_vae", "dvp_vae"}
"""Families whose likelihoods are bernoulli and logistic_mixture (8-bit levels in [0, 1])."""
CASES = [
    (family, lik)
    for family in models.REGISTRY
    for lik in (("bernoulli", "logistic_mixture") if family in HIERARCHICAL else
                ("gaussian", "bernoulli"))
]  # fmt: skip


SMALL = {  # a small instance of each family (keys beyond latent_dim and likelihood differ)
    "vae": {"hidden_dim": 32},
    "svae": {"hidden_dims": "32,16"},
    "psvae": {"hidden_dims": "32,16", "spheres": "2,1,1"},
    "nvae": {"hidden_dims": "32,16"},
    "spvae": {"hidden_dims": "8,8", "cell_size": 14, "samples": 1},  # k=1: forward = ll(x, 1)
    "convspvae": {"n_dense": 8, "filters": "2,3", "cell_size": 14, "samples": 1},
    "spvae_vae": {"hidden_dims": "16,16", "samples": 1},
    "spvae_convvae": {"n_dense": 8, "filters": "2,3", "kernel_size": 5, "samples": 1},
    "vlae": {"hidden_dim": 16, "updates": 2},
    "savae": {"hidden_dim": 32, "svi_steps": 2, "svi_lr": 0.05},
    "vae_hf": {"hidden_dim": 32, "flows": 2},
    "vae_iaf": {"hidden_dim": 32, "flows": 2, "iaf_dim": 16},
    "ladder": {"latent_scales": "1,2", "num_ch": 4, "num_mix": 2},
    # test_repeats=1: log p(u)'s test estimate is one importance weight, whose log has the
    # bound's mean (the K = 1 test below)
    "dct_vae": {
        "latent_scales": "1,1",
        "num_ch": 4,
        "num_mix": 2,
        "ctx_size": 3,
        "diffusion_steps": 3,
        "unet_channels": 16,
        "unet_blocks": 1,
        "test_repeats": 1,
    },
    "dvp_vae": {
        "latent_scales": "1,1",
        "num_ch": 4,
        "enc_blocks": 1,
        "num_mix": 2,
        "mix_coeffs": False,  # 1-channel data
        "ctx_size": 3,
        "diffusion_steps": 3,
        "unet_channels": 16,
        "unet_blocks": 1,
    },
}


def small(family: str, likelihood: str):
    torch.manual_seed(0)
    config = {"likelihood": likelihood, **SMALL[family]}
    if family not in HIERARCHICAL:
        config["latent_dim"] = 4
    model = models.build(family, config, X_SHAPE)
    if family in HIERARCHICAL:
        # zero-initialised gates and output convs (ReZero-style, the authors' init) pass no
        # gradient to the layers behind them until they move: start them off zero
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        model.initialise(batch(likelihood, 64))
    return model


def batch(likelihood: str, n: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, *X_SHAPE, generator=g)
    if likelihood == "logistic_mixture":  # 8-bit levels in [0, 1]
        return torch.round(x * 255) / 255
    return torch.bernoulli(x, generator=g) if likelihood == "bernoulli" else x - 0.5


@pytest.mark.parametrize("family,likelihood", CASES)
def test_forward_gives_finite_per_example_terms(family, likelihood):
    model = small(family, likelihood)
    terms = model(batch(likelihood))
    assert terms.log_px_z.shape == terms.kl.shape == (8,)
    assert torch.isfinite(terms.elbo).all()
    if getattr(model, "analytic_kl", True):
        assert (terms.kl >= 0).all()  # a closed-form KL
    else:  # a one-sample Monte-Carlo KL (flows): >= 0 in expectation only
        with torch.no_grad():
            kl = torch.stack([model(batch(likelihood)).kl for _ in range(64)])
        assert (kl.mean(0) > -4 * kl.std(0) / 8).all()


@pytest.mark.parametrize("family,likelihood", CASES)
def test_gradients_reach_every_parameter(family, likelihood):
    model = small(family, likelihood)
    model.initialise(batch(likelihood, 64))
    (-model(batch(likelihood)).elbo.mean()).backward()
    for name, p in model.named_parameters():
        if family == "ladder" and name == "layers.0.prior_net.net.0.weight":
            continue  # reads the fixed zero initial state (the authors' too): its bias learns
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {name}"


@pytest.mark.parametrize("family,likelihood", CASES)
def test_iwae_with_one_sample_is_the_elbo_in_expectation(family, likelihood):
    model, x = small(family, likelihood), batch(likelihood, 4)
    model.eval()  # log_likelihood estimates the evaluation-mode model (no dropout, no dither)
    torch.manual_seed(0)
    reps = 400
    rows = x.repeat(reps, *([1] * (x.dim() - 1)))  # reps independent draws per example, batched
    ll1 = model.log_likelihood(rows, k=1).view(reps, -1)
    with torch.no_grad():
        elbo = model(rows).elbo.view(reps, -1)
    # Both estimate E_q[log w] (analytic KL only lowers the ELBO estimate's variance).
    se = torch.sqrt(ll1.var(0) / reps + elbo.var(0) / reps)
    assert ((ll1.mean(0) - elbo.mean(0)).abs() < 4 * se + 1e-3).all()


@pytest.mark.parametrize("family,likelihood", CASES)
def test_iwae_rises_with_k(family, likelihood):
    """The IWAE bound rises with k in expectation. With a near-exact proposal (VLAE's Laplace)
    it has converged by k = 100, so between neighbours only a drop beyond the noise fails."""
    model, x = small(family, likelihood), batch(likelihood, 16)
    torch.manual_seed(0)
    ll = {k: model.log_likelihood(x, k) for k in (1, 10, 100)}
    assert ll[100].mean() > ll[1].mean()
    for a, b in ((1, 10), (10, 100)):
        d = ll[b] - ll[a]  # paired over the same examples
        assert d.mean() > -3 * d.std() / len(d) ** 0.5, (a, b, d.mean())


@pytest.mark.parametrize("family,likelihood", CASES)
def test_sample_has_the_data_shape(family, likelihood):
    model = small(family, likelihood)
    assert model.sample(3).shape == (3, *X_SHAPE)
    assert model.sample(3, mean=True).shape == (3, *X_SHAPE)


def test_unknown_family_and_config_key_are_clear_errors():
    with pytest.raises(ValueError, match="unknown model family 'nope'.*vae"):
        models.build("nope", {}, X_SHAPE)
    with pytest.raises(ValueError, match="unknown config keys.*'latent'"):
        models.build("vae", {"latent": 3}, X_SHAPE)
    with pytest.raises(ValueError, match="likelihood must be one of .*got 'poisson'"):
        models.build("vae", {"likelihood": "poisson"}, X_SHAPE)


class LinearGaussian(LatentVariableModel):
    """p(z) = N(0, I), p(x|z) = N(W z + b, s^2 I), with q(z|x) the exact posterior's mean and a
    deliberately over-dispersed diagonal scale, so that q is wrong but a good IS proposal.

    log p(x) = log N(x; b, W W^T + s^2 I) in closed form.
    """

    def __init__(self, d_x=5, d_z=2, s=0.7):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.W, self.b, self.s = (
            torch.randn(d_x, d_z, generator=g),
            torch.randn(d_x, generator=g),
            s,
        )
        self.cov = torch.linalg.inv(torch.eye(d_z) + self.W.T @ self.W / s**2)  # exact posterior

    def posterior(self, x):
        loc = (x - self.b) @ self.W @ self.cov / self.s**2
        return Independent(Normal(loc, 1.5 * self.cov.diagonal().sqrt().expand_as(loc)), 1)

    def prior(self):
        return Independent(Normal(torch.zeros(2), torch.ones(2)), 1)

    def likelihood(self, z):
        return Independent(Normal(z @ self.W.T + self.b, self.s), 1)

    def exact_log_px(self, x):
        cov = self.W @ self.W.T + self.s**2 * torch.eye(self.W.shape[0])
        return torch.distributions.MultivariateNormal(self.b, cov).log_prob(x)


def test_iwae_matches_the_closed_form_on_a_linear_gaussian_model():
    model = LinearGaussian()
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(4)) * 2
    torch.manual_seed(0)
    exact = model.exact_log_px(x)
    # A small max_rows forces many chunks: the streaming logsumexp must still be exact.
    estimate = model.log_likelihood(x, k=20000, max_rows=6 * 999)
    assert torch.allclose(estimate, exact, atol=0.05), (estimate, exact)
    gap_k1 = (exact - model.log_likelihood(x, k=1)).mean()
    assert gap_k1 > 0.05  # the imperfect q leaves a real gap at k = 1


def test_streaming_iwae_equals_one_shot_logsumexp():
    log_w = torch.randn(1000, 3)
    chunks = iter(torch.split(log_w, 7))
    streamed = streaming_iwae(lambda c: next(chunks), k=1000, chunk=7)
    expected = torch.logsumexp(log_w, 0) - math.log(1000)
    assert torch.allclose(streamed, expected, atol=1e-5)
    with pytest.raises(ValueError, match="k must be >= 1"):
        streaming_iwae(lambda c: log_w[:c], k=0, chunk=1)
