"""Optuna define-by-run search spaces, one module per family. Imports optuna only."""

from __future__ import annotations

from collections.abc import Callable

import optuna

from search_spaces import hierarchical, hyperspherical, spvae, vae, vlae

SPACES: dict[str, Callable[[optuna.Trial], None]] = {
    "vae": vae.space,
    "svae": hyperspherical.space,
    "psvae": hyperspherical.space,
    "nvae": hyperspherical.space,
    **spvae.SPACES,
    **vlae.SPACES,
    **hierarchical.SPACES,
}

GRIDS: dict[str, dict[str, list]] = {**spvae.GRIDS}
"""Families whose authors ran an exhaustive grid: the grid ``--sampler grid`` replays."""


def space_for(family: str, fixed: dict | None = None) -> Callable[[optuna.Trial], None]:
    """The family's space; keys in ``fixed`` (a sweep's --set, a budget's or a cell's fixed
    config) keep their fixed value instead of being sampled, and branch the space accordingly."""
    if family not in SPACES:
        raise ValueError(f"no search space for family {family!r}; known: {sorted(SPACES)}")
    space = SPACES[family]
    if not fixed:
        return space
    return _FixedSpace(space, fixed)


def grid_for(family: str, fixed: dict | None = None) -> dict[str, list]:
    """The authors' grid of a family, without the keys ``fixed`` pins (those are not searched)."""
    if family not in GRIDS:
        raise ValueError(
            f"family {family!r} has no authors' grid to replay (grids: {sorted(GRIDS)}); "
            "use --sampler tpe"
        )
    return {k: v for k, v in GRIDS[family].items() if k not in (fixed or {})}


class _FixedSpace:
    """``space`` with some keys fixed; a class, not a closure, because Tune pickles the searcher."""

    def __init__(self, space: Callable[[optuna.Trial], None], fixed: dict):
        self.space, self.fixed = space, dict(fixed)

    def __call__(self, trial: optuna.Trial):
        return self.space(_Fixing(trial, self.fixed))


class _Fixing:
    """A trial whose suggest_* calls answer fixed keys from a dict and sample only the rest."""

    def __init__(self, trial: optuna.Trial, fixed: dict):
        self._trial, self._fixed = trial, fixed

    def __getattr__(self, name: str):
        attr = getattr(self._trial, name)
        if not name.startswith("suggest_"):
            return attr

        def suggest(key: str, *args, **kwargs):
            return self._fixed[key] if key in self._fixed else attr(key, *args, **kwargs)

        return suggest
