"""SPVAE's baselines (docs/specs/spvae.md#2-baselines): the VAE and ConvVAE of one leaf, their
estimator, architecture, parameter counts and bad input (the SPVAE itself: test_spvae.py)."""

from __future__ import annotations

import pytest
import torch

import models
from models.spvae.spvae import (
    ConvSPVAEConfig,
    ConvVAEBaseline,
    ConvVAEBaselineConfig,
    VAEBaseline,
    VAEBaselineConfig,
)
from tests.unit.test_spvae import data

# --- baselines (docs/specs/spvae.md#2-baselines) --------------------------------------------------

BASELINE_SMALL = {
    "spvae_vae": {"hidden_dims": "6,6"},
    "spvae_convvae": {"n_dense": 6, "filters": "2,3"},
}


def tiny_baseline(family: str, x_shape=(1, 8, 8), **kw) -> VAEBaseline:
    torch.manual_seed(0)
    return models.build(family, {"latent_dim": 3, **BASELINE_SMALL[family], **kw}, x_shape)


@pytest.mark.parametrize("family", ["spvae_vae", "spvae_convvae"])
@pytest.mark.parametrize("likelihood", ["gaussian", "binomial", "bernoulli"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 7, 9)])  # odd sides: stride-2 mirror sizes
def test_baseline_terms_are_finite_and_gradients_reach_every_parameter(family, likelihood, shape):
    model = tiny_baseline(family, shape, likelihood=likelihood)
    assert model.leaves.n_leaves == 1 and not any(
        n.startswith("spn") for n, _ in model.named_parameters()
    )
    terms = model(data(likelihood, shape=shape))
    assert terms.log_px_z.shape == terms.kl.shape == (6,)
    assert torch.isfinite(terms.log_px_z).all() and (terms.kl == 0).all()
    (-terms.elbo.mean()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {name}"
    assert model.sample(3).shape == model.sample(3, mean=True).shape == (3, *shape)


@pytest.mark.parametrize("family", ["spvae_vae", "spvae_convvae"])
def test_baseline_forward_is_the_k_sample_estimate(family):
    # docs/specs/spvae.md#2-baselines: baselines train on the same K-sample IWAE bound, so forward
    # = log_likelihood(x, K)
    model, x = tiny_baseline(family, samples=3), data("gaussian", 4)
    torch.manual_seed(7)
    ll = model.log_likelihood(x, k=3)
    torch.manual_seed(7)
    with torch.no_grad():
        assert torch.allclose(model(x).log_px_z, ll)


@pytest.mark.parametrize("family", ["spvae_vae", "spvae_convvae"])
def test_baseline_estimate_rises_with_k(family):
    model, x = tiny_baseline(family, likelihood="binomial"), data("binomial", 8)
    torch.manual_seed(0)
    means = [model.log_likelihood(x, k).mean().item() for k in (1, 10, 100)]
    assert means[0] < means[1] < means[2]


def test_convvae_follows_the_spec_architecture():
    # docs/specs/spvae.md#22-convvae: Conv 32 then 64 filters, 3x3, stride 2, 'same' (28 -> 14 ->
    # 7), Dense(n_dense);
    # the mirrored transposed convolutions restore 7 -> 14 -> 28
    model = models.build("spvae_convvae", {}, (1, 28, 28))
    enc, dec = model.leaves.encoder, model.leaves.decoder
    groups = 2  # mean and precision networks
    assert [(c.out_channels // groups, c.stride, c.kernel_size) for c in enc.convs] == [
        (32, (2, 2), (3, 3)),
        (64, (2, 2), (3, 3)),
    ]
    assert enc.dense.weights[0].shape == (groups, 64 * 7 * 7, 64)
    assert [c.out_channels // groups for c in dec.convs] == [32, 1]
    h = torch.randn(5, groups * 64, 7, 7)
    for conv in dec.convs:
        h = conv(h)
    assert h.shape[-2:] == (28, 28)


def test_baseline_parameter_counts_at_the_paper_mnist_configs():
    # docs/specs/spvae.md#72-configurations-behind-the-numbers, MNIST perturbed: VAE (300,300) nz
    # 200, SPVAE (30,30) nz 25, ConvVAE n_dense 64
    # nz 200, ConvSPVAE n_dense 64 nz 25
    def count(family, cfg):
        model = models.build(family, {"likelihood": "gaussian", **cfg}, (1, 28, 28))
        return sum(p.numel() for p in model.parameters())

    counts = {
        "spvae_vae": count("spvae_vae", {"hidden_dims": "300,300", "latent_dim": 200}),
        "spvae": count("spvae", {"hidden_dims": "30,30", "latent_dim": 25}),
        "spvae_convvae": count("spvae_convvae", {"n_dense": 64, "latent_dim": 200}),
        "convspvae": count("convspvae", {"n_dense": 64, "latent_dim": 25}),
    }
    print("\nparameters at the paper's MNIST configs:", counts)

    # two encoders + two decoders of 784-300-300-200 / 200-300-300-784, by hand
    def mlp(sizes):
        return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))

    assert counts["spvae_vae"] == 2 * mlp([784, 300, 300, 200]) + 2 * mlp([200, 300, 300, 784])
    leaf = 2 * mlp([49, 30, 30, 25]) + 2 * mlp([25, 30, 30, 49])
    spn_weights = counts["spvae"] - 32 * leaf
    assert 0 < spn_weights < 2000  # the sum weights are few next to the 32 leaves


def test_baseline_log_likelihood_with_5000_samples_is_chunked_and_finite():
    for family, cfg in (
        ("spvae_vae", {"hidden_dims": "300,300", "latent_dim": 200}),
        ("spvae_convvae", {"n_dense": 64, "latent_dim": 200}),
    ):
        torch.manual_seed(0)
        model = models.build(family, {"likelihood": "binomial", **cfg}, (1, 28, 28))
        x = data("binomial", 1, (1, 28, 28))
        calls: list[int] = []
        original = model.leaves.log_weights
        model.leaves.log_weights = lambda *a, o=original, c=calls: c.append(a[-1]) or o(*a)
        ll = model.log_likelihood(x, k=5000, max_rows=2**10)
        assert torch.isfinite(ll).all() and ll.shape == (1,)
        assert sum(calls) == 5000 and len(calls) > 1 and max(calls) < 5000


@pytest.mark.parametrize(
    "family,cfg,match",
    [
        ("spvae_vae", {"hidden_dims": "300;300"}, "hidden_dims must be comma-separated"),
        ("spvae_vae", {"latent_dim": 0}, "latent_dim .* must be an int >= 1"),
        ("spvae_vae", {"samples": 0}, "samples .* must be an int >= 1"),
        ("spvae_vae", {"likelihood": "poisson"}, "likelihood must be one of .*'poisson'"),
        ("spvae_convvae", {"stride": 0}, "stride .* must be an int >= 1"),
        ("spvae_convvae", {"kernel_size": 4}, "kernel_size must be odd"),
        ("spvae_convvae", {"filters": "32,x"}, "filters must be comma-separated"),
        ("spvae_convvae", {"n_dense": 0}, "n_dense .* must be an int >= 1.*set n_dense=1"),
        ("spvae_convvae", {"cell_size": 7}, "unknown config keys.*'cell_size'"),
    ],
)
def test_baseline_bad_configuration_is_a_clear_error(family, cfg, match):
    with pytest.raises(ValueError, match=match):
        models.build(family, cfg, (1, 28, 28))
    with pytest.raises(ValueError, match="image data shaped"):
        models.build(family, {}, (784,))


def test_baseline_config_defaults_follow_the_paper():
    assert (VAEBaselineConfig().hidden_widths, VAEBaselineConfig().latent_dim) == ((300, 300), 200)
    cfg = ConvVAEBaselineConfig()
    assert (cfg.filter_counts, cfg.kernel_size, cfg.stride, cfg.n_dense) == ((32, 64), 3, 2, 64)
    assert cfg.samples == VAEBaselineConfig().samples == 5
    assert ConvSPVAEConfig().stride == 1
    assert isinstance(models.build("spvae_convvae", {}, (1, 28, 28)), ConvVAEBaseline)
