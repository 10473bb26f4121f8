"""The searcher of one cell: OptunaSearch that tells Optuna how each trial ended, adopts the
study's orphans after a crash and refuses a configuration the study already ran.

    PruneAwareOptunaSearch(space=..., study_name=cell, storage=..., experiment=..., results=...)

One cell is one Optuna study (``optuna/<cell>.journal`` beside the results, or an RDB): the cell's
Tuner (sweeps.engine.tuner) builds this searcher, wrapped in the sweep's shared slots when cells
run at once (sweeps.engine.shared_slots.SharedSlots). What keeps Tune and Optuna one-to-one across
a crash or a move is sweeps.engine.tune_record's; the order of writes that a kill at any instant
leaves repairable is results.crash_points'.
"""

from __future__ import annotations

import math
import pickle
import warnings
from collections import defaultdict

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from results import records, rows, store
from results.crash_points import crash_point
from results.studies import OBJECTIVE
from sweeps.engine import objectives as objective_values
from sweeps.engine import tune_record
from sweeps.engine.parquet_writer import completed_row
from sweeps.engine.spaces import VERSION
from sweeps.engine.warm_start import FROM

DRAWS = 20
"""How many times a trial's configuration is drawn again when the study already ran it."""
SLOT_FIELDS = ("slots", "rank", "trials", "_holding")
"""What a PruneAwareOptunaSearch pickled before SharedSlots kept of the shared slots itself."""


def name_objective(study: optuna.Study, names: list[str] | None = None) -> None:
    """Name the study's objectives (``names``, else OBJECTIVE alone) unless they have names: set
    once, kept in its storage, and set on reopening a study made before this (a resumed
    sweep's)."""
    if study.metric_names is None:
        with warnings.catch_warnings():  # experimental in some Optuna versions
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(names or [OBJECTIVE])


class PruneAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna the truth about how each trial ended, and survives restarts.

    Stock OptunaSearch marks a trial that ASHA stopped as COMPLETE with its partial-budget score.
    Here a trial is COMPLETE only if it reported ``finished`` (its own max_epochs or early
    stopping), with its best validation loss as the value; a trial stopped by the scheduler is
    PRUNED and keeps its intermediate values; an errored or diverged trial is FAIL (end_state).
    With several ``objectives`` (--objectives, sweeps.engine.objectives) a COMPLETE trial is told
    the list of its values, and its intermediate values are user attributes (_report).

    Each Optuna trial carries its Tune trial id and experiment as user attributes. Optuna writes
    through at once, Tune saves its experiment state every few seconds: a driver killed in between
    leaves Optuna trials that the restored experiment never heard of. The next trials Tune asks
    for adopt them (same parameters), so study and experiment stay one-to-one after a resume
    (_adopt_orphan). A draw of parameters the study already ran is told FAIL and drawn again
    (_draw).

    Pickled (Tune's ``tuner.pkl`` and ``searcher-state-*.pkl``) without its Optuna study: once
    unpickled or restored it reopens the study where the cell now lies
    (sweeps.engine.tune_record.here), so a moved or copied storage goes on in place, never in the
    journal it was copied from.
    """

    space_version = None  # searchers pickled before space versions (sweeps.engine.spaces)

    def __init__(self, *args, experiment: str = "", results: str = "",
                 objectives: tuple[str, ...] = (objective_values.VAL_LOSS,), gpus: float = 0.0,
                 space_version: int | None = None, **kwargs):  # fmt: skip
        # before OptunaSearch's __init__: it creates the study (_setup_study)
        self.objectives, self.gpus = tuple(objectives), gpus  # --objectives; a trial's GPUs
        super().__init__(*args, **kwargs)
        self.experiment = experiment
        self.results = results  # the sweep's storage: its trials' rows (completed_row)
        self.space_version = space_version  # each trial's, as a user attribute
        self._reported: dict[str, set] = defaultdict(set)  # epochs already told to Optuna

    def _setup_study(self, mode) -> None:
        # OptunaSearch creates (or loads) the study here: a direction per objective, all "min"
        super()._setup_study([mode] * len(self.objectives) if self._several() else mode)
        name_objective(self._ot_study, objective_values.metric_names(self.objectives))
        if self._several() and objective_values.PRUNING not in self._ot_study.user_attrs:
            self._ot_study.set_user_attr(objective_values.PRUNING, objective_values.PRUNING_NOTE)

    def _several(self) -> bool:
        """Whether the study has several objectives (a searcher pickled before: one)."""
        return len(getattr(self, "objectives", ())) > 1

    def suggest(self, trial_id: str) -> dict | None:
        self._adopt_orphan(trial_id)
        config = self._draw(trial_id)
        crash_point("study_asked")
        self._tie(trial_id)
        crash_point("study_tied")
        return config

    @property
    def cell(self) -> str:
        return self._study_name

    def running(self) -> list[str]:
        """Its Tune trials given a configuration and not yet ended (SharedSlots holds them)."""
        return [t for t in self._ot_trials if t not in self._completed_trials]

    def started(self) -> int:
        """How many Tune trials it has given a configuration (SharedSlots: how many are left)."""
        return len(self._ot_trials)

    def __getstate__(self) -> dict:
        # Tune saves the searcher before its experiment state: an object store's journal goes
        # up now (results.synced_journal), so the study there is at least as new as that state.
        backend = getattr(self._storage, "_backend", None)
        if hasattr(backend, "flush"):
            backend.flush()
        state = self.__dict__.copy()
        state["_ot_study"] = state["_storage"] = None  # reopened where the cell lies now
        state["_ot_trials"] = {k: t._trial_id for k, t in self._ot_trials.items()}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reopen()

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__getstate__(), f)

    def restore(self, checkpoint_path: str) -> None:
        kept = self._storage  # this object's, unless the sweep says where
        super().restore(checkpoint_path)
        self.pop_slot_fields()  # a state saved before SharedSlots: they are its wrapper's now
        self._reopen(kept)

    def pop_slot_fields(self) -> dict:
        """The fields of SLOT_FIELDS a searcher pickled before SharedSlots carries, removed."""
        return {k: self.__dict__.pop(k) for k in SLOT_FIELDS if k in self.__dict__}

    def _reopen(self, storage=None) -> None:
        """Point at the cell's study and storage as this run of the sweep has them (else at
        ``storage``; neither: unpickled outside a sweep, nothing to reopen)."""
        where = tune_record.here(self._study_name)
        if where is not None and where.optuna_storage is not None:
            self.experiment, self.results = where.experiment, where.storage
            storage = where.optuna_storage
        if storage is None:
            return
        self._storage = storage
        self._ot_study = optuna.load_study(  # with the sampler's saved state
            study_name=self._study_name, storage=storage, sampler=self._sampler
        )
        name_objective(self._ot_study, objective_values.metric_names(
            getattr(self, "objectives", (objective_values.VAL_LOSS,))))  # fmt: skip
        self._ot_trials = {
            k: optuna.Trial(self._ot_study, getattr(t, "_trial_id", t))
            for k, t in self._ot_trials.items()
        }

    def _adopt_orphan(self, trial_id: str) -> None:
        """A new Tune trial takes over an orphan of the study (_orphan), its parameters and all."""
        if trial_id not in self._ot_trials and (orphan := self._orphan()) is not None:
            self._ot_trials[trial_id] = orphan

    def _draw(self, trial_id: str) -> dict:
        """The trial's configuration: a draw that repeats another trial of the study (_twin) is
        told FAIL (_discard) and drawn again, up to DRAWS times."""
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
        return config

    def _tie(self, trial_id: str) -> None:
        """The Optuna trial names its Tune trial and experiment (user attributes)."""
        ot_trial = self._ot_trials[trial_id]
        # relative to the storage ("ray/<cell>"): the storage may move (tune_record)
        ot_trial.set_user_attr("tune_experiment", store.relative(self.results, self.experiment))
        ot_trial.set_user_attr("tune_trial_id", trial_id)
        if self.space_version is not None:
            ot_trial.set_user_attr(VERSION, self.space_version)

    def _twin(self, ot_trial: optuna.Trial) -> int | None:
        """The number of another trial of the study with the same parameters (not a discarded
        draw, nor a warm start's trial of another sweep: sweeps.engine.warm_start), if any:
        running it again would only repeat a deterministic computation."""
        params = ot_trial.params
        for t in self._ot_study.get_trials(deepcopy=False):
            if t._trial_id != ot_trial._trial_id and t.params == params:
                if "duplicate_of" not in t.user_attrs and FROM not in t.user_attrs:
                    return t.number
        return None

    def _discard(self, trial_id: str, twin: int) -> None:
        """Tell a repeated draw FAIL, marked ``duplicate_of``, so the sampler moves past it."""
        ot_trial = self._ot_trials.pop(trial_id)
        ot_trial.set_user_attr("duplicate_of", twin)
        self._ot_study.tell(ot_trial, state=TrialState.FAIL)

    def _orphan(self) -> optuna.Trial | None:
        """A RUNNING trial of the study no trial of this experiment owns: asked by a driver
        killed before Tune saved its trial (tied to it or not yet). One tied to a trial that
        Tune did save is that trial's, not an orphan (_saved_by_tune)."""
        owned = set(self._ot_trials)
        mine = {t._trial_id for t in self._ot_trials.values()}
        saved = None  # Tune's recorded trials of the cell, read once if needed
        for t in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            attrs = t.user_attrs
            if t._trial_id in mine or "duplicate_of" in attrs:
                continue
            tied = attrs.get("tune_trial_id")
            if tied is None:
                return optuna.Trial(self._ot_study, t._trial_id)
            if tied in owned or not tune_record.same_experiment(
                attrs.get("tune_experiment"), self.experiment
            ):
                continue
            saved = self._saved_by_tune() if saved is None else saved
            if tied not in saved:
                return optuna.Trial(self._ot_study, t._trial_id)
            if not saved[tied]:  # restored, not ended: it runs with this configuration
                self._ot_trials[tied] = optuna.Trial(self._ot_study, t._trial_id)
        return None

    def _saved_by_tune(self) -> dict[str, bool]:
        """Tune's recorded trials of the cell, each with whether it ended. Tune uploads its
        experiment state and this searcher's pickle as files of one folder, in the background:
        a restored experiment can name a trial that the restored searcher, pickled a save
        earlier, does not hold. Such a trial keeps its Optuna trial (_orphan, _claim)."""
        if not getattr(self, "results", ""):  # outside a sweep: no storage to read
            return {}
        try:
            found = records.tune_trials(self.results, self._study_name, seeds=False) or {}
        except (store.StorageError, OSError):
            return {}
        return {tid: t.ended for tid, t in found.items()}

    def _claim(self, trial_id: str) -> None:
        """A trial Tune restored that this searcher does not hold takes the RUNNING Optuna
        trial tied to it, so that it is told how it ended (_saved_by_tune)."""
        if trial_id in self._ot_trials or self._ot_study is None:
            return
        for t in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            attrs = t.user_attrs
            if attrs.get("tune_trial_id") == trial_id and tune_record.same_experiment(
                attrs.get("tune_experiment"), self.experiment
            ):
                self._ot_trials[trial_id] = optuna.Trial(self._ot_study, t._trial_id)
                return

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._claim(trial_id)
        value, epoch = result.get(self.metric, math.nan), result.get("epoch")
        reported = self._reported[trial_id]
        if trial_id in self._ot_trials and epoch is not None and math.isfinite(value):
            if epoch not in reported:  # the epoch, not Tune's iteration count, is the step
                try:
                    self._report(self._ot_trials[trial_id], value, epoch)
                except optuna.exceptions.UpdateFinishedTrialError:
                    pass  # told before a driver restart; the trial reran from its checkpoint
                reported.add(epoch)
                crash_point("study_report")

    def _report(self, ot_trial: optuna.Trial, value: float, epoch: int) -> None:
        """An epoch's val_loss: Trial.report, or in a multi-objective study (where Optuna has no
        report) the user attribute INTERMEDIATE<epoch>; ASHA prunes on it either way."""
        if self._several():
            ot_trial.set_user_attr(f"{objective_values.INTERMEDIATE}{epoch}", value)
        else:
            ot_trial.report(value, epoch)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        self._claim(trial_id)
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        result = result or {}
        # Tune hands the final result (the one the scheduler stopped on) only to this method.
        self.on_trial_result(trial_id, result)
        results = getattr(self, "results", "")  # a searcher pickled before it had one: none
        done = completed_row(results, self._study_name, trial_id) if error else None
        state, value = end_state(result, error, done)
        if state == TrialState.COMPLETE and self._several():
            row = done if done is not None else objective_values.result_row(result, self.gpus)
            value = objective_values.values(self.objectives, row)
        self._ot_study.tell(self._ot_trials[trial_id], value, state=state, skip_if_finished=True)
        self._completed_trials.add(trial_id)
        crash_point("study_told")


def end_state(result: dict, error: bool, done: dict | None) -> tuple[TrialState, float | None]:
    """What Optuna is told of a trial that ended: ``result`` its last, ``error`` whether it
    errored, ``done`` its completed row if it has one (completed_row, looked up on error)."""
    if done is not None:
        # It finished before a driver restart, reran from an older state and failed (its
        # checkpoint was gone): it stays completed, as its row does (ParquetWriter).
        return TrialState.COMPLETE, float(done["best_val_loss"])
    if error or any(k in result for k in rows.FAILURE_KEYS):
        return TrialState.FAIL, None
    if result.get("finished"):
        return TrialState.COMPLETE, result["best_val_loss"]
    return TrialState.PRUNED, None
