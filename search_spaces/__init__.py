"""Optuna define-by-run search spaces, one module per family. Imports optuna only."""

from __future__ import annotations

from collections.abc import Callable

import optuna

from search_spaces import vae

SPACES: dict[str, Callable[[optuna.Trial], None]] = {"vae": vae.space}


def space_for(family: str) -> Callable[[optuna.Trial], None]:
    if family not in SPACES:
        raise ValueError(f"no search space for family {family!r}; known: {sorted(SPACES)}")
    return SPACES[family]
