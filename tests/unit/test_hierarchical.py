"""The Ladder VAE and DCT-VAE (models/hierarchical/): the authors' configurations' parameter
counts (docs/specs/hierarchical.md#8-parameter-counts), each layer's KL, the context's place in the
objective, and bad input.
The model contract (finite terms, gradients, IWAE): tests/unit/test_models.py."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

import models
from sweeps import dct_vae as sweep
from training.config import Config, ConfigError

# Trainable parameters of the authors' modules, counted by instantiating their classes
# (AKuzina/dct_vae b86d22f: model/encoder.py, model/decoder.py, model/context_decoder.py) with
# each experiment's config; docs/specs/hierarchical.md#8-parameter-counts lists the same totals in
# millions.
AUTHORS = {  # (dataset, family): (encoder, decoder incl. prior nets and diffusion prior)
    ("mnist", "ladder"): (201_176, 455_441),  # 0.66 M
    ("mnist", "dct_vae"): (144_327, 552_112),  # 0.70 M
    ("omniglot", "ladder"): (201_176, 455_441),
    ("omniglot", "dct_vae"): (144_327, 551_792),
    ("cifar10", "ladder"): (1_206_341, 20_193_981),  # 21.40 M
    ("cifar10", "dct_vae"): (1_181_425, 17_579_538),  # 18.76 M
    ("svhn", "dct_vae"): (737_705, 9_652_048),  # 10.39 M
}
SPEC_8_MILLIONS = {("mnist", "ladder"): 0.66, ("mnist", "dct_vae"): 0.70,
                   ("cifar10", "ladder"): 21.40, ("cifar10", "dct_vae"): 18.76,
                   ("svhn", "dct_vae"): 10.39}  # fmt: skip


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def authors_model(dataset: str, family: str):
    cell = next(c for c in sweep.CELLS if (c.dataset, c.family) == (dataset, family))
    cfg = Config.from_dict({**cell.base_config(sweep.BUDGETS["paper"]),
                            **sweep.AUTHORS_TRAIN[dataset]})  # fmt: skip
    x_shape = (3, 32, 32) if dataset in ("cifar10", "svhn") else (1, 28, 28)
    return models.build(family, dataclasses.asdict(cfg.model), x_shape)


def authors_unused(model) -> int:
    """Parameters the authors build and never use: their non-residual blocks (the prior and
    posterior nets) still create a skip conv and a gate, and DCT-VAE's decoder a ``y_block``."""
    unused = 0
    for layer in model.layers:
        for net in (layer.prior_net, layer.posterior_net):
            c_in, c_out = net.net[0].in_channels, net.last.out_channels
            unused += 1 + (c_in * c_out + c_out if c_in != c_out else 0)
    if hasattr(model, "context"):
        unused += model.x_shape[0] * model.s_top.shape[1] * 9 + model.s_top.shape[1]
    return unused


@pytest.mark.parametrize("key", sorted(AUTHORS))
def test_the_authors_configurations_have_their_parameter_counts(key):
    model = authors_model(*key)
    encoder, decoder = AUTHORS[key]
    assert n_params(model.encoder) == encoder
    assert n_params(model) - n_params(model.encoder) + authors_unused(model) == decoder
    if key in SPEC_8_MILLIONS:  # the spec's rounded totals, which include the unused ones
        total = n_params(model) + authors_unused(model)
        assert abs(total / 1e6 - SPEC_8_MILLIONS[key]) < 0.01 * SPEC_8_MILLIONS[key]


def small(family: str, **kw):
    torch.manual_seed(0)
    config = {"latent_scales": "2,1", "num_ch": 4, **kw}
    if family == "dct_vae":
        config.update(ctx_size=4, diffusion_steps=3, unet_channels=16, unet_blocks=1)
    model = models.build(family, config, (1, 16, 16))
    with torch.no_grad():  # move the zero-initialised convs, so every layer's KL is non-trivial
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.initialise(torch.rand(64, 1, 16, 16))
    return model


def binary(n: int = 6) -> torch.Tensor:
    return torch.bernoulli(torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(2)))


