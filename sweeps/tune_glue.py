"""The Ray Tune glue: Optuna searcher that records pruning, Parquet writer, one cell's Tuner.

    run_cell(cell, budget, storage, resources) -> None

One cell is one Tune experiment and one Optuna study, both persisted under ``storage``:
``ray/<cell>`` (Tune's trials and checkpoints), ``optuna/<cell>.journal`` (the study, readable by
optuna-dashboard; on an object store, synced there from the driver's machine: results.studies),
``results/`` (Parquet tables), ``samples/<cell>/<trial_id>.npz`` (the winner's sample grids,
results.samples; sweeps.winners evaluates the winner). The trial itself is
sweeps.trial.TrainTrial.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import optuna
from optuna.trial import TrialState
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

import search_spaces
from results import records, rows, store, studies
from sweeps import slots as shared_slots
from sweeps.cells import Budget, Cell
from sweeps.provenance import provenance
from sweeps.trial import METRIC, trainable
from training import checkpoint as ckpt_io
from training.config import Config, flatten, unflatten

MODE = "min"  # of METRIC, the per-epoch validation -ELBO
DRAWS = 20
"""How many times a trial's configuration is drawn again when the study already ran it."""


class PruneAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna the truth about how each trial ended, and survives restarts.

    Stock OptunaSearch marks a trial that ASHA stopped as COMPLETE with its partial-budget score.
    Here a trial is COMPLETE only if it reported ``finished`` (its own max_epochs or early
    stopping), with its best validation loss as the value; a trial stopped by the scheduler is
    PRUNED and keeps its intermediate values; an errored or diverged trial is FAIL.

    Each Optuna trial carries its Tune trial id and experiment as user attributes. Optuna writes
    through at once, Tune saves its experiment state every few seconds: a driver killed in between
    leaves Optuna trials that the restored experiment never heard of. The next trials Tune asks
    for adopt them (same parameters), so study and experiment stay one-to-one after a resume.
    """

    def __init__(
        self, *args, experiment: str = "", slots: str | None = None, rank: int = 0,
        trials: int = 0, results: str = "", **kwargs,
    ):  # fmt: skip
        super().__init__(*args, **kwargs)
        self.experiment = experiment
        self.results = results  # the sweep's storage: its trials' rows (completed_row)
        self._reported: dict[str, set] = defaultdict(set)  # epochs already told to Optuna
        # With cells in flight together (sweeps.in_flight): the sweep's shared slots by name,
        # this cell's priority and its trial count (a cell with trials left keeps a freed slot).
        self.slots, self.rank, self.trials = slots, rank, trials
        self._holding = False  # told the slots about the trials a restored experiment resumes

    def suggest(self, trial_id: str) -> dict | None:
        if self.slots is not None:
            if not self._holding:
                live = [t for t in self._ot_trials if t not in self._completed_trials]
                shared_slots.tell(self.slots, "hold", self.experiment, live)
                self._holding = True
            if not shared_slots.take(self.slots, self.experiment, trial_id, self.rank):
                return None  # Tune asks again on its next step
        if trial_id not in self._ot_trials and (orphan := self._orphan()) is not None:
            self._ot_trials[trial_id] = orphan
        config = super().suggest(trial_id)
        for _ in range(DRAWS):  # a configuration the study already ran is drawn again
            twin = self._twin(self._ot_trials[trial_id])
            if twin is None:
                break
            self._discard(trial_id, twin)
            config = super().suggest(trial_id)
        else:
            print(f"warning: {DRAWS} draws in a row repeated a configuration; the space may be "
                  f"exhausted: trial {trial_id} runs one again")  # fmt: skip
        ot_trial = self._ot_trials[trial_id]
        ot_trial.set_user_attr("tune_experiment", self.experiment)
        ot_trial.set_user_attr("tune_trial_id", trial_id)
        return config

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        self._holding = False  # a new driver's slots know nothing of the resumed trials

    def _twin(self, ot_trial: optuna.Trial) -> int | None:
        """The number of another trial of the study with the same parameters (not a discarded
        draw), if any: running it again would only repeat a deterministic computation."""
        params = ot_trial.params
        for t in self._ot_study.get_trials(deepcopy=False):
            if t._trial_id != ot_trial._trial_id and t.params == params:
                if "duplicate_of" not in t.user_attrs:
                    return t.number
        return None

    def _discard(self, trial_id: str, twin: int) -> None:
        """Tell a repeated draw FAIL, marked ``duplicate_of``, so the sampler moves past it."""
        ot_trial = self._ot_trials.pop(trial_id)
        ot_trial.set_user_attr("duplicate_of", twin)
        self._ot_study.tell(ot_trial, state=TrialState.FAIL)

    def _orphan(self) -> optuna.Trial | None:
        owned = set(self._ot_trials)
        for t in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            attrs = t.user_attrs
            if attrs.get("tune_experiment") == self.experiment and (
                attrs.get("tune_trial_id") not in owned
            ):
                return optuna.Trial(self._ot_study, t._trial_id)
        return None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        value, epoch = result.get(self.metric, math.nan), result.get("epoch")
        reported = self._reported[trial_id]
        if trial_id in self._ot_trials and epoch is not None and math.isfinite(value):
            if epoch not in reported:  # the epoch, not Tune's iteration count, is the step
                try:
                    self._ot_trials[trial_id].report(value, epoch)
                except optuna.exceptions.UpdateFinishedTrialError:
                    pass  # told before a driver restart; the trial reran from its checkpoint
                reported.add(epoch)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if self.slots is not None:
            left = max(0, self.trials - len(self._ot_trials))  # trials still to start
            shared_slots.tell(self.slots, "release", self.experiment, trial_id, left)
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        result = result or {}
        # Tune hands the final result (the one the scheduler stopped on) only to this method.
        self.on_trial_result(trial_id, result)
        results = getattr(self, "results", "")  # a searcher pickled before it had one: none
        done = completed_row(results, self._study_name, trial_id) if error else None
        if done is not None:
            # It finished before a driver restart, reran from an older state and failed (its
            # checkpoint was gone): it stays completed, as its row does (ParquetWriter).
            state, value = TrialState.COMPLETE, float(done["best_val_loss"])
        elif error or any(k in result for k in rows.FAILURE_KEYS):
            state, value = TrialState.FAIL, None
        elif result.get("finished"):
            state, value = TrialState.COMPLETE, result["best_val_loss"]
        else:
            state, value = TrialState.PRUNED, None
        self._ot_study.tell(self._ot_trials[trial_id], value, state=state, skip_if_finished=True)
        self._completed_trials.add(trial_id)


def completed_row(storage: str, cell: str, trial_id: str):
    """The trial's row if it says completed (written when it finished, possibly in an earlier
    life of the driver), else None."""
    if not storage:
        return None
    rows_ = store.load(storage, "trials", sweep=cell)
    if rows_.empty:
        return None
    done = rows_[(rows_["trial_id"] == trial_id) & (rows_["status"] == "completed")]
    return None if done.empty else done.iloc[-1]


class ParquetWriter(tune.Callback):
    """Writes each trial's row and learning curve to the Parquet store as the trial ends.

    The curve comes from the trial's last checkpoint, not from results seen by this driver: a
    trial retried on another node, or resumed after the driver restarted, still has every epoch.
    Each row says where its config keys came from (``sources``: what fixed them; the rest the
    search chose or are defaults), its Optuna trial's number, and its ``role`` (a search trial,
    or a re-training of ``seed_of`` with another training seed: sweeps.seeds).
    """

    def __init__(
        self, storage: str, cell: Cell, resources: dict, sources: dict[str, str] | None = None,
        study_storage: str | None = None, role: str = rows.SEARCH, seed_of: str = "",
    ):  # fmt: skip
        self.storage, self.cell = storage, cell
        self.cpus, self.gpus = resources.get("cpu", 1.0), resources.get("gpu", 0.0)
        self.sources, self.study_storage = sources or {}, study_storage
        self.role, self.seed_of = role, seed_of
        self.provenance = provenance()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._write(trial, None)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._write(trial, str(trial.get_error() or "trial failed"))

    def _optuna_trial(self, trial_id: str) -> int:
        """The number of the trial's Optuna trial (-1: a seed re-training, which has none, or
        a study that cannot be read now; the row is worth more than the number)."""
        if self.role != rows.SEARCH:
            return -1
        try:
            study = records.study_trials(self.storage, self.cell.name, self.study_storage)
        except Exception as e:  # noqa: BLE001 - e.g. a database that is down for a moment
            print(f"warning: trial {trial_id}: its Optuna trial number is unknown ({e})")
            return -1
        return records.optuna_trial(study or [], trial_id)

    def _write(self, trial, error: str | None) -> None:
        last = trial.last_result or {}
        status, reason = rows.trial_status(last, error)
        if (
            status == "errored"
            and completed_row(self.storage, self.cell.name, trial.trial_id) is not None
        ):
            # A trial that had finished reran after a driver restart and failed (e.g. its
            # checkpoint was gone): its completed row stays; a rerun cannot unfinish it.
            print(f"warning: keeping the completed row of trial {trial.trial_id}: {reason}")
            return
        try:  # the full config with its defaults, as it ran
            config = Config.from_dict(trial.config).flat()
        except ValueError:  # the trial failed on its own config: record what it was given
            config = flatten(trial.config)
        ckpt = trial.checkpoint
        history = checkpoint_history(ckpt)
        # what Tune passed in: the cell's fixed keys and the searcher's draws (rows.key_sources)
        given = set(flatten(trial.config))
        row = rows.trial_row(
            self.cell.fields(),
            trial.trial_id,
            config,
            last,
            history,
            error=error,
            retries=trial.num_failures,
            checkpoint_path=store.relative(self.storage, ckpt_uri(ckpt)) if ckpt else "",
            gpus=self.gpus,
            cpus=self.cpus,
            provenance=self.provenance,
            times=rows.tune_times(vars(trial.run_metadata)),
            sources=rows.key_sources(config, self.sources, given),
            optuna_trial=self._optuna_trial(trial.trial_id),
            role=self.role,
            seed_of=self.seed_of,
        )
        store.write(self.storage, "trials", self.cell.name, trial.trial_id, [row])
        if history:
            curves = rows.curve_rows(self.cell.name, trial.trial_id, history)
            store.write(self.storage, "curves", self.cell.name, trial.trial_id, curves)


def checkpoint_history(ckpt: tune.Checkpoint | None) -> list[dict]:
    """The per-epoch metrics stored in a trial's checkpoint (local or object store)."""
    if ckpt is None:
        return []
    path = f"{ckpt.path}/{ckpt_io.HISTORY_FILE}"
    try:
        with ckpt.filesystem.open_input_stream(path) as f:
            return json.loads(f.read())
    except (OSError, ValueError) as e:  # the row is still worth writing without its curve
        print(f"warning: no learning curve in {path}: {e}")
        return []


