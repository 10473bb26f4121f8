"""SPVAE: leaf VAEs, the model and its estimator, bad input (the SPN: test_spn.py; the baselines:
test_spvae_baselines.py)."""

from __future__ import annotations

import math

import pytest
import torch

import models
from models.spvae.leaves import (
    PATCH_LIKELIHOODS,
    GroupedConvDecoder,
    GroupedConvEncoder,
    GroupedMLP,
)
from models.spvae.spn import GraphCounts
from models.spvae.spvae import (
    SPVAE,
    ConvSPVAEConfig,
    SPVAEConfig,
)
from tests.unit.test_spn import induced_trees

SMALL = {"spvae": {"hidden_dims": "6,6"}, "convspvae": {"n_dense": 6, "filters": "2,3"}}


def tiny(x_shape=(1, 8, 8), family="spvae", **kw) -> SPVAE:
    torch.manual_seed(0)
    cfg = {"latent_dim": 3, "cell_size": 4, **SMALL[family], **kw}
    return models.build(family, cfg, x_shape)


def data(likelihood: str, n: int = 6, shape=(1, 8, 8)) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, *shape, generator=g)
    if likelihood == "bernoulli":
        return torch.bernoulli(x, generator=g)
    if likelihood == "binomial":
        return torch.round(255 * x) / 255
    return x


# --- leaves -----------------------------------------------------------------------------------


def test_grouped_mlp_is_independent_mlps():
    torch.manual_seed(0)
    net = GroupedMLP(3, [5, 4, 2])
    x = torch.randn(3, 7, 5)
    out = net(x)
    for g in range(3):
        h = torch.nn.functional.softplus(x[g] @ net.weights[0][g] + net.biases[0][g])
        assert torch.allclose(out[g], h @ net.weights[1][g] + net.biases[1][g], atol=1e-6)


def test_grouped_conv_networks_keep_the_leaves_apart():
    # Leaf g's outputs depend on leaf g's input only: the grouped convolutions and dense layers
    # are independent networks stacked, not one network over all patches.
    torch.manual_seed(0)
    cfg = ConvSPVAEConfig(n_dense=5, filters="2,3", cell_size=4)
    for net, width in (
        (GroupedConvEncoder(3, 2, 4, cfg, out=7), 2 * 16),
        (GroupedConvDecoder(3, 2, 4, cfg), cfg.latent_dim),
    ):
        x = torch.randn(3, 5, width, requires_grad=True)
        out = net(x)
        assert out.shape[:2] == (3, 5)
        (grad,) = torch.autograd.grad(out[1].sum(), x)
        assert grad[1].abs().sum() > 0 and grad[0].abs().sum() == grad[2].abs().sum() == 0


# The authors' initialisation (models/spvae/leaves.py docstring): tf.contrib's
# variance_scaling_initializer() defaults, truncated_normal(0, s) with s = sqrt(2.6 / fan_in) cut at
# +-2 s (std of N(0, 1) cut at +-2: 0.8796), zero biases; TF1 glorot_uniform convolutions.
TRUNC2_STD = 0.87962566103423978


def test_mlp_init_is_tf_contrib_variance_scaling_factor_2():
    torch.manual_seed(0)
    net = GroupedMLP(4, [400, 300, 49])
    for w, b, fan_in in zip(net.weights, net.biases, (400, 300), strict=True):
        s = math.sqrt(1.3 * 2.0 / fan_in)
        assert w.abs().max() <= 2 * s and w.abs().max() > 1.9 * s  # the truncation bound
        assert abs(w.mean().item()) < 0.01 * s
        # Var = 2.6 * 0.7737 / fan_in ~ 2.01 / fan_in: factor 2 (He), not 1
        assert w.std().item() == pytest.approx(s * TRUNC2_STD, rel=0.01)
        assert w.var().item() * fan_in == pytest.approx(2.01, rel=0.02)
        assert (b == 0).all()


def test_spvae_leaves_and_sum_weights_start_as_the_authors():
    torch.manual_seed(0)
    model = models.build("spvae", {"hidden_dims": "30,30", "latent_dim": 25}, (1, 28, 28))
    for net, fans in ((model.leaves.encoder, (49, 30, 30)), (model.leaves.decoder, (25, 30, 30))):
        for w, b, fan_in in zip(net.weights, net.biases, fans, strict=True):
            assert w.abs().max() <= 2 * math.sqrt(2.6 / fan_in) and (b == 0).all()
            assert w.std().item() == pytest.approx(math.sqrt(2.6 / fan_in) * TRUNC2_STD, rel=0.05)
    logits = torch.cat([layer.logits[layer.mask[:, None, :].expand_as(layer.logits)]
                        for layer in model.spn.layers])  # fmt: skip
    assert logits.numel() == (800 - 24) * 2 + 24  # 2 sums per region; the root: 1 sum, 24 products
    assert abs(logits.mean().item()) < 0.1 and logits.std().item() == pytest.approx(1, rel=0.1)


