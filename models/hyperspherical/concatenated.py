"""Concatenated: independent distributions as one, whose joint event is the concatenation of
their flattened events, with the KL between two of them (the sum of the components' KLs)
registered. The product-space S-VAE's posterior and prior (models.hyperspherical.hyperspherical)
are one of these over its groups of spheres.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Distribution, kl_divergence, register_kl


class Concatenated(Distribution):
    """Independent components whose joint event is the concatenation of their flattened events.

    ``components`` share (broadcast to) one batch shape; component i has event shape e_i and
    takes numel(e_i) consecutive entries of the event [sum_i numel(e_i)], in the given order.
    ``rsample``/``sample`` concatenate the components' draws, ``log_prob`` sums the components'
    log-densities of their slices, and KL between two products with the same event layout is the
    sum of the components' KLs (registered below). ``sample_shape`` works as for any
    distribution: log_prob of [*sample_shape, *batch_shape, D] gives [*sample_shape, *batch_shape].
    """

    arg_constraints: dict = {}

    def __init__(self, components):
        self.components = tuple(components)
        if not self.components:
            raise ValueError("Concatenated needs at least one component distribution")
        self.sizes = tuple(math.prod(c.event_shape) for c in self.components)
        batch_shape = torch.broadcast_shapes(*(c.batch_shape for c in self.components))
        super().__init__(batch_shape, torch.Size([sum(self.sizes)]), validate_args=False)

    @property
    def has_rsample(self) -> bool:
        return all(c.has_rsample for c in self.components)

    def _join(self, parts: list[Tensor], lead: torch.Size) -> Tensor:
        flat = [
            p.reshape(*p.shape[: p.dim() - len(c.event_shape)], -1).expand(*lead, n)
            for p, c, n in zip(parts, self.components, self.sizes, strict=True)
        ]
        return flat[0] if len(flat) == 1 else torch.cat(flat, dim=-1)

    def rsample(self, sample_shape: torch.Size | tuple = ()) -> Tensor:
        sample_shape = torch.Size(sample_shape)
        parts = [c.rsample(sample_shape) for c in self.components]
        return self._join(parts, sample_shape + self.batch_shape)

    def sample(self, sample_shape: torch.Size | tuple = ()) -> Tensor:
        sample_shape = torch.Size(sample_shape)
        with torch.no_grad():
            parts = [c.sample(sample_shape) for c in self.components]
        return self._join(parts, sample_shape + self.batch_shape)

    def log_prob(self, value: Tensor) -> Tensor:
        total = None
        for c, piece in zip(self.components, value.split(self.sizes, dim=-1), strict=True):
            lp = c.log_prob(piece.reshape(*piece.shape[:-1], *c.event_shape))
            total = lp if total is None else total + lp
        return total

    @property
    def mean(self) -> Tensor:
        return self._join([c.mean for c in self.components], self.batch_shape)

    def entropy(self) -> Tensor:
        return sum(c.entropy() for c in self.components)


@register_kl(Concatenated, Concatenated)
def _kl_concatenated(p: Concatenated, q: Concatenated) -> Tensor:
    """KL of products of independent components: the sum of the components' KLs."""
    shapes_p = [c.event_shape for c in p.components]
    shapes_q = [c.event_shape for c in q.components]
    if shapes_p != shapes_q:
        raise ValueError(
            f"KL between Concatenated distributions with different layouts: {shapes_p} vs "
            f"{shapes_q}"
        )
    return sum(kl_divergence(a, b) for a, b in zip(p.components, q.components, strict=True))
