"""Everything a sweep can check before Ray starts (and, on a cluster, before its first trial).

Each check raises Refusal with one line that names the problem and the fix; the sweep prints it
as ``error: ...`` and exits 2. Nothing here starts Ray or writes to the storage, but for
repair_storage (the repairs of a resumed or extended storage's damaged records).
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

import optuna

import search_spaces
from results import damage, records, repair, store, studies
from sweeps.cells import Budget, Cell
from sweeps.engine import objectives as objective_values
from sweeps.engine.settings import Settings
from training.errors import ConfigError

if TYPE_CHECKING:  # training.config, .memory and .trainer import torch: imported where used, so
    from training.config import Config  # that --help, --status and --dry-run start fast

MACHINE_KEYS = frozenset({"data/root", "data/download", "train/device"})
"""Keys that say where a trial runs, not what it computes: they may differ on --resume."""
SAMPLES = 3
"""Points of each cell's search space drawn to check the configs its trials will get."""


class Refusal(ValueError):
    """The sweep cannot start as asked; the message names the problem and the fix."""


def check_counts(settings: Settings) -> None:
    """Counts and resources that are wrong whatever the cluster."""
    for flag, value in (("--trials", settings.trials), ("--add-trials", settings.add_trials),
                        ("--max-concurrent", settings.max_concurrent)):  # fmt: skip
        if value is not None and value < 1:
            raise Refusal(f"{flag} must be at least 1, got {value}")
    if settings.winner_seeds is not None and settings.winner_seeds < 1:
        raise Refusal(
            f"--winner-seeds must be at least 1, got {settings.winner_seeds} (1: the winner's "
            "search run alone; N: it and N - 1 re-trainings with other training seeds)"
        )
    if settings.search_seeds < 1:
        raise Refusal(
            f"--search-seeds must be at least 1, got {settings.search_seeds} (1: each "
            "configuration trained once; N: with N training seeds, scored by their mean)"
        )
    if settings.cpus_per_trial < 0:
        raise Refusal(f"--cpus-per-trial must be >= 0, got {settings.cpus_per_trial}")
    gpus = settings.gpus_per_trial
    if gpus is not None and (gpus < 0 or (gpus > 1 and gpus != int(gpus))):
        raise Refusal(
            f"--gpus-per-trial must be a fraction in [0, 1] or a whole number, got {gpus}"
        )
    if settings.resume and settings.add_trials:
        raise Refusal("--resume and --add-trials: choose one (continue the cells, or add trials)")
    if settings.resume and settings.trials:
        raise Refusal(
            "--trials with --resume: a resumed cell keeps the target it was started with; "
            "use --add-trials N to run N more"
        )
    check_objectives(settings.objectives, settings.gpus_per_trial)


def check_objectives(names: tuple[str, ...], gpus_per_trial: float | None) -> None:
    """--objectives: val_loss first (ASHA prunes on it), none twice, and gpu_hours only where
    trials hold a GPU (``gpus_per_trial`` 0: every trial would count 0 GPU-hours)."""
    given = " ".join(names)
    if not names or names[0] != objective_values.VAL_LOSS:
        raise Refusal(f"--objectives {given}: the first must be val_loss (ASHA prunes on it); "
                      f"write --objectives val_loss {given}".rstrip())  # fmt: skip
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise Refusal(f"--objectives {given}: {', '.join(twice)} given twice; name each "
                      "objective once")  # fmt: skip
    if gpus_per_trial == 0:
        check_objective_costs(names, {"gpu": 0.0})


def check_objective_costs(names: tuple[str, ...], resources: dict) -> None:
    """gpu_hours needs trials that hold a GPU: on CPU each trial has 0 GPU-hours, an
    objective that tells the trials nothing apart."""
    if "gpu_hours" in names and not resources.get("gpu", 0.0):
        raise Refusal(
            "--objectives gpu_hours: trials here hold no GPU, so every trial has 0 GPU-hours; "
            "use epoch_seconds to trade off time on CPU, or give trials a GPU (--gpus-per-trial)"
        )


