"""Observation models p(x|z) as torch distributions over one whole example (event = all pixels).

Decoders produce flat parameters [..., D]; these distributions take images [..., C, H, W] (or any
shape whose trailing dims flatten to D) and return one log-probability per example.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution, constraints


class _FlatImageDistribution(Distribution):
    """Base: parameters [..., D]; values shaped [..., *x_shape]; log_prob sums over pixels."""

    arg_constraints: dict = {}

    def __init__(self, x_shape: tuple[int, ...], batch_shape: torch.Size):
        self.x_shape = tuple(x_shape)
        super().__init__(batch_shape, torch.Size(self.x_shape), validate_args=False)

    def _flat(self, x: Tensor) -> Tensor:
        return x.reshape(*x.shape[: x.dim() - len(self.x_shape)], -1)

    def _image(self, v: Tensor) -> Tensor:
        return v.reshape(*v.shape[:-1], *self.x_shape)


class BernoulliImage(_FlatImageDistribution):
    """Independent Bernoulli pixels, parameterised by logits (binarised data)."""

    support = constraints.boolean

    def __init__(self, logits: Tensor, x_shape: tuple[int, ...]):
        self.logits = logits
        super().__init__(x_shape, logits.shape[:-1])

    def log_prob(self, x: Tensor) -> Tensor:
        # -BCE-with-logits is the stable form of x log p + (1 - x) log(1 - p).
        target = self._flat(x).expand_as(self.logits)
        return -F.binary_cross_entropy_with_logits(self.logits, target, reduction="none").sum(-1)

    @property
    def mean(self) -> Tensor:
        return self._image(torch.sigmoid(self.logits))

    def sample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
        probs = torch.sigmoid(self.logits).expand(*sample_shape, *self.logits.shape)
        return self._image(torch.bernoulli(probs))


class GaussianImage(_FlatImageDistribution):
    """Independent Gaussian pixels with one shared variance exp(log_var) (VLAE paper, sec. 1)."""

    support = constraints.real

    def __init__(self, loc: Tensor, log_var: Tensor, x_shape: tuple[int, ...]):
        self.loc, self.log_var = loc, log_var
        super().__init__(x_shape, loc.shape[:-1])

    def log_prob(self, x: Tensor) -> Tensor:
        d = self.loc.shape[-1]
        sq = (self.loc - self._flat(x)).square_().sum(-1)  # in place: one [..., D] temporary
        return -0.5 * (d * (math.log(2 * math.pi) + self.log_var) + sq * torch.exp(-self.log_var))

    @property
    def mean(self) -> Tensor:
        return self._image(self.loc)

    def sample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
        loc = self.loc.expand(*sample_shape, *self.loc.shape)
        return self._image(loc + torch.exp(0.5 * self.log_var) * torch.randn_like(loc))


class BernoulliHead(nn.Module):
    """Turns decoder outputs into a Bernoulli image distribution."""

    continuous_data = False

    def __init__(self, x_shape: tuple[int, ...]):
        super().__init__()
        self.x_shape = tuple(x_shape)

    def forward(self, out: Tensor) -> BernoulliImage:
        return BernoulliImage(out, self.x_shape)

    def initialise(self, x_train: Tensor) -> None:
        pass


class GaussianHead(nn.Module):
    """Gaussian image distribution with a single learned log-variance, initialised from the data."""

    continuous_data = True

    def __init__(self, x_shape: tuple[int, ...]):
        super().__init__()
        self.x_shape = tuple(x_shape)
        self.log_var = nn.Parameter(torch.zeros(()))

    def forward(self, out: Tensor) -> GaussianImage:
        return GaussianImage(out, self.log_var, self.x_shape)

    @torch.no_grad()
    def initialise(self, x_train: Tensor) -> None:
        """log_var = log mean_{n,d} (x_nd - mean_d)^2, so the initial squared error term is ~D/2."""
        x = x_train.reshape(x_train.shape[0], -1).float()
        self.log_var.fill_(torch.log((x - x.mean(0)).pow(2).mean()).item())


LIKELIHOODS: dict[str, type[nn.Module]] = {"bernoulli": BernoulliHead, "gaussian": GaussianHead}


def likelihood_head(name: str, x_shape: tuple[int, ...]) -> nn.Module:
    if name not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {name!r}; choose one of {sorted(LIKELIHOODS)}")
    return LIKELIHOODS[name](x_shape)
