"""What a paper's sweep is made of: cells (family x dataset x likelihood) and budgets.

Plain dataclasses with no Ray in them, so a sweep script reads as a declaration.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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

    @property
    def name(self) -> str:
        parts = [self.paper, self.family, self.dataset, self.likelihood]
        if self.variant != "-":
            safe = self.variant.replace("=", "").replace(" ", "_").replace("%", "pct")
            parts.append(safe)
        return "-".join(parts)

    def base_config(self, budget: Budget) -> dict:
        """The fixed part of every trial's config in this cell (Optuna samples the rest)."""
        return {
            "train/max_epochs": budget.max_epochs,
            "train/patience": budget.patience,
            **budget.fixed,
            **self.identity,  # what the cell is: never overridden (sweeps.preflight refuses it)
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

    def __post_init__(self):
        if min(self.trials, self.max_epochs, self.grace_epochs, self.eval_k, self.eval_seeds) < 1:
            raise ValueError(f"every budget count must be >= 1: {self}")
        if self.grace_epochs > self.max_epochs:
            raise ValueError(f"grace_epochs {self.grace_epochs} > max_epochs {self.max_epochs}")