def ckpt_uri(ckpt: tune.Checkpoint) -> str:
    kind = ckpt.filesystem.type_name
    return ckpt.path if kind == "local" else f"{kind}://{ckpt.path}"


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


def run_cell(
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
) -> tune.ResultGrid:
    """Search one cell with Optuna; trials and curves land in Parquet.

    ``sampler``: "tpe" searches the family's space under ASHA; "grid" replays the authors' grid
    (search_spaces.GRIDS), every configuration once and trained to its own stopping rule (no
    scheduler prunes it), as the authors ran it. ``slots``, ``rank``: the shared trial cap of
    cells in flight together (sweeps.slots) and this cell's priority for it. ``sources``: what
    fixed each key of the cell's base config, for its rows (Cell.key_sources).
    """
    ray_dir = tune_dir(storage)
    experiment = experiment_path(storage, cell)
    fixed = cell.base_config(budget)
    max_epochs = fixed["train/max_epochs"]  # a --set of train/max_epochs moves ASHA's top rung
    if sampler == "grid":
        grid = search_spaces.grid_for(cell.family, fixed)
        optuna_sampler = optuna.samplers.GridSampler(grid, seed=seed)
        scheduler = None  # Tune's FIFO: no pruning
    elif sampler == "tpe":
        optuna_sampler = optuna.samplers.TPESampler(seed=seed)
        scheduler = ASHAScheduler(
            time_attr="epoch",
            max_t=max_epochs,
            grace_period=min(budget.grace_epochs, max_epochs),
            reduction_factor=budget.reduction_factor,
        )
    else:
        raise ValueError(f"unknown sampler {sampler!r}; choose 'tpe' or 'grid'")
    searcher = PruneAwareOptunaSearch(
        space=search_spaces.space_for(cell.family, fixed),
        metric=METRIC,
        mode=MODE,
        sampler=optuna_sampler,
        study_name=cell.name,
        storage=optuna_storage(study_storage or storage, cell),
        experiment=experiment,
        slots=slots,
        rank=rank,
        trials=budget.trials,
        results=storage,
    )
    name = trainable(resources)  # by name: Tune's registry is not thread-safe (sweeps.trial)
    # Tune's can_restore sees the tuner.pkl it writes first; a driver killed before Tune saved
    # an experiment state leaves nothing to restore (Tune then restarts with an empty config):
    # start afresh, and the searcher adopts the study's trials that were asked (_orphan).
    if (
        resume
        and tune.Tuner.can_restore(experiment)
        and records.experiment_states(storage, cell.name)
    ):
        tuner = tune.Tuner.restore(experiment, name, resume_errored=False)
    else:
        tuner = tune.Tuner(
            name,
            param_space=unflatten(cell.base_config(budget)),
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                scheduler=scheduler,
                metric=METRIC,
                mode=MODE,
                num_samples=budget.trials,
                # Also how many trials Tune keeps pending: without it, Tune starts one trial at
                # a time under any searcher but random search.
                max_concurrent_trials=max_concurrent,
                # A finished trial's actor takes the cell's next trial (TrainTrial.reset_config
                # in sweeps.trial): no worker process start, no imports.
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=cell.name,
                storage_path=ray_dir,
                failure_config=tune.FailureConfig(max_failures=2),
                # Two, not one: Tune's saved experiment state may name the checkpoint before the
                # newest, and a resumed trial must still find it (a test kills the driver).
                # Each epoch's step asks for its checkpoint (should_checkpoint); none more at
                # the end (Tune's default for a class): a failed trial has nothing to save.
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2, checkpoint_at_end=False),
                callbacks=[ParquetWriter(storage, cell, resources, sources, study_storage)],
                verbose=verbose,
            ),
        )
    try:
        return tuner.fit()
    finally:  # an object store's journal: what the cell last wrote goes up now, not in seconds
        studies.flush(study_storage or storage, cell.name)
