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


def vlae_init_(module: nn.Module, fused: dict[nn.Linear, int] | None = None) -> None:
    """Re-initialise every Linear weight as the VLAE authors do; biases keep torch's default.

    ``fused`` maps a Linear that computes several outputs side by side (the posterior's
    [mean; log-variance]) to how many: each block of its rows is initialised with its own fan-out,
    as the authors' separate layers are (theirs: two Linear(H, z) of fan-out z; the fused layer's
    own fan-out 2z would start its weights 1/sqrt(2) as large). The random draws are the same in
    number and order either way, so only those weights' scale differs.
    """
    fused = fused or {}
    for m in module.modules():
        if isinstance(m, nn.Linear):
            for block in m.weight.chunk(fused.get(m, 1), dim=0):
                nn.init.kaiming_uniform_(block, a=VLAE_KAIMING_A, mode="fan_out")


def flat_dim(x_shape: tuple[int, ...]) -> int:
    return math.prod(x_shape)
