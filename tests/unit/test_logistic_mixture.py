"""The discretised mixture of logistics is a distribution: its 256 bins sum to one, its log
probability is the direct formula, and its sampler draws what it scores."""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch

from models.likelihoods import BINS, DiscretizedLogisticMixture, logistic_mixture

LEVELS = torch.arange(BINS, dtype=torch.float64) * 2 / (BINS - 1) - 1


def one_pixel(k: int, c: int, coeffs: bool, seed: int = 0) -> DiscretizedLogisticMixture:
    g = torch.Generator().manual_seed(seed)
    rand = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    return DiscretizedLogisticMixture(
        rand(k, 1, 1), 0.6 * rand(k, c, 1, 1), 0.05 + rand(k, c, 1, 1).abs() * 0.2,
        rand(k, 3, 1, 1) if coeffs else None,
    )  # fmt: skip


@pytest.mark.parametrize("scale", ["log", "softplus"])
def test_the_256_bins_of_one_channel_sum_to_one(scale):
    params = torch.randn(2, 10 * 3, 1, 1, dtype=torch.float64)  # 2 pictures, K = 10, C = 1
    d = logistic_mixture(params, channels=1, components=10, coefficients=False, scale=scale)
    x = LEVELS.view(BINS, 1, 1, 1, 1).expand(BINS, 2, 1, 1, 1)
    total = d.log_prob(x).exp().sum(0)
    assert torch.allclose(total, torch.ones(2, dtype=torch.float64), atol=1e-12)


def test_with_rgb_coefficients_the_bins_of_all_three_channels_sum_to_one():
    d = one_pixel(k=3, c=3, coeffs=True)
    total = torch.zeros((), dtype=torch.float64)
    g, b = torch.meshgrid(LEVELS, LEVELS, indexing="ij")
    for r in LEVELS[::51]:  # red levels 0, 51, ..., 255: p(r) * sum_{g,b} p(g, b | r) = p(r)
        x = torch.stack([torch.full_like(g, float(r)), g, b]).flatten(1).T.reshape(-1, 3, 1, 1)
        total += d.log_prob(x).exp().sum()
    red = DiscretizedLogisticMixture(d.logits, d.loc[:, :1], d.scale[:, :1])
    expected = red.log_prob(LEVELS[::51].view(-1, 1, 1, 1)).exp().sum()
    assert total.item() == pytest.approx(expected.item(), rel=1e-9)


def test_log_prob_is_the_direct_formula_with_edge_bins():
    d = one_pixel(k=2, c=1, coeffs=False, seed=3)
    sigma = lambda t: 1 / (1 + math.exp(-t))  # noqa: E731
    pi = torch.softmax(d.logits.flatten(), 0).tolist()
    mu, s = d.loc.flatten().tolist(), d.scale.flatten().tolist()
    for level in (0, 1, 100, 254, 255):
        x = float(LEVELS[level])
        p = 0.0
        for k in range(2):
            up = 1.0 if level == 255 else sigma((x + 1 / 255 - mu[k]) / s[k])
            lo = 0.0 if level == 0 else sigma((x - 1 / 255 - mu[k]) / s[k])
            p += pi[k] * (up - lo)
        got = d.log_prob(torch.tensor(x, dtype=torch.float64).view(1, 1, 1)).item()
        assert got == pytest.approx(math.log(p), rel=1e-10)


def test_log_prob_stays_finite_far_in_the_tails():
    d = DiscretizedLogisticMixture(
        torch.zeros(1, 1, 1), torch.full((1, 1, 1, 1), 0.9), torch.full((1, 1, 1, 1), 1e-3)
    )
    lp = d.log_prob(torch.full((1, 1, 1), -1 + 2 / 255))  # ~1900 scales from the mean
    assert torch.isfinite(lp).all() and lp.item() < -1000


@pytest.mark.parametrize("coeffs", [False, True])
def test_samples_of_one_component_follow_the_bin_probabilities(coeffs):
    torch.manual_seed(0)
    d = one_pixel(k=1, c=3, coeffs=coeffs, seed=5)
    draws = d.sample((20_000,))
    assert draws.shape == (20_000, 3, 1, 1)
    levels = torch.round((draws + 1) * (BINS - 1) / 2).long()
    assert torch.allclose(levels.double() * 2 / (BINS - 1) - 1, draws.double())  # on the grid
    red = DiscretizedLogisticMixture(d.logits, d.loc[:, :1], d.scale[:, :1])
    probs = red.log_prob(LEVELS.view(-1, 1, 1, 1)).exp()
    counts = torch.bincount(levels[:, 0].flatten(), minlength=BINS).double()
    keep = probs * 20_000 >= 5  # bins expected to hold at least five draws, the rest pooled
    observed = torch.cat([counts[keep], counts[~keep].sum().view(1)])
    expected = torch.cat([probs[keep], probs[~keep].sum().view(1)]) * 20_000
    assert scipy.stats.chisquare(observed, expected).pvalue > 1e-3
    if coeffs:  # blue given the drawn red and green: its conditional mean moves with them
        x = draws.double()
        assert torch.isfinite(d.log_prob(x)).all()


def test_the_parameter_layout_is_checked():
    with pytest.raises(ValueError, match="need 70 parameter maps, got 69"):
        logistic_mixture(torch.zeros(1, 69, 2, 2), 3, 10, coefficients=False)
    with pytest.raises(ValueError, match="scale must be one of"):
        logistic_mixture(torch.zeros(1, 30, 2, 2), 1, 10, coefficients=False, scale="exp")
    d = logistic_mixture(torch.zeros(4, 5, 100, 8, 8), 3, 10, coefficients=True)
    assert d.sample().shape == (4, 5, 3, 8, 8) and d.log_prob(d.sample()).shape == (4, 5)
