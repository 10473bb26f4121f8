"""One cell's Tuner: its Optuna searcher and scheduler, its trials, its Parquet rows.

    tune_cell(cell, budget, storage, resources) -> None

One cell is one Tune experiment and one Optuna study, both persisted under ``storage``:
``ray/<cell>`` (Tune's trials and checkpoints), ``optuna/<cell>.journal`` (the study, readable by
optuna-dashboard; on an object store, synced there from the driver's machine: results.studies),
``results/`` (Parquet tables), ``samples/<cell>/<trial_id>.npz`` (the winner's sample grids,
results.samples; sweeps.engine.winners evaluates the winner). The trial itself is
sweeps.engine.trial.TrainTrial; the searcher sweeps.engine.searcher.PruneAwareOptunaSearch; the
rows are written by sweeps.engine.parquet_writer.ParquetWriter; the order of writes that a kill at
any instant leaves repairable is results.crash_points', and what keeps Tune and Optuna one-to-one
across a crash or a move is sweeps.engine.tune_record's. The searcher's trials take the sweep's
shared slots when cells run at once: sweeps.engine.shared_slots.SharedSlots wraps it.

Storages written before sweeps/engine/ name this module ``sweeps.tune_glue`` in their pickles
(sweeps/__init__.py): the searcher, the SharedSlots wrapper and the ParquetWriter callback
(which tune_glue.py once defined) are found here under that name too.
"""

from __future__ import annotations

from pathlib import Path

import optuna
from ray import tune

import search_spaces
from results import records, studies
from results.whole_files import tune_filesystem
from sweeps.cells import Budget, Cell
from sweeps.engine import objectives as objective_values
from sweeps.engine import trackers, tune_record, warm_start
from sweeps.engine.parquet_writer import ParquetWriter
from sweeps.engine.searcher import PruneAwareOptunaSearch
from sweeps.engine.shared_slots import SharedSlots
from sweeps.engine.spaces import Space
from sweeps.engine.trial import METRIC, trainable
from training.config import unflatten

MODE = "min"  # of METRIC, the per-epoch validation -ELBO


def optuna_storage(storage: str, cell: Cell) -> optuna.storages.BaseStorage:
    """The study's storage: an RDB URL as given, else a journal file beside the results (on an
    object store, a journal on this machine synced to it: results.studies)."""
    return records.study_storage(storage, cell.name)


def tune_dir(storage: str) -> str:
    """Where Tune keeps a sweep's experiments: ``<storage>/ray``."""
    if "://" in storage:  # s3://, gs://: Tune's own URIs
        return f"{storage.rstrip('/')}/ray"
    return str(Path(storage).expanduser().resolve() / "ray")


def experiment_path(storage: str, cell: Cell) -> str:
    return f"{tune_dir(storage)}/{cell.name}"


