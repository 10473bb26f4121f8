"""Active units (Burda et al. 2016), test bits/dim, and their columns in the evaluations table."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from torch import Tensor, nn

import models
from results import store
from results.rows import EVALUATION_DEFAULTS, evaluation_row
from training.evaluate import active_units, estimate_log_likelihood

X_SHAPE = (1, 4, 4)


class Means(nn.Module):
    """A stand-in model whose posterior means are the first columns of x (fully controlled)."""

    def __init__(self, d: int):
        super().__init__()
        self.d = d

    def latent_means(self, x: Tensor) -> Tensor:
        return x.flatten(1)[:, : self.d]


def direct(means: Tensor, threshold: float = 0.01) -> float:
    """All means stacked, the unbiased variance per unit (torch.var's default), in float64."""
    return (means.double().var(dim=0) > threshold).double().mean().item()


def tiny_vae(inactive: int = 2) -> nn.Module:
    """A tiny VAE whose first ``inactive`` mean units ignore x and whose others vary strongly."""
    torch.manual_seed(0)
    model = models.build("vae", {"latent_dim": 5, "hidden_dim": 16}, x_shape=X_SHAPE)
    with torch.no_grad():
        model.q_head.weight[:inactive] = 0.0  # the first latent_dim rows are the means
        model.q_head.weight[inactive:5] *= 30.0
    return model


def test_matches_the_direct_computation_on_a_vae():
    model = tiny_vae(inactive=2)
    x = torch.rand(37, *X_SHAPE)
    want = direct(model.eval().latent_means(x))
    assert want == pytest.approx(3 / 5)  # the case separates active from inactive units
    got = active_units(model, x, batch_size=10)  # 10, 10, 10, 7: an uneven last batch
    assert got["active_units"] == pytest.approx(want)
    assert got["latent_dims"] == 5
    assert model.latent_means(x).shape == (37, 5)


def test_the_variance_is_unbiased():
    # two examples 0.03**0.5 apart: unbiased variance 0.015 > 0.01, biased 0.0075 < 0.01
    x = torch.tensor([[0.0], [0.03**0.5]], dtype=torch.float64)
    got = active_units(Means(1), x, batch_size=2)
    assert got["active_units"] == got["active_units_per_batch"] == 1.0


def test_whole_set_and_per_batch_differ_where_they_must():
    """Unit 0 is constant within each batch of 4 but differs between batches; unit 1 varies in
    every batch; unit 2 never varies; unit 3 varies in the first batch only."""
    n, b = 12, 4
    batch = torch.arange(n) // b
    means = torch.zeros(n, 4)
    means[:, 0] = batch.float()
    means[:, 1] = torch.tensor([1.0, -1.0]).repeat(n // 2)
    means[:4, 3] = torch.tensor([1.0, -1.0, 1.0, -1.0])
    got = active_units(Means(4), means, batch_size=b)
    assert got["active_units"] == pytest.approx(3 / 4) == direct(means)
    assert got["active_units_per_batch"] == pytest.approx((2 / 4 + 1 / 4 + 1 / 4) / 3)
    # a last batch of one example has no variance and is left out of the per-batch mean
    more = torch.cat([means, torch.tensor([[7.0, 0.0, 0.0, 0.0]])])
    assert active_units(Means(4), more, batch_size=b)["active_units_per_batch"] == pytest.approx(
        got["active_units_per_batch"]
    )


def test_float64_streaming_agrees_with_the_direct_computation_near_the_threshold():
    """Variances 0.0091 .. 0.0109 around a mean of 1000, in float32 batches of 7: a float32
    one-pass sum of squares loses them; the float64 merged update must not."""
    torch.manual_seed(1)
    n, targets = 1001, torch.linspace(0.0091, 0.0109, 19, dtype=torch.float64)
    noise = torch.randn(n, len(targets), dtype=torch.float64)
    noise = (noise - noise.mean(0)) / noise.std(0)
    means = (1000.0 + noise * targets.sqrt()).float()
    want = direct(means)
    assert want == pytest.approx(9 / 19)  # 0.0101 .. 0.0109 are active
    assert active_units(Means(len(targets)), means, batch_size=7)["active_units"] == want
    naive = (means.square().sum(0) - means.sum(0).square() / n) / (n - 1)  # float32 throughout
    assert (naive > 0.01).double().mean().item() != want  # so the case can catch a naive sum


def test_estimate_log_likelihood_reports_bpd_and_active_units():
    model, x = tiny_vae(inactive=2), torch.rand(23, *X_SHAPE).round()
    out = estimate_log_likelihood(model, x, k=8, seed=0, batch_size=10)
    assert out["test_bpd"] == pytest.approx(-out["test_log_likelihood"] / (math.log(2) * 16))
    units = active_units(model, x, batch_size=10)  # a VAE's means are deterministic
    assert {k: out[k] for k in units} == units and out["active_units"] == pytest.approx(3 / 5)
    assert model.training  # evaluation leaves the model in training mode, as before


@pytest.mark.parametrize(
    "family, config, dims",
    [
        ("vlae", {"latent_dim": 3, "hidden_dim": 8}, 3),
        ("savae", {"latent_dim": 3, "hidden_dim": 8}, 3),
        ("nvae", {"latent_dim": 3, "covariance": "full"}, 3),
        # the spheres' ambient coordinates: S^1 x S^1 x S^2 in R^2 x R^2 x R^3
        ("psvae", {"latent_dim": 4, "spheres": "1,1,2", "hidden_dims": "8"}, 2 + 2 + 3),
        ("vae_iaf", {"latent_dim": 3, "hidden_dim": 8}, -1),  # a flow: no closed-form mean
        ("spvae_vae", {}, -1),  # not a LatentVariableModel: no latent_means
    ],
)
def test_every_family_reports_units_or_none(family, config, dims):
    model, x = models.build(family, config, x_shape=X_SHAPE), torch.rand(6, *X_SHAPE)
    out = estimate_log_likelihood(model, x, k=2, batch_size=3)
    assert out["latent_dims"] == dims and math.isfinite(out["test_bpd"])
    assert math.isnan(out["active_units"]) == (dims == -1)


def test_old_evaluation_rows_load_with_the_new_columns(tmp_path):
    s, sweep = str(tmp_path), "vlae-vae-fashion_mnist-gaussian"
    old = {"trial_id": "t", "seed": 0, "test_log_likelihood": -90.0, "k": 100}
    store.write(s, "evaluations", sweep, "t-seed0", [old])
    alone = store.load(s, "evaluations")
    assert alone["latent_dims"].tolist() == [-1]
    assert alone[["test_bpd", "active_units", "active_units_per_batch"]].isna().all().all()

    out = {"test_log_likelihood": -80.0, "k": 100, "test_bpd": 0.5, "active_units": 0.6}
    row = evaluation_row(sweep, "t", 1, {**out, "latent_dims": 5}, {"git": "abc"})
    assert set(EVALUATION_DEFAULTS) <= set(row) and math.isnan(row["active_units_per_batch"])
    assert (row["trial_id"], row["seed"], row["git"]) == ("t", 1, "abc")
    store.write(s, "evaluations", sweep, "t-seed1", [row])
    both = store.load(s, "evaluations").sort_values("seed")
    assert both["latent_dims"].tolist() == [-1, 5]
    assert pd.api.types.is_integer_dtype(both["latent_dims"])
    assert both["active_units"].iloc[1] == 0.6 and math.isnan(both["active_units"].iloc[0])
