"""The VLAE paper's families' configuration: too few steps and bad hyperparameters are clear errors,
and the parameters start as the authors' (Kaiming-uniform, fan-out). Their models: test_vlae.py."""

from __future__ import annotations

import math

import pytest
import torch

import models
from tests.unit.test_vlae import X_SHAPE
from training.config import Config, ConfigError

# --- configuration ----------------------------------------------------------------------------

STEPS = {"vlae": "updates", "savae": "svi_steps", "vae_hf": "flows", "vae_iaf": "flows"}


@pytest.mark.parametrize("family", sorted(STEPS))
def test_fewer_than_one_step_is_a_clear_error(family):
    field = STEPS[family]
    for bad in (0, -1):
        with pytest.raises(ValueError, match=f"{field}.*>= 1"):
            models.build(family, {field: bad}, X_SHAPE)
    with pytest.raises(ConfigError, match=f"model: {field}"):
        Config.from_dict({"family": family, f"model/{field}": 0})
    assert getattr(models.config_class(family)(), field) == 4  # the authors' default


@pytest.mark.parametrize(
    "family,key,value,message",
    [
        ("vlae", "update_lr", 0.0, "update_lr.*in \\(0, 1\\]"),
        ("vlae", "update_lr", 1.5, "update_lr.*in \\(0, 1\\]"),
        ("vlae", "vlae_eta_schedule", "cosine", "vlae_eta_schedule must be one of"),
        ("savae", "svi_lr", 0.0, "svi_lr.*> 0"),
        ("vae_iaf", "iaf_dim", 0, "iaf_dim.*>= 1"),
        ("vae_hf", "likelihood", "poisson", "likelihood must be one of"),
    ],
)
def test_bad_hyperparameters_are_clear_errors(family, key, value, message):
    with pytest.raises(ValueError, match=message):
        models.build(family, {key: value}, X_SHAPE)


@pytest.mark.parametrize("family", ["vae", "savae", "vae_hf", "vae_iaf"])
def test_the_posterior_heads_start_as_the_authors_two_layers(family):
    """The VLAE authors' encoder has two Linear(H, z) heads, each Kaiming-uniform with fan-out z
    (a = 2^(1/3)); our fused Linear(H, 2z) gets the same bound per half. The switch
    model/fused_head_init=true keeps the fused layer's fan-out 2z; nothing else changes."""
    import math

    import models
    from models.layers import VLAE_KAIMING_A

    z, h = 50, 500
    bound = math.sqrt(2 / (1 + VLAE_KAIMING_A**2)) * math.sqrt(3 / z)

    def build(fused: bool):
        torch.manual_seed(0)
        cfg = {"latent_dim": z, "hidden_dim": h, "fused_head_init": fused}
        return models.build(family, cfg, (1, 28, 28))

    ours, fused = build(False), build(True)
    for half in ours.q_head.weight.chunk(2, dim=0):  # mean rows, log-variance rows
        assert 0.99 * bound < half.abs().max() <= bound
    assert fused.q_head.weight.abs().max() <= bound / math.sqrt(2)
    theirs = fused.state_dict()
    for name, a in ours.state_dict().items():
        if name != "q_head.weight":
            assert torch.equal(a, theirs[name]), name


def kaiming_bound(fan_out: int) -> float:
    """The authors' Experiment.initialize_params: Kaiming-uniform, a = 2^(1/3), fan-out mode."""
    from models.layers import VLAE_KAIMING_A

    return math.sqrt(2 / (1 + VLAE_KAIMING_A**2)) * math.sqrt(3 / fan_out)


def assert_fills(weight: torch.Tensor, bound: float) -> None:
    """|w| <= bound, and within 1% of it over thousands of uniform draws (not a smaller bound)."""
    assert 0.99 * bound < weight.abs().max() <= bound


@pytest.mark.parametrize("mask_context", [False, True])
def test_flow_and_vlae_extra_parameters_start_as_the_authors(mask_context):
    """HF: their Linear(H, z) and Linear(z, z) flow layers, all of fan-out z (biases torch's
    default). IAF: their MADE's W (fan-out iaf_dim; the context columns too), V_m, V_s (fan-out z),
    b ~ N(0, 1), c_m ~ N(0, 1), c_s = 2. VLAE: their mean head Linear(H, z), fan-out z."""
    z, h, width = 50, 500, 500
    x_shape = (1, 28, 28)
    torch.manual_seed(0)
    hf = models.build("vae_hf", {"latent_dim": z, "hidden_dim": h, "flows": 3}, x_shape)
    assert_fills(hf.flow.first.weight, kaiming_bound(z))
    assert hf.flow.first.bias.abs().max() <= 1 / math.sqrt(h)
    for layer in hf.flow.rest:
        assert_fills(layer.weight, kaiming_bound(z))
    cfg = {"latent_dim": z, "hidden_dim": h, "iaf_dim": width, "flows": 2,
           "iaf_mask_context": mask_context}  # fmt: skip
    for made in models.build("vae_iaf", cfg, x_shape).flow.steps:
        assert_fills(made.w_z.weight, kaiming_bound(width))
        if not mask_context:
            assert_fills(made.w_h.weight, kaiming_bound(width))
        for v in (made.v_m, made.v_s):
            assert_fills(v.weight, kaiming_bound(z))
        for normal in (made.b, made.v_m.bias):  # their randn: mean 0, std 1
            assert abs(normal.mean()) < 0.35 and 0.7 < normal.std() < 1.3
        assert torch.all(made.v_s.bias == 2.0)
        assert made.act.weight.item() == 0.25  # PReLU, as theirs
    vlae = models.build("vlae", {"latent_dim": z, "hidden_dim": h}, x_shape)
    assert vlae.q_head.weight.shape == (z, h)
    assert_fills(vlae.q_head.weight, kaiming_bound(z))
