"""Observation models p(x|z) as torch distributions over one whole example (event = all pixels).

Decoders produce flat parameters [..., D]; these distributions take images [..., C, H, W] (or any
shape whose trailing dims flatten to D) and return one log-probability per example.

Every likelihood a config can name (``model/likelihood=...``) has one ``Likelihood`` here, looked up
by that name (``likelihood_spec``): its support and what it asks of the data (training.config's
rules read these, never the name). How a family parametrises it is the family's own object, found
by the same name: the heads below (MLP families), models.hierarchical.outputs' heads (conv maps),
models.spvae.leaves' patch likelihoods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
    """Independent Gaussian pixels with one shared variance exp(log_var)
    (docs/specs/vlae.md#1-shared-backbone)."""

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

    def __init__(self, x_shape: tuple[int, ...]):
        super().__init__()
        self.x_shape = tuple(x_shape)

    def forward(self, out: Tensor) -> BernoulliImage:
        return BernoulliImage(out, self.x_shape)

    def initialise(self, x_train: Tensor) -> None:
        pass


class GaussianHead(nn.Module):
    """Gaussian image distribution with a single learned log-variance, initialised from the data."""

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


BINS = 256
"""Grey levels of 8-bit data; the logistic mixture's pixels are their centres on [-1, 1]."""
SCALES = ("log", "softplus")
"""The logistic mixture's scale parameterisations: DVP-VAE's log s clamped to [-8, 1] (VDVAE),
DCT-VAE's s = softplus_{beta=0.4}(raw) (docs/specs/hierarchical.md#14-output-and-likelihoods)."""


class DiscretizedLogisticMixture(Distribution):
    """PixelCNN++'s discretised mixture of logistics over 8-bit images scaled to [-1, 1].

    Per pixel, one mixture over K components; given the component, channel c is a logistic with
    mean mu_c and scale s_c, discretised to the 256 bins of half-width 1/255 around the levels
    x_i = 2 i / 255 - 1, the first and last bin taking the tails:

        P(x_i) = sigma((x_i + 1/255 - mu) / s) - sigma((x_i - 1/255 - mu) / s),
        P(x_0) = sigma((x_0 + 1/255 - mu) / s),   P(x_255) = 1 - sigma((x_255 - 1/255 - mu) / s).

    The bins telescope, so they sum to one. With ``coeffs`` (RGB only), the means are
    autoregressive over the channels: mu_g + a x_r and mu_b + b x_r + c x_g (a, b, c = tanh of
    the raw coefficients). log P is computed as log sigma(u) + log sigma(-v) + log(1 - e^(v-u)),
    exact and stable for every bin (no PixelCNN++ pdf fallback needed).

    Parameters, with any leading batch dims: ``logits`` [..., K, H, W], ``loc`` and ``scale``
    [..., K, C, H, W] (scale s > 0), ``coeffs`` [..., K, 3, H, W] or None. Values x:
    [..., C, H, W] on the bin centres; log_prob sums over pixels and channels.
    """

    arg_constraints: dict = {}
    support = constraints.interval(-1.0, 1.0)

    def __init__(self, logits: Tensor, loc: Tensor, scale: Tensor, coeffs: Tensor | None = None):
        if loc.shape != scale.shape or loc.shape[:-3] != logits.shape[:-2]:
            raise ValueError(f"logits {tuple(logits.shape)}, loc {tuple(loc.shape)} and scale "
                             f"{tuple(scale.shape)} do not fit [..., K, (C,) H, W]")  # fmt: skip
        if coeffs is not None and loc.shape[-3] != 3:
            raise ValueError(f"RGB coefficients need 3 channels, got {loc.shape[-3]}")
        self.logits, self.loc, self.scale, self.coeffs = logits, loc, scale, coeffs
        batch = logits.shape[:-3]
        super().__init__(batch, torch.Size(loc.shape[-3:]), validate_args=False)

    def means(self, x: Tensor) -> Tensor:
        """[..., K, C, H, W]: each channel's mean given the channels before it (x, the data)."""
        if self.coeffs is None:
            return self.loc
        c = torch.tanh(self.coeffs)
        r, g = x[..., :1, :, :].unsqueeze(-4), x[..., 1:2, :, :].unsqueeze(-4)
        mu = self.loc
        green = mu[..., 1:2, :, :] + c[..., :1, :, :] * r
        blue = mu[..., 2:, :, :] + c[..., 1:2, :, :] * r + c[..., 2:, :, :] * g
        return torch.cat([mu[..., :1, :, :].expand_as(green), green, blue], dim=-3)

    def bin_log_prob(self, x: Tensor) -> Tensor:
        """log P(x | component) per component, channel and pixel: [..., K, C, H, W]."""
        x = x.unsqueeze(-4)
        centred = x - self.means(x.squeeze(-4))
        half = 1.0 / (BINS - 1)
        upper = (centred + half) / self.scale  # u
        lower = (centred - half) / self.scale  # v
        first, last = x <= -1 + half / 2, x >= 1 - half / 2
        inner = F.logsigmoid(upper) + F.logsigmoid(-lower) + torch.log(-torch.expm1(lower - upper))
        return torch.where(first, F.logsigmoid(upper),
                           torch.where(last, F.logsigmoid(-lower), inner))  # fmt: skip

    def log_prob(self, x: Tensor) -> Tensor:
        per_component = self.bin_log_prob(x).sum(-3)  # channels, given the component
        mixed = torch.logsumexp(F.log_softmax(self.logits, dim=-3) + per_component, dim=-3)
        return mixed.flatten(-2).sum(-1)

    @property
    def mean(self) -> Tensor:
        """The mixture's mean of the continuous (undiscretised) logistics, channel by channel
        with the coefficients applied to the channels' means: a picture, not an estimator."""
        weights = F.softmax(self.logits, dim=-3).unsqueeze(-3)
        mu = self.loc
        if self.coeffs is not None:
            mu = self.means((weights * mu).sum(-4).clamp(-1, 1))
        return (weights * mu).sum(-4).clamp(-1, 1)

    @torch.no_grad()
    def sample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
        """One component per pixel, then the channels in order, each a logistic draw clamped to
        [-1, 1] and rounded to its bin: exactly the distribution log_prob scores. The RGB means
        use the channels already drawn, as binned values (what log_prob conditions on)."""
        shape = torch.Size(sample_shape)
        logits = self.logits.expand(*shape, *self.logits.shape)
        gumbel = -torch.log(-torch.log(torch.rand_like(logits).clamp_(1e-10, 1 - 1e-10)))
        pick = (logits + gumbel).argmax(-3, keepdim=True)  # [..., 1, H, W]
        index = pick.unsqueeze(-3).expand(*pick.shape[:-2], self.loc.shape[-3], *pick.shape[-2:])

        def chosen(t: Tensor) -> Tensor:
            return t.expand(*shape, *t.shape).gather(-4, index).squeeze(-4)

        loc, scale = chosen(self.loc), chosen(self.scale)
        coeffs = None if self.coeffs is None else torch.tanh(chosen(self.coeffs))
        x = torch.empty_like(loc)
        for ch in range(loc.shape[-3]):
            mu = loc[..., ch, :, :]
            if coeffs is not None and ch == 1:  # green from red
                mu = mu + coeffs[..., 0, :, :] * x[..., 0, :, :]
            if coeffs is not None and ch == 2:  # blue from red and green
                mu = (
                    mu
                    + coeffs[..., 1, :, :] * x[..., 0, :, :]
                    + coeffs[..., 2, :, :] * x[..., 1, :, :]
                )
            u = torch.rand_like(mu).clamp_(1e-6, 1 - 1e-6)
            draw = (mu + scale[..., ch, :, :] * (torch.log(u) - torch.log1p(-u))).clamp(-1, 1)
            x[..., ch, :, :] = torch.round((draw + 1) * (BINS - 1) / 2) * 2 / (BINS - 1) - 1
        return x


def logistic_mixture(
    params: Tensor, channels: int, components: int, coefficients: bool, scale: str = "log"
) -> DiscretizedLogisticMixture:
    """The mixture from a decoder's output [..., P, H, W], P = K (1 + 2 C) (+ 3 K with RGB
    coefficients), laid out as logits, means, raw scales (, raw coefficients)."""
    if scale not in SCALES:
        raise ValueError(f"logistic mixture scale must be one of {list(SCALES)}, got {scale!r}")
    k, c = components, channels
    expected = k * (1 + 2 * c + (3 if coefficients else 0))
    if params.shape[-3] != expected:
        raise ValueError(f"{k} components of {c} channels need {expected} parameter maps, got "
                         f"{params.shape[-3]}")  # fmt: skip
    lead, hw = params.shape[:-3], params.shape[-2:]
    logits, loc, raw, rest = params.split([k, k * c, k * c, expected - k * (1 + 2 * c)], dim=-3)
    loc, raw = loc.reshape(*lead, k, c, *hw), raw.reshape(*lead, k, c, *hw)
    if scale == "log":
        s = torch.exp(raw.clamp(-8.0, 1.0))
    else:
        s = F.softplus(raw, beta=0.4)
    coeffs = rest.reshape(*lead, k, 3, *hw) if coefficients else None
    return DiscretizedLogisticMixture(logits, loc, s, coeffs)


LIKELIHOODS: dict[str, type[nn.Module]] = {"bernoulli": BernoulliHead, "gaussian": GaussianHead}


def likelihood_head(name: str, x_shape: tuple[int, ...]) -> nn.Module:
    if name not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {name!r}; choose one of {sorted(LIKELIHOODS)}")
    return LIKELIHOODS[name](x_shape)


@dataclass(frozen=True)
class Likelihood:
    """A likelihood by its config name: what it scores and what it needs of the data."""

    name: str
    """Its config value (model/likelihood=...; stored in checkpoints and result rows)."""
    support: str
    """The values it scores: "binary" ({0, 1}), "continuous" (reals), "8-bit" (the 256 levels
    n / 255 of [0, 1])."""
    requires_binary_data: bool = False
    """Only binarised one-channel data (data/binarize=true; RGB needs data/greyscale=true)."""
    rejects_binary_data: bool = False
    """Never binarised data (data/binarize=false)."""
    requires_discrete_pixels: bool = False
    """Pixels on the 1/255 grid (data/pixels=discrete)."""
    requires_uncentred_data: bool = False
    """The levels themselves, not centred or logit-transformed (data/center and data/logit off;
    the families with ``unit_interval_data`` ask the same of every likelihood)."""


SPECS: dict[str, Likelihood] = {
    spec.name: spec
    for spec in (
        Likelihood("bernoulli", "binary", requires_binary_data=True),
        Likelihood("gaussian", "continuous", rejects_binary_data=True),
        Likelihood("binomial", "8-bit", requires_discrete_pixels=True),
        Likelihood("logistic_mixture", "8-bit", rejects_binary_data=True,
                   requires_discrete_pixels=True, requires_uncentred_data=True),
    )
}  # fmt: skip
"""Every likelihood any family accepts; each family's own choices are a subset."""


def likelihood_spec(name: str) -> Likelihood:
    if name not in SPECS:
        raise ValueError(f"unknown likelihood {name!r}; choose one of {sorted(SPECS)}")
    return SPECS[name]