def test_conv_leaves_start_glorot_uniform_with_zero_biases():
    torch.manual_seed(0)
    model = models.build("convspvae", {"n_dense": 64, "filters": "4,8"}, (1, 28, 28))
    groups = 2 * model.leaves.n_leaves  # encoder: mean and precision networks
    for conv, (a, b) in zip(model.leaves.encoder.convs, ((1, 4), (4, 8)), strict=True):
        limit = math.sqrt(6 / (9 * (a + b)))
        assert conv.weight.shape == (groups * b, a, 3, 3) and (conv.bias == 0).all()
        assert conv.weight.abs().max() <= limit and conv.weight.abs().max() > 0.95 * limit
        assert conv.weight.var().item() == pytest.approx(limit**2 / 3, rel=0.1)
    for conv, (a, b) in zip(model.leaves.decoder.convs, ((8, 4), (4, 1)), strict=True):
        limit = math.sqrt(6 / (9 * (a + b)))
        assert conv.weight.abs().max() <= limit and (conv.bias == 0).all()
    dense = model.leaves.encoder.dense.weights[0]  # fan-in 8 filters x 7 x 7
    assert dense.abs().max() <= 2 * math.sqrt(2.6 / (8 * 49))


def test_patch_likelihoods_match_torch_distributions():
    torch.manual_seed(0)
    out = torch.randn(2, 3, 5, 7)
    x = torch.rand(3, 5, 7)
    m, tau = torch.sigmoid(out[0]), 1 + out[1] ** 2
    gauss = torch.distributions.Normal(m, tau.rsqrt()).log_prob(x).sum(-1)
    assert torch.allclose(PATCH_LIKELIHOODS["gaussian"].log_prob(out, x), gauss, atol=1e-4)
    n = torch.round(255 * x)
    binom = torch.distributions.Binomial(255, logits=out[0]).log_prob(n).sum(-1)
    assert torch.allclose(
        PATCH_LIKELIHOODS["binomial"].log_prob(out[:1], n / 255), binom, atol=1e-2
    )
    b = torch.bernoulli(x)
    bern = torch.distributions.Bernoulli(logits=out[0]).log_prob(b).sum(-1)
    assert torch.allclose(PATCH_LIKELIHOODS["bernoulli"].log_prob(out[:1], b), bern, atol=1e-5)


def test_patches_round_trip_and_follow_the_cell_raster():
    model = tiny((2, 8, 12), leaf_k=3)
    x = torch.randn(4, 2, 8, 12)
    xs = model.patches(x)  # [n_cells * leaf_k, B, D]
    assert xs.shape == (6 * 3, 4, 2 * 16)
    assert torch.equal(xs[3 * 3].reshape(4, 2, 4, 4), x[:, :, 4:8, 0:4])  # cell 3 = (1, 0)
    assert torch.equal(model.image(xs[::3]), x)


# --- the model and its estimator --------------------------------------------------------------