def check_overrides(cells: list[Cell], overrides: dict) -> None:
    """A --set may not change what a cell is (Cell.identity: its family, dataset, likelihood and
    fixed keys): the trials would run another cell's config under this cell's name."""
    for cell in cells:
        own = cell.identity
        for key, value in overrides.items():
            if key in own and own[key] != value:
                raise Refusal(
                    f"--set {key}={value}: cell {cell.name} fixes {key}={own[key]!r} (it is what "
                    f"the cell is); pick cells with --families / --datasets, or drop the --set"
                )


def sample_configs(cell: Cell, base: dict, n: int = SAMPLES) -> list[dict]:
    """``n`` configs a trial of this cell can get: its fixed config plus random space points."""
    space = search_spaces.space_for(cell.family, base)
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" line per cell
    try:
        out = []
        for seed in range(n):
            trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()
            extra = space(trial) or {}
            out.append({**base, **trial.params, **extra})
        return out
    finally:
        optuna.logging.set_verbosity(level)


def check_configs(cells: list[Cell], budget: Budget, sampler: str, machine: bool = False) -> None:
    """Every cell's config, with its search space's draws: keys, types, ranges, combinations,
    the model each builds; with ``machine`` (an embedded run: trials run here) also its memory
    estimate against this machine's device."""
    from training.config import Config

    for cell in cells:
        base = cell.base_config(budget)
        if sampler == "grid":
            try:
                search_spaces.grid_for(cell.family, base)
            except ValueError as e:
                raise Refusal(str(e)) from None
        for config in sample_configs(cell, base):
            try:
                cfg = Config.from_dict(config)
            except ConfigError as e:
                raise Refusal(f"cell {cell.name}: {e}") from None
            check_model(cell, cfg, machine)


def check_model(cell: Cell, cfg: Config, machine: bool = False) -> None:
    """Build the config's model on the meta device (no memory, no compute) for the dataset's image
    shape: what only the shape decides (a latent hierarchy with more scales than the image can be
    halved, a context larger than the image) is refused here, not in a trial. With ``machine``:
    also the training memory it needs (training.memory: parameters, optimiser state, one batch's
    activations) against this machine's device."""
    from training import memory
    from training.trainer import resolve_device

    try:
        if not machine:
            memory.check_model(cfg)
            return
        try:
            device = resolve_device(cfg.train.device)
        except RuntimeError as e:  # train/device=cuda here without one, or no such device
            raise ConfigError(str(e)) from None
        memory.check_fits(cfg, None, device)
    except ConfigError as e:
        raise Refusal(f"cell {cell.name}: {e}") from None


