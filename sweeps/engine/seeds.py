"""A cell's winner trained again from scratch with other training seeds (``--winner-seeds N``).

    retrain_winner(cell, budget, storage, resources, ...) -> the winner's trial id, or None

One trained model is one draw: its test log-likelihood mixes what the configuration is worth with
the luck of its initialisation and batch order. After the search, the winning configuration (best
validation loss among the search's completed trials, never chosen on test) is trained N - 1 more
times with training seeds ``train/seed`` + 1 .. + N - 1, so the table's mean ± std is over N
trainings: the search's own and the re-trainings. (The search's run is the one selected, so its
validation loss is biased low; its test numbers are not selected on, which is why it counts.)

The re-trainings are ordinary trials of the cell in a Tune experiment of their own,
``ray/<cell>/seeds-<winner trial id>/`` (its own Tuner: no searcher, no scheduler, each trained
to its own stopping rule as the winner was), with checkpoints, retries on a lost node and
``--resume`` like any trial; their Parquet rows are in the cell's ``trials`` table with role
"seed" and ``seed_of`` the winner (results.rows.SEED), and have no Optuna trial: the study holds
the search alone. A cell whose winner changes (``--add-trials``) gets a new experiment for its
new winner.
"""

from __future__ import annotations

import json

from ray import tune

from results import records, rows, store
from results.selection import winners
from results.whole_files import tune_filesystem
from sweeps.cells import Budget, Cell
from sweeps.engine import trackers, tune_record
from sweeps.engine.parquet_writer import ParquetWriter
from sweeps.engine.trial import trainable
from sweeps.engine.tuner import tune_dir
from training import lockstep
from training.config import unflatten

SEEDS_PREFIX = records.SEEDS_PREFIX  # ray/<cell>/seeds-<winner>/


def training_seeds(config: dict, n: int) -> list[int]:
    """The training seeds of the re-trainings of a winner whose config is ``config``: the ones
    after its own (training.lockstep.seeds, the rule --search-seeds uses too)."""
    return lockstep.seeds(int(config.get("train/seed", 0)), n)[1:]


def retrain_winner(
    cell: Cell,
    budget: Budget,
    storage: str,
    resources: dict,
    max_concurrent: int = 1,
    study_storage: str | None = None,
    verbose: int = 1,
    winner=None,
    log_to: tuple[str, ...] = (),
) -> str | None:
    """Train the cell's winner (or the trial row ``winner``, e.g. a second selection rule's)
    again with budget.winner_seeds - 1 more training seeds (those not already in the storage);
    returns its trial id (None: no completed trial)."""
    trials = store.load(storage, "trials", sweep=cell.name)
    best = winners(trials, cell.paper) if winner is None else winner.to_frame().T
    if best.empty:
        return None
    w = best.iloc[0]
    config = json.loads(w["config_json"])
    wanted = training_seeds(config, budget.winner_seeds)
    mine = trials[(trials["role"] == rows.SEED) & (trials["seed_of"] == w["trial_id"])]
    have = set(mine["seed"].astype(int)) if not mine.empty else set()
    missing = [s for s in wanted if s not in have]
    folder = f"{tune_dir(storage)}/{cell.name}"
    name = f"{SEEDS_PREFIX}{w['trial_id']}"
    experiment = f"{folder}/{name}"
    saved = tune.Tuner.can_restore(experiment) and records.experiment_states(
        storage, cell.name, name
    )
    # A driver killed after a re-training's row, before Tune saved it ended: Tune's record
    # still has it running, and finishing the experiment ends it (its row written again).
    if not missing and not (saved and unfinished(storage, cell.name, w["trial_id"])):
        return w["trial_id"]
    print(f"   [{cell.name}] winner {w['trial_id']}: training again with seeds {missing}")
    if saved:
        # an interrupted run of these seeds: finish it (its ended trials stay ended)
        tuner = tune.Tuner.restore(
            experiment, trainable(resources), resume_errored=False,
            storage_filesystem=tune_filesystem(storage),
        )  # fmt: skip
    else:
        seed_sources = rows.retraining_sources(w.get("key_sources"), config)
        writer = ParquetWriter(
            storage, cell, resources, sources=seed_sources, study_storage=study_storage,
            role=rows.SEED, seed_of=w["trial_id"],
        )  # fmt: skip
        tuner = tune.Tuner(
            trainable(resources),
            param_space=unflatten({**config, "train/seed": tune.grid_search(missing)}),
            tune_config=tune.TuneConfig(
                num_samples=1, max_concurrent_trials=max_concurrent, reuse_actors=True,
                scheduler=tune_record.FIFO(),  # Tune's state names a trial before it starts
            ),  # fmt: skip
            run_config=tune.RunConfig(
                name=name,
                storage_path=folder,
                storage_filesystem=tune_filesystem(storage),
                failure_config=tune.FailureConfig(max_failures=2),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2, checkpoint_at_end=False),
                callbacks=[writer, *trackers.callbacks(log_to, storage, cell.name)],
                verbose=verbose,
            ),
        )
    tuner.fit()
    return w["trial_id"]


def unfinished(storage: str, cell: str, winner: str) -> bool:
    """Whether Tune's record of a winner's re-trainings has a trial that has not ended."""
    found = records.tune_trials(storage, cell) or {}
    return any(t.seed_of == winner and not t.ended for t in found.values())
