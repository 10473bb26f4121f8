"""What keeps a cell's Tune experiment and Optuna study consistent across a crash and a move.

    locate(cell, storage, study_storage, slots)  where the cell now lies, before a Tuner runs
    here(cell) -> Location | None                what pickled Tune objects re-point to
    ASHA, FIFO                                   schedulers that save Tune's state before a new
                                                 trial starts (SavesNewTrials)
    close_orphans(storage, cell, study_storage)  Optuna trials no Tune trial owns, told at the end
    retry_lost_reused_actors(controller)         Tune retries a trial whose reused actor is lost
                                                 while it starts (the schedulers install it)

Tune pickles the searcher and the callbacks with the paths they were built with (``tuner.pkl``,
``searcher-state-*.pkl``), and its search generator keeps the storage its experiment started
in. A storage moved, copied or synced from an object store must go on where it now lies, so
those objects re-point to ``here(cell)`` when they are unpickled, and a new trial of a
restored experiment is given the controller's storage (SavesNewTrials.on_trial_add). The order
of writes these serve is results.crash_points'.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.execution.tune_controller import TuneController
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from results import check, records, studies
from results.crash_points import crash_point


@dataclass(frozen=True)
class Location:
    """Where a cell's records lie in this run of the sweep."""

    storage: str  # the sweep's --storage, as given now
    study_storage: str | None  # --study-storage, or None: the journal under storage
    experiment: str  # <storage>/ray/<cell>, as Tune's paths name it
    slots: str | None  # the shared trial slots' actor name (sweeps.engine.slots), or None
    optuna_storage: Any = None  # the study's Optuna storage, opened once (tune_cell), or None


_here: dict[str, Location] = {}
"""Cell name -> its Location in this process (cells in flight run in threads of one process)."""


def locate(cell: str, location: Location) -> None:
    _here[cell] = location


def here(cell: str) -> Location | None:
    return _here.get(cell)


def same_experiment(recorded: str | None, experiment: str) -> bool:
    """Whether an Optuna trial's ``tune_experiment`` (relative to the storage, or an absolute
    path of a storage that has moved since) names this experiment: its last folder does."""
    name = (recorded or "").rstrip("/").rsplit("/", 1)[-1]
    return name == experiment.rstrip("/").rsplit("/", 1)[-1]


class SavesNewTrials:
    """A scheduler mixin: Tune's experiment state is saved (and synced, waited for) before a
    trial it does not name yet can start, so no trial reports, tells Optuna or writes a row
    that a restored experiment would not know; and a trial created by a restored experiment's
    search generator lives in the controller's storage, not where the experiment first ran."""

    def on_trial_add(self, tune_controller, trial) -> None:
        now = tune_controller._tune_controller._storage  # the whitelist wrapper's controller
        if (trial.storage.storage_fs_path, trial.storage.experiment_dir_name) != (
            now.storage_fs_path, now.experiment_dir_name
        ):  # fmt: skip
            moved = copy.copy(trial.storage)
            moved.storage_filesystem = now.storage_filesystem
            moved.storage_fs_path = now.storage_fs_path
            moved.experiment_dir_name = now.experiment_dir_name
            trial.set_storage(moved)
        super().on_trial_add(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller):
        controller = tune_controller._tune_controller
        retry_lost_reused_actors(controller)
        ids = {t.trial_id for t in controller.get_trials()}
        saved = getattr(self, "_saved_ids", set())
        if not ids <= saved:
            controller.checkpoint(force=True, wait=True)
            crash_point("tune_state")
            self._saved_ids = ids
        return super().choose_trial_to_run(tune_controller)


class _RetriesLostReusedActors(TuneController):
    """Tune's controller, but a trial whose reused actor is lost while it starts is retried as
    one whose new actor is lost (retry_lost_reused_actors)."""

    def _trial_task_failure(self, trial, exception) -> None:
        if trial in self._resetting_trials:
            self._resetting_trials.discard(trial)
            self._set_trial_status(trial, Trial.RUNNING)  # as a new actor's failure
        elif trial.status == Trial.PENDING and trial not in self._trial_to_actor:
            return  # a second failure of the lost actor this requeued trial no longer has
        super()._trial_task_failure(trial, exception)


def retry_lost_reused_actors(controller) -> None:
    """Make Tune retry a trial whose reused actor is lost while it starts, as it retries one whose
    new actor is lost (up to FailureConfig.max_failures).

    A trial that takes a finished trial's actor (reuse_actors) is PENDING while Tune resets that
    actor, and Tune retries only RUNNING trials: a node lost at that moment (its raylet killed,
    the machine gone) errored the trial without a retry. A new actor lost while it starts is
    marked RUNNING first, then retried (TuneController._actor_failed); the reset's failure is
    handled the same way here. A failure that reaches a requeued trial, PENDING without an actor
    (a second future of the lost actor), is ignored: it would error the requeued trial. (A
    RUNNING trial's failure may arrive after its lost actor was removed: Tune retries it.) The
    controller's class is swapped, not its attributes: Tune saves those in its experiment
    state. Tune is pinned; tests/e2e/test_lost_actor.py shows each case."""
    if type(controller) is TuneController:
        controller.__class__ = _RetriesLostReusedActors


class ASHA(SavesNewTrials, ASHAScheduler):
    """Tune's ASHA (AsyncHyperBandScheduler) that saves Tune's state before new trials."""


class FIFO(SavesNewTrials, FIFOScheduler):
    """Tune's FIFO scheduler (no pruning) that saves Tune's state before new trials."""


def close_orphans(storage: str, cell: str, study_storage: str | None) -> list[str]:
    """Tell every RUNNING Optuna trial of a cell whose Tune trials have all ended: one whose Tune
    trial ended (its tell was lost) as Tune recorded it; one no Tune trial owns (asked by a
    driver killed before Tune saved the trial, and never adopted) FAIL, marked ``abandoned``.
    Returns a line per trial told."""
    study = records.study_trials(storage, cell, study_storage)
    running = [t for t in study or [] if t.state == TrialState.RUNNING]
    tune = records.tune_trials(storage, cell, seeds=False) or {}
    if not running or any(not t.ended for t in tune.values()):
        return []
    found = here(cell)  # the storage tune_cell opened: an object store's journal is synced once
    backend = found.optuna_storage if found else records.study_storage(storage, cell, study_storage)
    live = optuna.load_study(study_name=cell, storage=backend)
    done = []
    for ot in running:
        owner = tune.get(ot.user_attrs.get("tune_trial_id"))
        status = check.expected_status(owner) if owner is not None else None
        value = (owner.last_result or {}).get("best_val_loss") if owner is not None else None
        if status == "completed" and value is not None:
            live.tell(ot.number, float(value), state=TrialState.COMPLETE, skip_if_finished=True)
        elif status == "pruned":
            live.tell(ot.number, state=TrialState.PRUNED, skip_if_finished=True)
        else:
            why = "no Tune trial ran it (its driver stopped before Tune saved the trial)"
            if owner is None:
                backend.set_trial_user_attr(ot._trial_id, "abandoned", why)
            live.tell(ot.number, state=TrialState.FAIL, skip_if_finished=True)
            status = "errored" if owner is not None else "abandoned"
        done.append(f"Optuna trial {ot.number}: told {status} (it was left RUNNING)")
    # An object store's journal goes up now: the cell's trials are over, and the process that
    # holds the journal (a cell's controller) may be ended before its uploader's next round.
    studies.flush(study_storage or storage, cell)
    return done