def check_study_storage(url: str) -> str:
    """``--study-storage``, before Ray starts and before anything is written to the storage: a
    database URL is connected to and Optuna's schema made in it (results.studies.check_url: a
    missing driver, a server that refuses, credentials or a database it does not know, an
    SQLite file that is no database or cannot be made, a scheme nothing handles are each one
    Refusal line). Returns the URL with a relative SQLite path made absolute: the cells'
    controllers may run in another working directory."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        path = url.removeprefix("sqlite:///")
        if path and not path.startswith(":memory:"):
            url = "sqlite:///" + os.path.abspath(path)
    try:
        studies.check_url(url)
    except store.StorageError as e:
        raise Refusal(str(e)) from None
    return url


def started(storage: str, cell: Cell, study_url: str | None) -> bool:
    """Whether the storage holds anything of this cell (record, study, Tune run or rows); a
    damaged record of it counts (results.damage: check_storage says what it is)."""
    try:
        if store.cell_record(storage, cell.name) is not None:
            return True
        if records.study_trials(storage, cell.name, study_url):
            return True
        if records.tune_trials(storage, cell.name) is not None:
            return True
    except damage.Damaged:
        return True
    return bool(store.part_paths(storage, "trials", cell.name))


def differing_keys(was: dict, now: dict) -> list[str]:
    keys = sorted((set(was) | set(now)) - MACHINE_KEYS)
    return [f"{k}: {was.get(k, '(unset)')!r} then, {now.get(k, '(unset)')!r} now"
            for k in keys if was.get(k) != now.get(k)]  # fmt: skip


def check_storage(
    storage: str, cells: list[Cell], budget: Budget, mode: str, study_url: str | None,
    objectives: tuple[str, ...] = (objective_values.VAL_LOSS,),
) -> list[Cell]:
    """The cells already in the storage; refuses a run that would mix or repeat them.

    ``mode``: "new" (the default: no cell may exist yet), "resume" or "add" (existing cells must
    have been started with the same fixed config, machine keys aside, and the same
    ``objectives`` (--objectives: a study's directions are fixed), and their records must be
    whole or repairable by repair_storage: results.repair). Writes nothing.
    """
    if not store.exists(storage):
        if mode == "resume":
            raise Refusal(f"--resume: no sweep under {storage} to resume; drop --resume to start")
        return []
    old = [c for c in cells if started(storage, c, study_url)]
    if mode == "new" and old:
        names = ", ".join(c.name for c in old[:3]) + (f" (+{len(old) - 3} more)" * (len(old) > 3))
        raise Refusal(
            f"storage {storage} already holds {len(old)} of these cells ({names}): --resume "
            "continues them, --add-trials N adds N new trials to each, or choose another --storage"
        )
    if mode == "resume" and not old:
        raise Refusal(
            f"--resume: none of the {len(cells)} cells has started under {storage}; nothing to "
            "resume (drop --resume to start them)"
        )
    try:
        for c in old:  # first every refusal, so that a refused run writes nothing
            repair.refusal(storage, c.name, study_url)
    except damage.Damaged as e:
        raise Refusal(f"{'--resume' if mode == 'resume' else '--add-trials'}: {e}") from None
    for c in old:
        record = store.cell_record(storage, c.name)
        if record is None:  # a cell from before cell records: nothing to compare with (one
            continue  # without base_config was refused above: damage.resumable_record)
        diff = differing_keys(record["base_config"], c.base_config(budget))
        if diff:
            raise Refusal(
                f"cell {c.name} was started with another config ({'; '.join(diff[:3])}): run it "
                "with the same --budget and --set, or choose another --storage"
            )
        was = record.get("search_seeds", 1)
        if was != budget.search_seeds:
            raise Refusal(
                f"cell {c.name} was started with --search-seeds {was}, not "
                f"{budget.search_seeds}: its trials' values would mix means over other numbers "
                f"of seeds; run it with --search-seeds {was}, or choose another --storage"
            )
        was = tuple(record.get("objectives", (objective_values.VAL_LOSS,)))
        if was != tuple(objectives):
            raise Refusal(
                f"cell {c.name} was started with --objectives {' '.join(was)}, this run has "
                f"--objectives {' '.join(objectives)}: continue it with --objectives "
                f"{' '.join(was)}, or choose another --storage"
            )
    return old


def repair_storage(storage: str, old: list[Cell], study_url: str | None) -> None:
    """Repair what the other records of these cells rebuild exactly (a journal's damaged tail,
    damaged Parquet parts: results.repair), once check_storage passed and under the storage's
    lease; a line per repair."""
    for c in old:
        for line in repair.prepare(storage, c.name, study_url):
            print(f"repaired: {line}")


def fits(resources: dict, shapes: list[dict]) -> bool:
    """Whether one trial's request fits on at least one node shape."""
    return any(
        all(shape.get(name.upper(), 0) + 1e-9 >= need for name, need in resources.items())
        for shape in shapes
    )


def check_resources(resources: dict, shapes: list[dict], where: str) -> None:
    """A trial that fits no node the cluster has or can launch would pend forever."""
    if not fits(resources, shapes):
        largest = max(shapes, key=lambda s: (s.get("GPU", 0), s.get("CPU", 0)), default={})
        have = f"{largest.get('CPU', 0):g} CPUs and {largest.get('GPU', 0):g} GPUs"
        raise Refusal(
            f"a trial asks {resources['cpu']:g} CPUs and {resources['gpu']:g} GPUs, but no node "
            f"{where} has that much (the largest: {have}): lower --cpus-per-trial / "
            "--gpus-per-trial"
        )


def grid_trials(cell: Cell, budget: Budget) -> int:
    grid = search_spaces.grid_for(cell.family, cell.base_config(budget))
    return math.prod(map(len, grid.values()))
