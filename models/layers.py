"""Small building blocks shared by the families."""

from __future__ import annotations

import math

from torch import nn

# VLAE paper (Park et al. 2019, supplement): Kaiming-uniform with a = 2^(1/3), fan-out mode, chosen
# to preserve back-propagated variance through "two ReLU layers and one linear layer".
VLAE_KAIMING_A = 2 ** (1 / 3)


def mlp(sizes: list[int], final_activation: bool = False) -> nn.Sequential:
    """Linear layers of the given widths with ReLU between them (and after the last if asked)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2 or final_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def vlae_init_(module: nn.Module) -> None:
    """Re-initialise every Linear weight as the VLAE authors do; biases keep torch's default."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_uniform_(m.weight, a=VLAE_KAIMING_A, mode="fan_out")


def flat_dim(x_shape: tuple[int, ...]) -> int:
    return math.prod(x_shape)
