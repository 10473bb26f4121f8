"""The diffusion prior's bound is a bound: its discretised Gaussian is a distribution over the
2^b bins, the bound never falls below the data's entropy, training the prior alone brings it
close, and the importance-weighted test estimate sits between the entropy and the bound."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from models.hierarchical.ddpm import (
    DiscreteDiffusionPrior,
    beta_schedule,
    discretised_gaussian_log_prob,
)

BITS = 2
CENTRES = (torch.arange(2**BITS) * 2 + 1) / 2**BITS - 1
PROBS = torch.tensor([0.5, 0.3, 0.15, 0.05])
"""Each of the 4 coordinates of u [1, 2, 2] is drawn from these bin probabilities."""
ENTROPY = -(PROBS * PROBS.log()).sum().item() * 4


class TinyNet(nn.Module):
    """(x_i, i) -> (mean, log variance) of p(x_{i-1} | x_i): an MLP on x and a one-hot step."""

    def __init__(self, dims: int, steps: int, hidden: int = 128):
        super().__init__()
        self.steps = steps
        layers = [nn.Linear(dims + steps, hidden), nn.SiLU(), nn.Linear(hidden, hidden)]
        self.f = nn.Sequential(*layers, nn.SiLU(), nn.Linear(hidden, 2 * dims))

    def forward(self, x, i):
        out = self.f(torch.cat([x.flatten(1), nn.functional.one_hot(i, self.steps).float()], 1))
        mean, log_var = out.chunk(2, 1)
        return torch.cat([mean.view_as(x), log_var.view_as(x)], 1)


def draw(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n points u and their exact -log p_data(u)."""
    idx = torch.multinomial(PROBS, n * 4, replacement=True, generator=g).view(n, 1, 2, 2)
    return CENTRES[idx], -PROBS.log()[idx].flatten(1).sum(1)


def test_the_discretised_gaussian_sums_to_one_over_the_bins_and_the_authors_bins_do_not():
    centres = CENTRES.double().view(-1, 1)
    mean, log_var = torch.randn(1, 50).double(), torch.randn(1, 50).double() - 2
    ours = discretised_gaussian_log_prob(centres, mean, log_var, BITS).exp().sum(0)
    torch.testing.assert_close(ours, torch.ones(50, dtype=torch.float64))
    theirs = discretised_gaussian_log_prob(centres, mean, log_var, BITS, authors_bins=True)
    assert (theirs.exp().sum(0) > 1 + 1e-3).any()  # overlapping bins: more than one in total


def test_the_schedules_are_the_authors():
    linear = beta_schedule("linear", 7)
    assert linear[0].item() == pytest.approx(1 / 7) and linear[-1].item() == pytest.approx(2 / 7)
    cosine = beta_schedule("cosine", 40)
    assert (cosine > 0).all() and (cosine <= 0.999).all() and (cosine.diff() > 0).all()
    with pytest.raises(ValueError, match="schedule must be one of"):
        beta_schedule("quadratic", 7)
    with pytest.raises(ValueError, match=r"steps T must be in \[1, 10000\]"):
        DiscreteDiffusionPrior(TinyNet(4, 1), 0, "linear", BITS)


def test_the_bound_is_above_the_entropy_and_training_the_prior_alone_brings_it_close():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    prior = DiscreteDiffusionPrior(TinyNet(4, 7), 7, "linear", BITS)
    u, nll = draw(2000, g)
    entropy, se = nll.mean().item(), (nll.std() / math.sqrt(len(nll))).item()
    assert abs(entropy - ENTROPY) < 4 * se
    with torch.no_grad():
        assert prior.nll_bound(u, "full").mean().item() > entropy + 1.0  # untrained: far above
    opt = torch.optim.Adam(prior.parameters(), 2e-3)
    for _ in range(800):
        loss = prior.nll_bound(draw(256, g)[0]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        bound = prior.nll_bound(u, "full")
        importance = -prior.test_log_prob(u, repeats=10)
    b, b_se = bound.mean().item(), (bound.std() / math.sqrt(len(bound))).item()
    assert entropy - 3 * b_se <= b <= entropy + 0.5  # within half a nat over 4 coordinates
    # log-mean-exp of importance weights: a tighter stochastic bound, still above the entropy
    assert entropy - 3 * se <= importance.mean().item() <= b + 3 * b_se


def test_samples_are_on_the_data_scale():
    torch.manual_seed(0)
    prior = DiscreteDiffusionPrior(TinyNet(4, 7), 7, "cosine", BITS)
    x = prior.sample(16, (1, 2, 2))
    assert x.shape == (16, 1, 2, 2) and x.abs().max() <= 1 and torch.isfinite(x).all()
