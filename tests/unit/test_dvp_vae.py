"""DVP-VAE (models/hierarchical/dvp_vae.py) and the backbone's DVP form: the authors'
configurations' parameter counts (docs/specs/hierarchical.md#8-parameter-counts), each layer's KL
and the context's term, the
stochastic context, where it enters the decoder, and bad input. The model contract (finite
terms, gradients, IWAE): tests/unit/test_models.py; the diffusion prior:
tests/unit/test_vdm.py."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

import models
from models.hierarchical.dct import dct2
from models.hierarchical.dvp_vae import CTX_LOGVAR_RANGE, DVP_FORM
from sweeps import dvp_vae as sweep
from training.config import Config, ConfigError

# Trainable parameters of the authors' modules (AKuzina/dvp_vae 2d38877), counted by building
# their classes with each experiment config: (encoder, decoder incl. prior nets, diffusion
# prior, total). docs/specs/hierarchical.md#8-parameter-counts lists the same in millions. Ours
# lack one tensor pair they build and
# never use: the last layer's z projection (latent_width x its channels + its bias), which
# latent aggregation bypasses.
AUTHORS = {
    ("mnist", "ladder"): (123_712, 476_961, 0, 600_673),  # 0.60 M
    ("mnist", "dvp_vae"): (123_712, 524_867, 47_329, 648_579),  # 0.65 M, prior 0.047 M
    ("omniglot", "ladder"): (212_560, 845_865, 0, 1_058_425),  # 1.06 M
    ("omniglot", "dvp_vae"): (212_560, 1_086_003, 239_137, 1_298_563),  # 1.30 M
    ("cifar10", "dvp_vae"): (3_054_592, 16_423_570, 240_291, 19_478_162),  # 19.48 M
}
SPEC_8_MILLIONS = {("mnist", "ladder"): 0.60, ("mnist", "dvp_vae"): 0.65,
                   ("omniglot", "ladder"): 1.06, ("omniglot", "dvp_vae"): 1.30,
                   ("cifar10", "dvp_vae"): 19.48}  # fmt: skip


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def authors_model(dataset: str, family: str):
    cell = next(c for c in sweep.CELLS if (c.dataset, c.family) == (dataset, family))
    cfg = Config.from_dict({**cell.base_config(sweep.BUDGETS["paper"]),
                            **sweep.AUTHORS_TRAIN[dataset]})  # fmt: skip
    x_shape = (3, 32, 32) if dataset == "cifar10" else (1, 28, 28)
    return models.build(family, dataclasses.asdict(cfg.model), x_shape)


@pytest.mark.parametrize("key", sorted(AUTHORS))
def test_the_authors_configurations_have_their_parameter_counts(key):
    model = authors_model(*key)
    encoder, decoder, prior, total = AUTHORS[key]
    channels = model.layers[-1].posterior_net.net[0].in_channels  # the last layer's state's
    unused = model.cfg.latent_width * channels + channels  # its z projection's weight and bias
    assert n_params(model.encoder) == encoder
    assert n_params(model) - n_params(model.encoder) + unused == decoder
    assert n_params(model) + unused == total
    if prior:
        assert n_params(model.prior) == prior
    assert abs(total / 1e6 - SPEC_8_MILLIONS[key]) < 0.01 * SPEC_8_MILLIONS[key]


def test_the_dvp_ladder_is_dvp_vae_without_its_context():
    ladder, dvp = authors_model("mnist", "ladder"), authors_model("mnist", "dvp_vae")
    for key, value in DVP_FORM.items():
        assert getattr(ladder.cfg, key) == getattr(dvp.cfg, key) == value, key
    extra = n_params(dvp) - n_params(ladder) - n_params(dvp.prior) - dvp.q_logvar.numel()
    # the one context channel every prior net (and its 1x1 skip) also reads
    per_layer = [layer.prior_net.net[0].out_channels + layer.prior_net.skip.out_channels
                 for layer in dvp.layers]  # fmt: skip
    assert extra == sum(per_layer)


def small(**kw):
    torch.manual_seed(0)
    config = {"latent_scales": "2,1", "num_ch": 4, "enc_blocks": 1, "ctx_size": 4,
              "diffusion_steps": 3, "unet_channels": 16, "unet_blocks": 1, **kw}  # fmt: skip
    model = models.build("dvp_vae", config, (1, 16, 16))
    with torch.no_grad():  # move the zero-initialised convs, so every layer's KL is non-trivial
        for name, p in model.named_parameters():
            if name != "q_logvar":
                p.add_(0.1 * torch.randn_like(p))
    model.initialise(torch.rand(64, 1, 16, 16))
    return model


def binary(n: int = 6) -> torch.Tensor:
    return torch.bernoulli(torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(2)))


def test_each_layers_kl_is_the_kl_of_its_two_gaussians_and_with_the_context_they_sum_to_the_kl():
    model, x = small(), binary()
    torch.manual_seed(3)
    _, layers, context = model.decode(x, x.shape[0])
    torch.manual_seed(3)
    terms = model(x)
    assert len(layers) == 3
    total = terms.extras["context_nll"]
    for i, layer in enumerate(layers):
        q = Independent(Normal(layer.q[0], torch.exp(0.5 * layer.q[1])), 3)
        p = Independent(Normal(layer.p[0], torch.exp(0.5 * layer.p[1])), 3)
        torch.testing.assert_close(layer.kl, kl_divergence(q, p), rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(terms.extras[f"kl_z{i}"], layer.kl)
        total = total + layer.kl
    torch.testing.assert_close(terms.kl, total)


def test_at_its_variance_floor_the_context_is_the_normalised_dct_and_its_variance_learns():
    model, x = small(), binary()
    mean = (dct2(x, "ortho")[..., :4, :4] / model.context.scale).clamp(-1, 1)
    with torch.no_grad():
        model.q_logvar.fill_(-20.0)  # below the floor: projected back to it
    _, _, context = model.decode(x, x.shape[0])
    assert model.q_logvar.min().item() == CTX_LOGVAR_RANGE[0]
    noise = (context.u - mean).abs().max().item()
    std = torch.exp(torch.tensor(0.5 * CTX_LOGVAR_RANGE[0])).item()
    assert 0 < noise < 5 * std
    (-model(x).elbo.mean()).backward()
    assert model.q_logvar.grad is not None and model.q_logvar.grad.abs().sum() > 0


def test_the_context_reaches_every_prior_net_and_the_active_units_leave_it_out():
    model, x = small(), binary()
    model.eval()
    torch.manual_seed(0)
    _, layers, context = model.decode(x, x.shape[0])
    torch.manual_seed(0)
    model.context.scale.mul_(3)  # another context image, the same noise draws
    _, other, _ = model.decode(x, x.shape[0])
    for a, b in zip(layers, other, strict=True):  # each layer's prior moves with it
        assert (a.p[0] - b.p[0]).abs().max() > 1e-4
    dims = sum(layer.q[0][0].numel() for layer in layers)
    assert model.latent_means(x).shape == (6, dims)  # u (16 dims) is not among them


def test_samples_need_a_positive_temperature():
    model = small()
    assert model.sample(3, temperature=0.4).shape == (3, 1, 16, 16)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        model.sample(2, temperature=0.0)


@pytest.mark.parametrize("config,match", [
    ({"ctx_size": 17}, "ctx_size 17.*larger than the 16x16.*1 ... 16"),
    ({"gamma_min": 7.0}, "gamma_min 7.0 must be below gamma_max 7.0"),
    ({"diffusion_steps": 0}, "diffusion_steps T must be"),
    ({"test_grid": "midpoint"}, "test_grid must be one of 'stratified', 'authors'"),
    ({"res_gate": "half"}, "res_gate must be one of"),
])  # fmt: skip
def test_bad_contexts_and_schedules_are_clear_errors(config, match):
    with pytest.raises(ValueError, match=match):
        models.build("dvp_vae", {"latent_scales": "1,1", "num_ch": 4, **config}, (1, 16, 16))


def test_bad_keys_are_config_errors_naming_the_key():
    with pytest.raises(ConfigError, match="model: gamma_min"):
        Config.from_dict({"family": "dvp_vae", "model/gamma_min": 9.0, "data/binarize": True})
    with pytest.raises(ConfigError, match="train/ema_rate must be in \\[0, 1\\)"):
        Config.from_dict({"family": "dvp_vae", "train/ema_rate": 1.0, "data/binarize": True})
