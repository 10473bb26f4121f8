"""DVP-VAE's continuous-time diffusion prior (models/hierarchical/vdm.py): its bound is a bound on
a known Gaussian, is near-tight with the exact noise predictor, is approached by training, its
T-point grid converges to the random-t estimate, and its sampler draws the modelled distribution."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from models.hierarchical.unet import UNet
from models.hierarchical.vdm import ContinuousDiffusionPrior

MEAN, STD, SHAPE = 0.1, 0.3, (1, 2, 2)
ENTROPY = math.prod(SHAPE) * 0.5 * math.log(2 * math.pi * math.e * STD**2)
"""-E log p(u) of u ~ N(MEAN, STD^2) per dimension, summed: what no bound's mean can go below."""


class ExactNoise(nn.Module):
    """E[eps | z_t] for u ~ N(MEAN, STD^2): the best possible noise predictor."""

    def __init__(self):
        super().__init__()
        self.prior = None
        self.dummy = nn.Parameter(torch.zeros(()))  # sample() reads the device off a parameter

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        g = self.prior.gamma(t).view(-1, 1, 1, 1)
        a, s = torch.sigmoid(-g).sqrt(), torch.sigmoid(g).sqrt()
        return s * (z - a * MEAN) / (a**2 * STD**2 + s**2)


def exact_prior(steps: int = 25) -> ContinuousDiffusionPrior:
    net = ExactNoise()
    prior = ContinuousDiffusionPrior(net, -6.0, 7.0, steps)
    net.prior = prior
    return prior


def gaussian(n: int, seed: int = 0) -> torch.Tensor:
    return MEAN + STD * torch.randn(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def test_the_bound_is_never_below_the_entropy_and_near_tight_with_the_exact_predictor():
    torch.manual_seed(0)
    u = gaussian(20_000)
    exact = exact_prior()
    for mode in ("random", "grid"):
        b = exact.nll_bound(u, mode)
        se = b.std() / math.sqrt(b.numel())
        assert b.mean() > ENTROPY - 3 * se, mode
        assert b.mean() - ENTROPY < 0.05 * math.prod(SHAPE), (mode, b.mean().item(), ENTROPY)
    # the authors' right-endpoint grid leaves out t in (0, 1/T], where the integrand is largest
    assert exact.nll_bound(u, "authors_grid").mean() < ENTROPY - 0.3
    untrained = ContinuousDiffusionPrior(UNet(1, 1, 16, 1), -6.0, 7.0, 25)
    assert untrained.nll_bound(u[:2000]).mean() > exact.nll_bound(u[:2000]).mean() + 1.0


def test_training_the_prior_alone_brings_its_bound_near_the_entropy():
    torch.manual_seed(0)
    prior = ContinuousDiffusionPrior(UNet(1, 1, 16, 1), -6.0, 7.0, 25)
    opt = torch.optim.Adam(prior.parameters(), lr=3e-3)
    data = gaussian(50_000, seed=1)
    before = prior.nll_bound(data[:4000]).mean().item()
    for _ in range(250):
        loss = prior.nll_bound(data[torch.randint(0, len(data), (256,))]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = prior.nll_bound(gaussian(20_000, seed=2), "grid").mean().item()
    assert after < before - 1.0, (before, after)
    assert ENTROPY - 0.02 < after < ENTROPY + 0.15 * math.prod(SHAPE), (after, ENTROPY)


@torch.no_grad()
def test_the_test_grids_converge_to_the_random_t_estimate_as_t_grows():
    """The stratified grid and the random t have the same mean at every T (the bound's); the
    authors' grid reaches it only as T grows. The reference: the authors' grid at T = 2000."""
    torch.manual_seed(0)
    u = gaussian(20_000)

    def estimate(mode: str, steps: int) -> tuple[float, float]:
        b = exact_prior(steps).nll_bound(u, mode)
        return b.mean().item(), (b.std() / math.sqrt(b.numel())).item()

    limit, _ = estimate("authors_grid", 2000)
    for mode, steps in (("random", 25), ("grid", 2), ("grid", 25), ("grid", 200)):
        mean, se = estimate(mode, steps)
        assert abs(mean - limit) < 3 * se + 0.01, (mode, steps, mean, limit)
    gaps = [abs(estimate("authors_grid", t)[0] - limit) for t in (2, 25, 1000)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 0.05, gaps


@torch.no_grad()
def test_ancestral_sampling_draws_the_modelled_distribution():
    torch.manual_seed(0)
    u = exact_prior(100).sample(20_000, SHAPE)
    assert u.shape == (20_000, *SHAPE)
    assert abs(u.mean().item() - MEAN) < 0.01
    assert abs(u.std().item() - STD) < 0.03


@pytest.mark.parametrize(("gamma_min", "gamma_max", "steps", "match"), [
    (7.0, 7.0, 25, "gamma_min 7.0 must be below gamma_max 7.0"),
    (-6.0, 7.0, 0, "diffusion_steps T must be an int >= 1"),
])  # fmt: skip
def test_bad_schedules_are_clear_errors(gamma_min, gamma_max, steps, match):
    with pytest.raises(ValueError, match=match):
        ContinuousDiffusionPrior(UNet(1, 1, 16, 1), gamma_min, gamma_max, steps)
