"""The output heads of the Ladder VAE (models.hierarchical.ladder): the decoder's likelihood
p(x | z_1), read from the maps of its output 3x3 conv, named by model/likelihood in ``OUTPUTS``.

Each head knows how many maps the output conv gives (``channels``), the distribution those maps
parameterise, log p(x | z) of data x in [0, 1], and how a draw (or mean) maps back to [0, 1].

    BernoulliOutput   binarised data: one logit map per image channel
    MixtureOutput     8-bit levels: the discretised logistic mixture on [-1, 1]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from torch import Tensor

from models.likelihoods import BernoulliImage, DiscretizedLogisticMixture, logistic_mixture


class OutputOptions(Protocol):
    """The keys of LadderConfig a head reads (models.hierarchical.ladder_config imports this
    module for LIKELIHOODS, so the heads name the keys, not the class)."""

    @property
    def num_mix(self) -> int: ...

    @property
    def mix_coeffs(self) -> bool: ...

    @property
    def mix_scale(self) -> str: ...


@dataclass(frozen=True)
class BernoulliOutput:
    """p(x | z) as Bernoulli pixels: the output conv gives one logit map per image channel; the
    data (binarised) is scored as it is."""

    x_shape: tuple[int, ...]

    @classmethod
    def from_config(cls, cfg: OutputOptions, x_shape: tuple[int, ...]) -> BernoulliOutput:
        return cls(tuple(x_shape))

    @property
    def channels(self) -> int:
        """The output conv's channels."""
        return self.x_shape[0]

    def distribution(self, out: Tensor) -> BernoulliImage:
        return BernoulliImage(out.flatten(1), self.x_shape)

    def log_prob(self, out: Tensor, x: Tensor) -> Tensor:
        """log p(x | z) [B] of data x in [0, 1]."""
        return self.distribution(out).log_prob(x)

    def to_data(self, x: Tensor) -> Tensor:
        """A draw (or mean) of the distribution as data in [0, 1]."""
        return x


@dataclass(frozen=True)
class MixtureOutput:
    """p(x | z) as the discretised logistic mixture over the 8-bit levels: the output conv gives
    K (1 + 2 C) parameter maps (+ 3 K with RGB coefficients); the data's levels n / 255 are the
    mixture's bins on [-1, 1]."""

    x_shape: tuple[int, ...]
    components: int
    coefficients: bool
    scale: str

    @classmethod
    def from_config(cls, cfg: OutputOptions, x_shape: tuple[int, ...]) -> MixtureOutput:
        if cfg.mix_coeffs and x_shape[0] != 3:
            raise ValueError(f"mix_coeffs (RGB mean coefficients) needs 3 channels, the data has "
                             f"{x_shape[0]}; set mix_coeffs=false")  # fmt: skip
        return cls(tuple(x_shape), cfg.num_mix, cfg.mix_coeffs, cfg.mix_scale)

    @property
    def channels(self) -> int:
        return self.components * (1 + 2 * self.x_shape[0] + (3 if self.coefficients else 0))

    def distribution(self, out: Tensor) -> DiscretizedLogisticMixture:
        return logistic_mixture(out, self.x_shape[0], self.components, self.coefficients,
                                self.scale)  # fmt: skip

    def log_prob(self, out: Tensor, x: Tensor) -> Tensor:
        return self.distribution(out).log_prob(2 * x - 1)  # the mixture's bins live on [-1, 1]

    def to_data(self, x: Tensor) -> Tensor:
        return (x + 1) / 2


OUTPUTS: dict[str, type[BernoulliOutput | MixtureOutput]] = {
    "bernoulli": BernoulliOutput,
    "logistic_mixture": MixtureOutput,
}
"""The ladder's likelihoods by their config name (model/likelihood)."""
LIKELIHOODS = tuple(OUTPUTS)
