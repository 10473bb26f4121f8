"""The residual blocks of the top-down hierarchical VAEs (docs/specs/hierarchical.md, sections
1.2-1.3; the authors' utils/nn.py and utils/vae_layers.py, shared by DCT-VAE and DVP-VAE).

    EncoderBlock   pre-activation bottleneck: [act, 1x1 in->hid], 2 x [act, 3x3 hid->hid],
                   [act, 1x1 hid->out]; hid = in * block_ch_mult
    DecoderBlock   post-activation: [1x1 in->hid, act], then "2x3": 2 x [3x3 hid->hid, act] or
                   "1x5": [depthwise 5x5 hid->hid, act]; then 1x1 hid->out (no activation)

With ``residual`` a block returns skip(x) + beta * net(x), skip the identity or a 1x1 conv when
the channels change, and beta the gate: ``gate="learned"``, a learned scalar that starts at 0
(DCT-VAE's _ResBlock: every residual block starts as its skip path), or ``gate="one"``, beta
fixed at 1 (DVP-VAE's _ResBlock, where it is a frozen parameter). Without, it returns net(x)
(DCT-VAE's prior and posterior nets). DCT-VAE's prior nets use "1x5", its authors' default mode:
the parameter counts of docs/specs/hierarchical.md#8-parameter-counts are those of "1x5" prior nets
and "2x3" posterior and state nets (tests/unit/test_hierarchical.py); DVP-VAE's configs set "2x3"
everywhere.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

ACTIVATIONS = {"silu": nn.SiLU, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU}
GATES = ("learned", "one")
BN_MOMENTUM = 0.05
"""The authors' BatchNorm momentum."""


def conv(c_in: int, c_out: int, kernel: int, weight_norm: bool, groups: int = 1) -> nn.Module:
    layer = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, groups=groups)
    return nn.utils.parametrizations.weight_norm(layer) if weight_norm else layer


class _Residual(nn.Module):
    def __init__(self, c_in: int, c_out: int, residual: bool, gate: str = "learned"):
        super().__init__()
        if gate not in GATES:
            raise ValueError(f"residual gate must be one of {list(GATES)}, got {gate!r}")
        self.residual = residual
        if residual:
            self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)
            self.beta = nn.Parameter(torch.zeros(1)) if gate == "learned" else None

    def forward(self, x: Tensor) -> Tensor:
        if not self.residual:
            return self.net(x)
        if self.beta is None:
            return self.skip(x) + self.net(x)
        return self.skip(x) + self.beta * self.net(x)


class EncoderBlock(_Residual):
    def __init__(
        self, c_in: int, hid: int, c_out: int, activation: str = "silu",
        batch_norm: bool = False, weight_norm: bool = False, residual: bool = True,
        gate: str = "learned",
    ):  # fmt: skip
        super().__init__(c_in, c_out, residual, gate)
        layers: list[nn.Module] = []
        for a, b, k in ((c_in, hid, 1), (hid, hid, 3), (hid, hid, 3), (hid, c_out, 1)):
            if batch_norm:
                layers.append(nn.BatchNorm2d(a, momentum=BN_MOMENTUM))
            layers += [ACTIVATIONS[activation](), conv(a, b, k, weight_norm)]
        self.net = nn.Sequential(*layers)
        self.last = layers[-1]


class DecoderBlock(_Residual):
    def __init__(
        self, c_in: int, hid: int, c_out: int, mode: str = "2x3", activation: str = "silu",
        batch_norm: bool = False, weight_norm: bool = False, residual: bool = True,
        zero_last: bool = False, gate: str = "learned",
    ):  # fmt: skip
        super().__init__(c_in, c_out, residual, gate)
        if mode not in ("2x3", "1x5"):
            raise ValueError(f"decoder block mode must be '2x3' or '1x5', got {mode!r}")
        inner = [(hid, hid, 3, 1)] * 2 if mode == "2x3" else [(hid, hid, 5, hid)]
        layers: list[nn.Module] = []
        if batch_norm:
            layers.append(nn.BatchNorm2d(c_in, momentum=BN_MOMENTUM))
        for a, b, k, groups in [(c_in, hid, 1, 1), *inner]:
            layers.append(conv(a, b, k, weight_norm, groups))
            if batch_norm:
                layers.append(nn.BatchNorm2d(b, momentum=BN_MOMENTUM))
            layers.append(ACTIVATIONS[activation]())
        self.last = nn.Conv2d(hid, c_out, 1)
        layers.append(self.last)
        if batch_norm:
            layers.append(nn.BatchNorm2d(c_out, momentum=BN_MOMENTUM))
        self.net = nn.Sequential(*layers)
        if zero_last:
            nn.init.zeros_(self.last.weight)
            nn.init.zeros_(self.last.bias)
