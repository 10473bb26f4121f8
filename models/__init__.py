"""Model families: pure torch, built from their own config and the data shape only.

model = models.build("vae", {"latent_dim": 50}, x_shape=(1, 28, 28))

Imported lazily (PEP 562): ``import models.hierarchical.dvp_form`` imports no torch, so a sweep
script's --help stays light; the names below load models.registry, and torch, when first used.
"""

from __future__ import annotations

__all__ = ["REGISTRY", "LatentVariableModel", "Terms", "build", "config_class"]


def __getattr__(name: str):
    if name in __all__:
        from models import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
