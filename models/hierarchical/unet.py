"""The diffusion priors' network: the guided-diffusion UNet as the DCT-VAE authors configure it
(their utils/thirdparty/unet.py; Dhariwal & Nichol 2021), written anew.

    x_t [B, C, k, k], step t [B] -> [B, out, k, k]

Sinusoidal step embedding -> Linear, SiLU, Linear (width = ``channels``, the authors' x1 rather
than guided-diffusion's x4); a 3x3 stem; per level of ``mult``, ``blocks`` residual blocks then a
strided 3x3 convolution (not after the last level); a middle of residual block, self-attention,
residual block (the middle always attends, even with no attention resolutions: as in the
authors' code, so the parameter counts of docs/specs/hierarchical.md#8-parameter-counts hold); the
mirror image upwards with skip connections (``blocks + 1`` residual blocks per level,
nearest-neighbour upsampling and a 3x3 convolution); GroupNorm(16), SiLU and a zero-initialised 3x3
output conv. Each residual block: GroupNorm(16), SiLU, 3x3 conv; the step embedding as a scale and
shift of the second GroupNorm (``use_scale_shift_norm``); SiLU, dropout, zero-initialised 3x3 conv;
a 1x1 skip where the width changes. Every width must be a multiple of 16 (the group count).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GROUPS = 16


def step_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """[B] steps -> [B, dim]: cosines then sines of t times log-spaced frequencies."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


def zero_(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def norm(channels: int) -> nn.GroupNorm:
    if channels % GROUPS:
        raise ValueError(f"UNet widths must be multiples of {GROUPS}, got {channels}")
    return nn.GroupNorm(GROUPS, channels)


class ResBlock(nn.Module):
    def __init__(self, channels: int, emb: int, out: int, dropout: float):
        super().__init__()
        self.inp = nn.Sequential(norm(channels), nn.SiLU(), nn.Conv2d(channels, out, 3, padding=1))
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb, 2 * out))
        self.out_norm = norm(out)
        self.out = nn.Sequential(nn.SiLU(), nn.Dropout(dropout),
                                 zero_(nn.Conv2d(out, out, 3, padding=1)))  # fmt: skip
        self.skip = nn.Identity() if out == channels else nn.Conv2d(channels, out, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.inp(x)
        scale, shift = self.emb(emb)[..., None, None].chunk(2, dim=1)
        h = self.out(self.out_norm(h) * (1 + scale) + shift)
        return self.skip(x) + h


class Attention(nn.Module):
    """Self-attention over positions, heads split before q, k, v (guided-diffusion's legacy
    order), zero-initialised output projection."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention width {channels} is not divisible by {heads} heads")
        self.heads, self.norm = heads, norm(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj = zero_(nn.Conv1d(channels, channels, 1))

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        b, c, *spatial = x.shape
        flat = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(flat)).reshape(b * self.heads, 3 * c // self.heads, -1)
        q, k, v = qkv.chunk(3, dim=1)
        w = torch.softmax(torch.einsum("bct,bcs->bts", q, k) / math.sqrt(q.shape[1]), dim=-1)
        h = torch.einsum("bts,bcs->bct", w, v).reshape(b, c, -1)
        return (flat + self.proj(h)).reshape(b, c, *spatial)


class Step(nn.ModuleList):
    """A sequence of layers of which the residual blocks also take the step embedding."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, (ResBlock, Attention)) else layer(x)
        return x


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class UNet(nn.Module):
    def __init__(
        self, in_channels: int, out_channels: int, channels: int, blocks: int,
        mult: tuple[float, ...] = (1,), dropout: float = 0.0, heads: int = 1,
    ):  # fmt: skip
        super().__init__()
        self.channels = channels
        self.step_mlp = nn.Sequential(nn.Linear(channels, channels), nn.SiLU(),
                                      nn.Linear(channels, channels))  # fmt: skip
        ch = int(mult[0] * channels)
        self.down = nn.ModuleList([Step([nn.Conv2d(in_channels, ch, 3, padding=1)])])
        skips = [ch]
        for level, m in enumerate(mult):
            for _ in range(blocks):
                self.down.append(Step([ResBlock(ch, channels, int(m * channels), dropout)]))
                ch = int(m * channels)
                skips.append(ch)
            if level != len(mult) - 1:
                self.down.append(Step([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                skips.append(ch)
        self.middle = Step([ResBlock(ch, channels, ch, dropout), Attention(ch, heads),
                            ResBlock(ch, channels, ch, dropout)])  # fmt: skip
        self.up = nn.ModuleList()
        for level, m in reversed(list(enumerate(mult))):
            for i in range(blocks + 1):
                layers = [ResBlock(ch + skips.pop(), channels, int(m * channels), dropout)]
                ch = int(m * channels)
                if level and i == blocks:
                    layers.append(Upsample(ch))
                self.up.append(Step(layers))
        self.out = nn.Sequential(norm(ch), nn.SiLU(),
                                 zero_(nn.Conv2d(ch, out_channels, 3, padding=1)))  # fmt: skip

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        emb = self.step_mlp(step_embedding(t, self.channels))
        hs = []
        h = x
        for layer in self.down:
            h = layer(h, emb)
            hs.append(h)
        h = self.middle(h, emb)
        for layer in self.up:
            h = layer(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)