@pytest.mark.parametrize("family", ["ladder", "dct_vae"])
def test_each_layers_kl_is_the_kl_of_its_two_gaussians_and_they_sum_to_the_total(family):
    model = small(family)
    x = binary()
    torch.manual_seed(3)
    out, layers, context = model.decode(x, x.shape[0])
    torch.manual_seed(3)
    terms = model(x)
    assert len(layers) == 3
    total = torch.zeros(x.shape[0])
    for i, layer in enumerate(layers):
        q = Independent(Normal(layer.q[0], torch.exp(0.5 * layer.q[1])), 3)
        p = Independent(Normal(layer.p[0], torch.exp(0.5 * layer.p[1])), 3)
        torch.testing.assert_close(layer.kl, kl_divergence(q, p), rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(terms.extras[f"kl_z{i}"], layer.kl)
        total = total + layer.kl
    if family == "dct_vae":  # the context's -log p(u) bound is the rest of the KL term
        total = total + terms.extras["context_nll"]
    torch.testing.assert_close(terms.kl, total)


def test_the_context_is_the_quantised_dct_of_the_input_and_conditions_the_decoder():
    model = small("dct_vae").eval()
    x = binary()
    _, _, context = model.decode(x, x.shape[0])
    levels = 2 * (torch.arange(4) + 0.5) / 4 - 1  # the 2^2 bin centres
    assert torch.isin(context.u, levels).all()
    torch.testing.assert_close(context.u, model.context(x))
    # another context, same latents' encoder features: the decoder's output moves
    torch.manual_seed(0)
    out, _, _ = model.decode(x, x.shape[0])
    model.context.scale.mul_(3)
    torch.manual_seed(0)
    other, _, _ = model.decode(x, x.shape[0])
    assert (out - other).abs().max() > 1e-4


def test_validation_sums_every_diffusion_step_and_training_draws_one():
    """Both estimate the same bound (one step times T is unbiased for the sum of all T); the
    one-step estimate is the noisier. No dropout and no dither, so both see the same network
    and the same u."""
    model = small("dct_vae", unet_dropout=0.0)
    model.context.dither = False
    x = binary()
    torch.manual_seed(0)
    reps = 400
    rows = x.repeat(reps, 1, 1, 1)  # reps independent draws per example, as one batch
    model.eval()
    with torch.no_grad():
        full = model(rows).extras["context_nll"].view(reps, -1)
        model.train()
        one = model(rows).extras["context_nll"].view(reps, -1)
    se = torch.sqrt(full.var(0) / reps + one.var(0) / reps)
    assert ((one.mean(0) - full.mean(0)).abs() < 4 * se).all()
    assert (one.var(0) > full.var(0)).all()


def test_log_likelihood_runs_in_evaluation_mode_and_restores_training_mode():
    model = small("dct_vae")
    model.train()
    x = binary(2)
    ll = model.log_likelihood(x, 4)
    assert model.training and ll.shape == (2,) and torch.isfinite(ll).all()


def test_samples_are_images_of_the_data_kind():
    ladder = small("ladder")
    x = ladder.sample(5)
    assert x.shape == (5, 1, 16, 16) and set(x.unique().tolist()) <= {0.0, 1.0}
    torch.manual_seed(0)
    mix = models.build("dct_vae", {"latent_scales": "1,1", "num_ch": 4, "num_mix": 3,
                                   "likelihood": "logistic_mixture", "ctx_size": 3,
                                   "diffusion_steps": 2, "unet_channels": 16,
                                   "unet_blocks": 1}, (3, 8, 8))  # fmt: skip
    y = mix.sample(4)
    assert y.shape == (4, 3, 8, 8) and y.min() >= 0 and y.max() <= 1
    torch.testing.assert_close(y * 255, torch.round(y * 255))  # on the 8-bit grid


@pytest.mark.parametrize(
    "family,config,shape,match",
    [
        ("ladder", {"latent_scales": "1,1,1"}, (1, 28, 28), "can be halved 2 times.*at most 2"),
        ("ladder", {"latent_scales": "1,1,1,1,1,1"}, (3, 32, 32), "halved 6 times.*can be"),
        ("ladder", {"latent_scales": "2,0"}, (1, 28, 28), "top .* scale needs at least one"),
        ("ladder", {"latent_scales": "4,x"}, (1, 28, 28), "latent_scales must be"),
        ("dct_vae", {"ctx_size": 29}, (1, 28, 28), "ctx_size 29.*larger than the 28x28.*1 ... 28"),
        ("dct_vae", {"ctx_bits": 0}, (1, 28, 28), "ctx_bits must be an int in \\[1, 16\\]"),
        ("dct_vae", {"ctx_bits": 17}, (1, 28, 28), "ctx_bits"),
        ("dct_vae", {"diffusion_steps": 0}, (1, 28, 28), "diffusion_steps T must be"),
        ("dct_vae", {"diffusion_schedule": "sqrt"}, (1, 28, 28), "diffusion_schedule must be"),
        ("ladder", {"mix_coeffs": True, "likelihood": "logistic_mixture"}, (1, 28, 28),
         "mix_coeffs .* needs 3 channels"),
    ],
)  # fmt: skip
def test_bad_hierarchies_and_contexts_are_clear_errors(family, config, shape, match):
    with pytest.raises(ValueError, match=match):
        models.build(family, config, shape)


def test_likelihood_and_data_mismatches_are_config_errors_before_training():
    with pytest.raises(ConfigError, match="model/likelihood.*logistic_mixture|binarize"):
        Config.from_dict({"family": "ladder", "model/likelihood": "logistic_mixture",
                          "data/binarize": True, "data/center": False})  # fmt: skip
    with pytest.raises(ConfigError, match="bernoulli.*RGB|logistic_mixture"):
        Config.from_dict({"family": "dct_vae", "data/dataset": "cifar10",
                          "data/binarize": True, "data/center": False})  # fmt: skip
    with pytest.raises(ConfigError, match="model: ctx_bits"):
        Config.from_dict({"family": "dct_vae", "model/ctx_bits": 40, "data/binarize": True})


def test_a_hierarchy_the_image_cannot_hold_is_refused_before_any_trial():
    from sweeps.cells import Cell
    from sweeps.engine import preflight

    budget = sweep.BUDGETS["smoke"]
    for fixed, match in (({"model/latent_scales": "1,1,1"}, "model/latent_scales '1,1,1'"),
                         ({"model/ctx_size": 30}, "model/ctx_size 30.*28x28")):  # fmt: skip
        family = "ladder" if "model/latent_scales" in fixed else "dct_vae"
        cell = Cell("dct_vae", family, "mnist", "bernoulli",
                    fixed={"data/binarize": True, "data/center": False, **fixed})  # fmt: skip
        with pytest.raises(preflight.Refusal, match=match):
            preflight.check_configs([cell], budget, "tpe")
    ok = next(c for c in sweep.CELLS if c.dataset == "cifar10" and c.family == "dct_vae")
    preflight.check_configs([ok], sweep.BUDGETS["paper"], "tpe")  # 15 M parameters, on meta
