"""What a paper's sweep is made of: cells (family x dataset x likelihood) and budgets.

Plain dataclasses with no Ray in them, so a sweep script reads as a declaration.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

PROJECT = "project"
"""The project's protocol: a seeded validation split, selection never on test, the papers'
intended algorithms (the deviations sections of docs/specs/)."""


@dataclass(frozen=True)
class Cell:
    """One entry of a paper's table: a family on a dataset with a likelihood (and a variant)."""

    paper: str
    family: str
    dataset: str
    likelihood: str
    variant: str = "-"
    fixed: dict = field(default_factory=dict)
    """Flat namespaced config fixed for this cell, e.g. {"data/binarize": True}."""
    protocol: str = PROJECT
    """How the cell uses its data and which of the authors' behaviours it reproduces: "project",
    or a protocol of its paper's script (its keys are in ``fixed``; see ``Protocol``)."""

    @property
    def name(self) -> str:
        parts = [self.paper, self.family, self.dataset, self.likelihood]
        if self.variant != "-":
            safe = self.variant.replace("=", "").replace(" ", "_").replace("%", "pct")
            parts.append(safe)
        if self.protocol != PROJECT:
            parts.append(self.protocol)
        return "-".join(parts)

    def fields(self) -> dict:
        """The cell's columns in every Parquet row (results.rows.CELL_FIELDS)."""
        return {"sweep": self.name, "paper": self.paper, "family": self.family,
                "dataset": self.dataset, "likelihood": self.likelihood, "variant": self.variant,
                "protocol": self.protocol}  # fmt: skip

    def base_config(self, budget: Budget) -> dict:
        """The fixed part of every trial's config in this cell (Optuna samples the rest)."""
        return {
            "train/max_epochs": budget.max_epochs,
            "train/patience": budget.patience,
            **budget.fixed,
            **self.identity,  # what the cell is, never overridden (sweeps.engine.preflight)
        }

    def key_sources(self, budget: Budget, overrides: dict) -> dict[str, str]:
        """What fixed each key of ``base_config(budget)``: "cell" (what the cell is, its
        protocol's keys included), "--set" (``overrides``, the sweep's --set flags) or "budget"."""
        return {
            **dict.fromkeys(self.base_config(budget), "budget"),
            **dict.fromkeys(overrides, "--set"),
            **dict.fromkeys(self.identity, "cell"),
        }

    @property
    def identity(self) -> dict:
        """The keys that make this cell this cell: family, dataset, likelihood, its fixed keys."""
        return {
            "family": self.family,
            "data/dataset": self.dataset,
            "model/likelihood": self.likelihood,
            **self.fixed,
        }


@dataclass(frozen=True)
class Budget:
    """How much search a sweep does: trials, epochs, ASHA rungs, and the test evaluation."""

    trials: int
    max_epochs: int
    grace_epochs: int
    reduction_factor: int
    patience: int
    eval_k: int
    eval_seeds: int
    fixed: dict = field(default_factory=dict)
    """Flat namespaced config fixed by the budget, e.g. a validation subset for smoke runs."""
    winner_seeds: int = 1
    """Training seeds of the winning configuration: the search's own run and winner_seeds - 1
    re-trainings from scratch with the next seeds (sweeps.engine.seeds); the table's mean ± std is
    over them. ``eval_seeds`` is the importance-sampling seeds of each trained model."""
    search_seeds: int = 1
    """Training seeds of each configuration the search draws (``--search-seeds``): trained in
    lockstep in one trial, its validation loss their mean (training.lockstep)."""

    def __post_init__(self):
        counts = (self.trials, self.max_epochs, self.grace_epochs, self.eval_k, self.eval_seeds,
                  self.winner_seeds, self.search_seeds)  # fmt: skip
        if min(counts) < 1:
            raise ValueError(f"every budget count must be >= 1: {self}")
        if self.grace_epochs > self.max_epochs:
            raise ValueError(f"grace_epochs {self.grace_epochs} > max_epochs {self.max_epochs}")


@dataclass(frozen=True)
class Protocol:
    """A paper's named protocol: the flat config keys that make a cell run the authors' way.

    ``keys`` apply to every cell whose family's config has them (a family without the key, e.g.
    IAF's always Monte-Carlo KL, is unaffected); ``extra(cell)`` adds cell-dependent keys (e.g.
    only on SVHN). The keys become part of the cell's fixed keys, so ``--set`` cannot undo them
    and a storage cell started under one protocol is never continued under another.
    """

    description: str
    keys: dict = field(default_factory=dict)
    extra: Callable[[Cell], dict] | None = None

    def keys_for(self, cell: Cell) -> dict:
        from training.config import config_keys  # torch: not imported by a script's --help

        own = config_keys(cell.family)
        keys = {k: v for k, v in self.keys.items() if k in own}
        return {**keys, **(self.extra(cell) if self.extra else {})}

    def apply(self, name: str, cell: Cell) -> Cell:
        """``cell`` run under this protocol: its keys fixed, its name and rows marked ``name``."""
        return dataclasses.replace(cell, protocol=name, fixed={**cell.fixed, **self.keys_for(cell)})