def tune_cell(
    cell: Cell,
    budget: Budget,
    storage: str,
    resources: dict,
    seed: int = 0,
    resume: bool = False,
    study_storage: str | None = None,
    max_concurrent: int = 1,
    sampler: str = "tpe",
    slots: str | None = None,
    rank: int = 0,
    verbose: int = 1,
    sources: dict[str, str] | None = None,
    log_to: tuple[str, ...] = (),
    space: Space | None = None,
    warm: warm_start.Warm | None = None,
    search_seeds: int = 1,
    objectives: tuple[str, ...] = (objective_values.VAL_LOSS,),
) -> tune.ResultGrid:
    """Search one cell with Optuna; trials and curves land in Parquet.

    ``sampler``: "tpe" searches the family's space under ASHA; "grid" replays the authors' grid
    (search_spaces.GRIDS), every configuration once and trained to its own stopping rule (no
    scheduler prunes it), as the authors ran it. ``slots``, ``rank``: the shared trial cap of cells
    in flight together (sweeps.engine.slots) and this cell's priority for it. ``sources``: what
    fixed each key of the cell's base config, for its rows (Cell.key_sources). ``log_to``: the
    trackers each trial is logged to as well (sweeps.engine.trackers). ``space``: the version of
    the cell's space this run draws from (sweeps.engine.spaces): TPE learns from the study's
    trials that fit it. ``warm``: what seeds a new study from another sweep's cell
    (sweeps.engine.warm_start). ``search_seeds``: the training seeds each configuration is
    trained with, its metric their mean (training.lockstep). ``objectives``: what the study
    minimises (--objectives, sweeps.engine.objectives: several pick their sampler by the cell's
    trial count); ASHA prunes on the first, val_loss, either way.
    """
    ray_dir = tune_dir(storage)
    experiment = experiment_path(storage, cell)
    fixed = cell.base_config(budget)
    max_epochs = fixed["train/max_epochs"]  # a --set of train/max_epochs moves ASHA's top rung
    if sampler == "grid":
        grid = search_spaces.grid_for(cell.family, fixed)
        optuna_sampler = optuna.samplers.GridSampler(grid, seed=seed)
        scheduler = tune_record.FIFO()  # no pruning
    elif sampler == "tpe":
        optuna_sampler = objective_values.sampler(
            objectives, budget.trials, seed, space.distributions if space else None
        )
        scheduler = tune_record.ASHA(
            time_attr="epoch",
            max_t=max_epochs,
            grace_period=min(budget.grace_epochs, max_epochs),
            reduction_factor=budget.reduction_factor,
        )
    else:
        raise ValueError(f"unknown sampler {sampler!r}; choose 'tpe' or 'grid'")
    study = optuna_storage(study_storage or storage, cell)
    # before anything of Tune's is unpickled: it re-points to where the cell lies now
    tune_record.locate(
        cell.name, tune_record.Location(storage, study_storage, experiment, slots, study)
    )
    searcher = PruneAwareOptunaSearch(
        space=search_spaces.space_for(cell.family, fixed),
        metric=METRIC,
        mode=MODE,
        sampler=optuna_sampler,
        study_name=cell.name,
        storage=study,
        experiment=experiment,
        results=storage,
        space_version=space.version if space else None,
        objectives=objectives,
        gpus=float(resources.get("gpu", 0.0)),  # a trial's GPU-hours (objective gpu_hours)
    )
    # by name: Tune's registry is not thread-safe (sweeps.engine.trial)
    name = trainable(resources, search_seeds)
    # Tune's can_restore sees the tuner.pkl it writes first; a driver killed before Tune saved
    # an experiment state leaves nothing to restore (Tune then restarts with an empty config):
    # start afresh, and the searcher adopts the study's trials that were asked (_orphan).
    if (
        resume
        and tune.Tuner.can_restore(experiment)
        and records.experiment_states(storage, cell.name)
    ):
        tuner = tune.Tuner.restore(
            experiment, name, resume_errored=False, storage_filesystem=tune_filesystem(storage)
        )
        wrap_restored_searcher(tuner, slots, rank, budget.trials)
    else:
        if warm is not None:  # before its first ask: the queued configurations run first
            warm_start.seed(searcher._ot_study, warm, space.distributions if space else {})
        tuner = tune.Tuner(
            name,
            param_space=unflatten(cell.base_config(budget)),
            tune_config=tune.TuneConfig(
                search_alg=SharedSlots(searcher, slots, rank, budget.trials),
                scheduler=scheduler,
                metric=METRIC,
                mode=MODE,
                num_samples=budget.trials,
                # Also how many trials Tune keeps pending: without it, Tune starts one trial at
                # a time under any searcher but random search.
                max_concurrent_trials=max_concurrent,
                # A finished trial's actor takes the cell's next trial (TrainTrial.reset_config
                # in sweeps.engine.trial): no worker process start, no imports.
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=cell.name,
                storage_path=ray_dir,
                storage_filesystem=tune_filesystem(storage),  # each file whole or not at all
                failure_config=tune.FailureConfig(max_failures=2),
                # Two, not one: Tune's saved experiment state may name the checkpoint before the
                # newest, and a resumed trial must still find it (a test kills the driver).
                # Each epoch's step asks for its checkpoint (should_checkpoint); none more at
                # the end (Tune's default for a class): a failed trial has nothing to save.
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2, checkpoint_at_end=False),
                callbacks=[
                    ParquetWriter(storage, cell, resources, sources, study_storage),
                    *trackers.callbacks(log_to, storage, cell.name),
                ],
                verbose=verbose,
            ),
        )
    try:
        return tuner.fit()
    finally:  # an object store's journal: what the cell last wrote goes up now, not in seconds
        studies.flush(study_storage or storage, cell.name)


def wrap_restored_searcher(tuner: tune.Tuner, slots: str | None, rank: int, trials: int) -> None:
    """A restored Tuner whose ``tuner.pkl`` was written before SharedSlots holds the bare
    searcher, with the slots' fields its own: wrapped, with the rank and trial count it was
    pickled with, so the cell still takes the sweep's shared slots. Under Ray Client the Tuner
    lies in an actor and is left as it is: only cells in flight share slots, and they run in
    actors of the cluster, not under Ray Client."""
    local = getattr(tuner, "_local_tuner", None)  # Tune offers no way to set a restored searcher
    config = local._tune_config if local is not None else None
    if config is not None and isinstance(config.search_alg, PruneAwareOptunaSearch):
        old = config.search_alg.pop_slot_fields()
        config.search_alg = SharedSlots(
            config.search_alg, slots, old.get("rank", rank), old.get("trials", trials)
        )