@pytest.mark.parametrize("family", ["spvae", "convspvae"])
@pytest.mark.parametrize("likelihood", ["gaussian", "binomial", "bernoulli"])
def test_forward_terms_are_finite_and_gradients_reach_leaves_and_sum_weights(family, likelihood):
    model = tiny(family=family, likelihood=likelihood)
    terms = model(data(likelihood))
    assert terms.log_px_z.shape == terms.kl.shape == (6,)
    assert torch.isfinite(terms.log_px_z).all() and (terms.kl == 0).all()
    (-terms.elbo.mean()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {name}"
    names = {name for name, _ in model.named_parameters()}
    assert any(n.startswith("spn.layers") for n in names)
    assert any(n.startswith("leaves.encoder") for n in names)
    assert any(n.startswith("leaves.decoder") for n in names)
    assert model.sample(3).shape == (3, 1, 8, 8)


def test_estimate_rises_with_k():
    model, x = tiny(likelihood="binomial"), data("binomial", 8)
    torch.manual_seed(0)
    means = [model.log_likelihood(x, k).mean().item() for k in (1, 10, 100)]
    assert means[0] < means[1] < means[2]


def test_k1_estimate_is_the_spn_of_one_sample_leaf_elbos():
    model, x = tiny(), data("gaussian", 3)
    torch.manual_seed(5)
    ll = model.log_likelihood(x, k=1)
    torch.manual_seed(5)
    with torch.no_grad():
        by_hand = model.spn(model.leaf_log_values(x, 1))
    assert torch.allclose(ll, by_hand)


def leaf_elbos(model: SPVAE, x: torch.Tensor, n: int = 4000) -> torch.Tensor:
    """Each leaf's ELBO E_q[log p(x_s|z)] - KL(q || N(0, I)), analytic KL, [B, V]."""
    with torch.no_grad():
        xs = model.patches(x)
        mu, lam = model.leaves.posterior(xs)
        kl = 0.5 * (1 / lam + mu.square() - 1 + torch.log(lam)).sum(-1)
        z = mu.unsqueeze(1) + torch.randn(mu.shape[0], n, *mu.shape[1:]) * lam.rsqrt().unsqueeze(1)
        rec = model.leaves.likelihood.log_prob(model.leaves.decode(z), xs.unsqueeze(1))
        return (rec.mean(1) - kl).T


def test_k1_expectation_is_the_spn_of_leaf_elbos():
    # A single induced tree (1x2 grid, one node per region): E[log P^_1] = log SPN(leaf ELBOs).
    # In general log SPN(exp v) is convex in the leaf log-values v, so E[log P^_1] >= that.
    reps = 400
    for kw, shape, exact in (
        ({"sum_k": 1, "leaf_k": 1}, (1, 4, 8), True),
        ({}, (1, 8, 8), False),
    ):
        model, x = tiny(shape, **kw), data("gaussian", 3, shape)
        torch.manual_seed(0)
        ll1 = torch.stack([model.log_likelihood(x, k=1) for _ in range(reps)])
        with torch.no_grad():
            spn_of_elbos = model.spn(leaf_elbos(model, x))
        se = ll1.std(0) / math.sqrt(reps) + 0.05
        if exact:
            assert len(induced_trees(model.spn, model.graph.root, 0)) == 1
            assert ((ll1.mean(0) - spn_of_elbos).abs() < 4 * se).all()
        else:
            assert (ll1.mean(0) > spn_of_elbos - 4 * se).all()


def test_log_likelihood_with_5000_samples_per_leaf_is_chunked_and_finite():
    torch.manual_seed(0)
    model = models.build(
        "spvae", {"latent_dim": 5, "hidden_dims": "16,16", "likelihood": "binomial"}, (1, 28, 28)
    )
    assert model.spn.counts() == GraphCounts.from_grid(4, 4)
    x = data("binomial", 1, (1, 28, 28))
    calls = []
    original = model.leaves.log_weights
    model.leaves.log_weights = lambda *a: calls.append(a[-1]) or original(*a)
    ll = model.log_likelihood(x, k=5000, max_rows=2**10)
    assert torch.isfinite(ll).all() and ll.shape == (1,)
    assert sum(calls) == 5000 and len(calls) > 1 and max(calls) < 5000


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg,x_shape,match",
    [
        ({"cell_size": 5}, (1, 28, 28), "cell_size 5 does not divide the 28x28 image"),
        ({"cell_size": 32}, (1, 28, 28), "cell_size 32 makes a leaf patch larger"),
        ({"cell_size": 28}, (1, 28, 28), "at least 2 cells"),
        ({"likelihood": "poisson"}, (1, 28, 28), "likelihood must be one of .*'poisson'"),
        ({"hidden_dims": "30;30"}, (1, 28, 28), "hidden_dims must be comma-separated"),
        ({"hidden_dims": 30}, (1, 28, 28), "hidden_dims must be a string"),
        ({"samples": 0}, (1, 28, 28), "samples .* must be an int >= 1"),
        ({}, (784,), "image data shaped"),
    ],
)
@pytest.mark.parametrize("family", ["spvae", "convspvae"])
def test_bad_configuration_is_a_clear_error_at_construction(family, cfg, x_shape, match):
    if family == "convspvae" and "hidden_dims" in cfg:
        cfg = {"filters": cfg["hidden_dims"]}
        match = match.replace("hidden_dims", "filters")
    with pytest.raises(ValueError, match=match):
        models.build(family, cfg, x_shape)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        models.build("convspvae", {"kernel_size": 4}, (1, 28, 28))


def test_config_defaults_follow_the_paper():
    cfg = SPVAEConfig()
    assert (cfg.cell_size, cfg.sum_k, cfg.leaf_k, cfg.samples) == (7, 2, 2, 5)
