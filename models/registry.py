"""The model families by name: REGISTRY, config_class, build (re-exported by models)."""

from __future__ import annotations

import dataclasses

from torch import nn

from models.base import LatentVariableModel, Terms
from models.hierarchical.dct_vae import DCTVAE
from models.hierarchical.dvp_vae import DVPVAE
from models.hierarchical.ladder import LadderVAE
from models.hyperspherical.hyperspherical import NVAE, SVAE, ProductSpaceSVAE
from models.spvae.spvae import SPVAE, ConvSPVAE, ConvVAEBaseline, VAEBaseline
from models.vae import VAE
from models.vlae.flows import VAEHF, VAEIAF
from models.vlae.savae import SAVAE
from models.vlae.vlae import VLAE

REGISTRY: dict[str, type[nn.Module]] = {
    "vae": VAE,
    "svae": SVAE,
    "psvae": ProductSpaceSVAE,
    "nvae": NVAE,
    "spvae": SPVAE,
    "convspvae": ConvSPVAE,
    "spvae_vae": VAEBaseline,
    "spvae_convvae": ConvVAEBaseline,
    "vlae": VLAE,
    "savae": SAVAE,
    "vae_hf": VAEHF,
    "vae_iaf": VAEIAF,
    "ladder": LadderVAE,
    "dct_vae": DCTVAE,
    "dvp_vae": DVPVAE,
}

__all__ = ["REGISTRY", "LatentVariableModel", "Terms", "build", "config_class"]


def config_class(family: str) -> type:
    """The frozen config dataclass of a family."""
    if family not in REGISTRY:
        raise ValueError(f"unknown model family {family!r}; known families: {sorted(REGISTRY)}")
    return REGISTRY[family].Config


def build(family: str, model_config: dict, x_shape: tuple[int, ...]) -> nn.Module:
    """Build a family's model from a plain dict of its config fields (unknown keys are errors)."""
    cls = config_class(family)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(model_config) - names)
    if unknown:
        raise ValueError(
            f"unknown config keys for family {family!r}: {unknown}; known: {sorted(names)}"
        )
    return REGISTRY[family](cls(**model_config), tuple(x_shape))
