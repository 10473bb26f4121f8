"""What the sweep's command line asked for, once: a frozen Settings, one field per flag.

sweeps.engine.cli.parse_args builds it from argparse's parse of the flags (Settings.from_args),
after filling what the flags leave open (a local --storage made absolute, --datasets from the
budget); each ``--set KEY=VALUE`` is parsed there, once, into ``overrides``. Everything after
reads it: the plan and the preflight checks, the storage's checks, the cells' runs (a cell in
flight gets it pickled, in its CellControllers actor) and the progress lines. Nothing changes
it; a value found later (the --study-storage URL made absolute) is a new Settings
(dataclasses.replace).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Settings:
    """The sweep's flags (sweeps.engine.cli.parse_args: their help, defaults and choices)."""

    budget: str
    protocol: str
    storage: str  # a local path is absolute: cells run where the working directory differs
    datasets: tuple[str, ...]  # the budget's default when --datasets is not given
    families: tuple[str, ...] | None
    address: str | None
    cpus_per_trial: float
    gpus_per_trial: float | None  # None: 1 where the cluster has GPUs, else 0 (nodes.requested)
    set: tuple[str, ...]  # the --set items as given
    max_concurrent: int | None
    cells: str  # "concurrent" or "sequential"
    trials: int | None
    add_trials: int | None
    study_storage: str | None
    seed: int
    winner_seeds: int | None
    sampler: str  # "tpe" or "grid"
    resume: bool
    status: bool
    verbose: bool  # Ray's and Tune's own lines as they print them (sweeps.engine.console.quiet)
    log_to: tuple[str, ...]  # trackers fed each trial besides the storage (sweeps.engine.trackers)
    dry_run: bool  # the cost flags: sweeps.engine.estimate
    yes: bool
    gpus: int | None
    max_gpu_hours: float | None  # no trial starts that would pass it (sweeps.engine.gpu_cap)
    warm_start: str | None  # another sweep's storage seeding new cells (sweeps.engine.warm_start)
    warm_start_best: int
    warm_start_dataset: str | None  # its cells of this dataset, not each cell's own
    # each --set item parsed (training.config.parse_override), in order: ("train/lr", 0.001);
    # not hashed (a value may be a JSON list): ``set`` says the same
    overrides: tuple[tuple[str, Any], ...] = field(hash=False)
    search_seeds: int = 1  # training seeds of each searched configuration (training.lockstep)
    # what each cell's study minimises, val_loss first (sweeps.engine.objectives)
    objectives: tuple[str, ...] = ("val_loss",)

    @property
    def fixed(self) -> dict[str, Any]:
        """The --set keys and their values; a key given twice: its last value."""
        return dict(self.overrides)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        """The Settings of the parsed flags: lists made tuples, each --set item parsed (a bad
        one: training.config.ConfigError, naming it)."""
        values = {k: tuple(v) if isinstance(v, list | tuple) else v for k, v in vars(args).items()}
        return cls(**values, overrides=parsed(args.set))


def parsed(items: list[str]) -> tuple[tuple[str, Any], ...]:
    """Each --set item parsed (training.config.parse_override); training.config imports torch,
    so it is imported only when there is an item (--help and --status stay light)."""
    if not items:
        return ()
    from training.config import parse_override

    return tuple(parse_override(item) for item in items)


class DefaultsFormatter(argparse.HelpFormatter):
    """--help with each flag's default, "(default: X)" after its help, unless the help says its
    default in words or there is none to say (None, False, an empty list)."""

    def _get_help_string(self, action):
        text = action.help or ""
        value = action.default
        if "default" in text or value is None or value is False or value == [] or (
                value == argparse.SUPPRESS or not action.option_strings):  # fmt: skip
            return text
        return f"{text} (default: %(default)s)"
