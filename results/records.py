"""What Tune and Optuna recorded of a sweep, read from storage without Ray and without writing.

Tune keeps, per cell, ``<storage>/ray/<cell>/``: ``experiment_state-<time>.json`` (each trial's
status, failures and last result; one file per Tuner run: a resumed run rewrites its own, a run
that added trials writes another) and one folder per trial with ``params.json``, ``error.txt`` when
it failed, and its newest checkpoints (``checkpoint_NNNNNN/`` holding our ``state.pt``,
``history.json`` and ``config.json``). Optuna keeps ``<storage>/optuna/<cell>.journal`` (or an RDB
given as --study-storage; on an object store, a journal synced from the driver's machine:
results.studies). These are the two records the Parquet rows are checked against.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import optuna
import pyarrow.fs as pafs

from results import damage, store, studies

SEEDS_PREFIX = "seeds-"
"""``ray/<cell>/seeds-<winner>/``: the Tune experiment of a winner's re-trainings with other
training seeds (sweeps.engine.seeds); its trials belong to the cell, with role "seed"."""
HISTORY_FILE = "history.json"  # training.checkpoint writes these beside state.pt
CONFIG_FILE = "config.json"
TUNE_DONE = ("TERMINATED", "ERROR")


@dataclass
class TuneTrial:
    """One trial as Tune's experiment state and the trial's folder on disk describe it."""

    trial_id: str
    status: str  # Tune's: PENDING, RUNNING, PAUSED, TERMINATED or ERROR
    folder: str
    last_result: dict
    retries: int
    given_config: dict = field(default_factory=dict)  # params.json: what Tune passed in
    error: str | None = None
    checkpoint: str | None = None  # newest checkpoint folder holding a state
    run_metadata: dict = field(default_factory=dict)  # Tune's: start_time, last_result_time, ...
    seed_of: str = ""  # a re-training of this winner with another seed (sweeps.engine.seeds), or ""

    @property
    def ended(self) -> bool:
        return self.status in TUNE_DONE


def _read_text(fs: pafs.FileSystem, path: str) -> str | None:
    """A text file (Tune's error.txt); None if absent. Bytes that are not UTF-8 are shown as
    U+FFFD: the text is for people."""
    data = store.read_bytes(fs, path)
    return None if data is None else data.decode(errors="replace")


def _read_checked(storage: str, fs: pafs.FileSystem, path: str, check):
    """A record checked by ``check`` (a results.damage validator); None if absent, Damaged if
    it is not what its writer writes."""
    data = store.read_bytes(fs, path)
    return None if data is None else check(data, store.uri(storage, path), storage)


def _listing(fs: pafs.FileSystem, folder: str) -> list[pafs.FileInfo]:
    return fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))


def experiment_states(storage: str, sweep: str, experiment: str = "") -> list[str]:
    """A cell's saved Tune experiment states (of its search, or of the sub-experiment
    ``experiment`` such as its winner's seeds), oldest first: none when its driver was killed
    after Tune made the experiment's folder but before Tune first saved its state."""
    fs, root = store.filesystem(storage)
    listing = _listing(fs, f"{root}/ray/{sweep}" + (f"/{experiment}" if experiment else ""))
    return sorted(i.path for i in listing if i.base_name.startswith("experiment_state-"))


def seed_experiments(storage: str, sweep: str) -> list[str]:
    """The names of a cell's re-training experiments (``seeds-<winner>``, sweeps.engine.seeds)."""
    fs, root = store.filesystem(storage)
    return sorted(
        i.base_name
        for i in _listing(fs, f"{root}/ray/{sweep}")
        if i.type == pafs.FileType.Directory and i.base_name.startswith(SEEDS_PREFIX)
    )


def tune_trials(storage: str, sweep: str, seeds: bool = True) -> dict[str, TuneTrial] | None:
    """Every trial Tune recorded for a cell, by trial id (with its winner's re-trainings unless
    ``seeds`` is False); None if Tune holds no record of the cell's search."""
    fs, root = store.filesystem(storage)
    folder = f"{root}/ray/{sweep}"
    states = experiment_states(storage, sweep)
    if not states:
        return None
    found = [("", path) for path in states]
    for name in seed_experiments(storage, sweep) if seeds else []:
        found += [(name, path) for path in experiment_states(storage, sweep, name)]
    trials: dict[str, TuneTrial] = {}
    for experiment, path in found:  # oldest first: a later Tuner run's word on a trial wins
        where = f"{folder}/{experiment}" if experiment else folder
        for t, meta in _read_checked(storage, fs, path, damage.experiment_state) or []:
            trials[t["trial_id"]] = TuneTrial(
                trial_id=t["trial_id"],
                status=t["status"],
                folder=f"{where}/{t['relative_logdir']}",
                last_result=meta.get("last_result") or {},
                retries=int(meta.get("num_failures", 0)),
                run_metadata=meta,
                seed_of=experiment.removeprefix(SEEDS_PREFIX),
            )
    for trial in trials.values():
        _read_trial_folder(storage, fs, trial)
    return trials


def _read_trial_folder(storage: str, fs: pafs.FileSystem, trial: TuneTrial) -> None:
    params = f"{trial.folder}/params.json"
    trial.given_config = _read_checked(storage, fs, params, damage.json_object) or {}
    trial.error = _read_text(fs, f"{trial.folder}/error.txt")
    checkpoints = sorted(
        i.path
        for i in _listing(fs, trial.folder)
        if i.type == pafs.FileType.Directory and i.base_name.startswith("checkpoint_")
    )
    for path in reversed(checkpoints):
        if fs.get_file_info(f"{path}/state.pt").type == pafs.FileType.File:
            trial.checkpoint = path
            for name in CHECKED:  # the newest checkpoint's records: what a rebuild reads
                checkpoint_json(storage, path, name)
            break


CHECKED = {HISTORY_FILE: damage.history, CONFIG_FILE: damage.json_object}
"""A checkpoint's JSON records and their validators (results.damage)."""


def checkpoint_json(storage: str, checkpoint: str | None, name: str):
    """A JSON file (HISTORY_FILE, CONFIG_FILE) of a checkpoint folder; None if absent, Damaged
    (results.damage) if it is not what training.checkpoint writes."""
    if checkpoint is None:
        return None
    fs, _ = store.filesystem(storage)
    return _read_checked(storage, fs, f"{checkpoint}/{name}", CHECKED[name])


def checkpoint_uri(storage: str, checkpoint: str) -> str:
    """A checkpoint folder as the sweep records it: a local path, or scheme://bucket/path."""
    fs, _ = store.filesystem(storage)
    kind = fs.type_name
    return checkpoint if kind == "local" else f"{kind}://{checkpoint}"


def study_storage(storage: str, sweep: str, study_url: str | None = None, create: bool = True):
    """The Optuna storage of a cell (results.studies.study_storage: a database, the journal
    file ``<storage>/optuna/<sweep>.journal``, or that journal synced to an object store).

    With ``create=False`` (read-only commands) a journal that does not exist is None, never
    created.
    """
    return studies.study_storage(storage, sweep, study_url, create)


def optuna_trial(study: list, tune_trial_id: str) -> int:
    """The number of the Optuna trial that ``tune_trial_id`` ran among a study's trials; -1 if
    none."""
    found = [t.number for t in study if t.user_attrs.get("tune_trial_id") == tune_trial_id]
    return found[-1] if found else -1


WARM_FROM, WARM_OF = "warm_start_from", "warm_start_of"
"""Optuna user attributes of a warm start (sweeps.engine.warm_start): a trial of another sweep
added to inform the sampler (WARM_FROM), and a configuration of it queued to run here (WARM_OF)."""


def warm_starts(study: list) -> dict[str, str]:
    """Tune trial id -> where a warm start took its configuration from (WARM_OF; "" for a drawn
    one), as warm_start_of says it for each: the last Optuna trial tied to it."""
    return {t.user_attrs["tune_trial_id"]: t.user_attrs.get(WARM_OF, "") for t in study
            if "tune_trial_id" in t.user_attrs}  # fmt: skip


def warm_start_of(study: list, tune_trial_id: str) -> str:
    """Where the configuration of ``tune_trial_id`` came from when a warm start queued it (its
    Optuna trial's ``warm_start_of``: sweeps.engine.warm_start), else ""."""
    found = [t for t in study if t.user_attrs.get("tune_trial_id") == tune_trial_id]
    return found[-1].user_attrs.get(WARM_OF, "") if found else ""


def study_trials(
    storage: str, sweep: str, study_url: str | None = None
) -> list[optuna.trial.FrozenTrial] | None:
    """The Optuna trials of a cell's study, read-only; None if there is no study."""
    backend = study_storage(storage, sweep, study_url, create=False)
    if backend is None:
        return None
    try:
        return optuna.load_study(study_name=sweep, storage=backend).get_trials(deepcopy=False)
    except KeyError:
        return None


IMPORTANCE_EVALUATOR = "PED-ANOVA"
"""Optuna 5's default importance evaluator; it needs no scikit-learn (fANOVA and mean decrease in
impurity do, and this project does not install it)."""


@dataclass
class Importances:
    """A cell's hyperparameter importances (fractions summing to 1, largest first)."""

    values: dict[str, float]
    evaluator: str
    completed: int  # the COMPLETE trials they were computed from


def in_memory(directions, trials: list) -> optuna.Study:
    """A study in memory holding these trials (without Optuna's "new study created" line)."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(directions=directions)
    finally:
        optuna.logging.set_verbosity(verbosity)
    study.add_trials(trials)
    return study


def importances(
    storage: str, sweep: str, study_url: str | None = None, trial_ids: set[str] | None = None
) -> Importances | str:
    """Optuna's hyperparameter importances of a cell's study over its COMPLETE trials (pruned
    and failed trials carry no final value), read-only; or a sentence saying why there are none.
    With ``trial_ids``, only the trials whose ``tune_trial_id`` is among them count (the trials
    the Parquet rows call completed, so that the figures of a cell agree).

    Only parameters that took more than one value among those trials are assessed: a value the
    cell fixed, or one every completed trial happened to share, says nothing about the loss.
    """
    backend = study_storage(storage, sweep, study_url, create=False)
    if backend is None:
        return "no Optuna study for it (no journal under <storage>/optuna and no --study-storage)"
    try:
        study = optuna.load_study(study_name=sweep, storage=backend)
    except KeyError:
        return "its Optuna storage holds no study of that name"
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    # the first value: val_loss, alone or the first of several (--objectives)
    done = [t for t in done if t.values and math.isfinite(t.values[0])]
    ran = [t for t in done if WARM_FROM not in t.user_attrs]  # not another sweep's
    if trial_ids is not None or len(ran) < len(done):
        mine = trial_ids
        done = [t for t in ran if mine is None or t.user_attrs.get("tune_trial_id") in mine]
        study = in_memory(study.directions, done)
    if len(done) < 2:
        return f"importances need >= 2 completed trials with differing params; it has {len(done)}"
    names = {k for t in done for k in t.params}
    varied = sorted(k for k in names if len({repr(t.params.get(k)) for t in done}) > 1)
    if not varied:
        return f"its {len(done)} completed trials share every parameter: nothing to compare"
    with warnings.catch_warnings():  # "too few trials" warnings: the figure states the count
        warnings.simplefilter("ignore")
        raw = optuna.importance.get_param_importances(
            study,
            evaluator=optuna.importance.PedAnovaImportanceEvaluator(),
            params=varied,
            normalize=False,
            target=lambda t: t.values[0],  # a multi-objective study: importances for val_loss
        )
    total = sum(raw.values())
    if not total > 0:
        return (f"{IMPORTANCE_EVALUATOR} finds no parameter that sets its best of "
                f"{len(done)} completed trials apart")  # fmt: skip
    values = {k: v / total for k, v in sorted(raw.items(), key=lambda kv: -kv[1])}
    return Importances(values, IMPORTANCE_EVALUATOR, len(done))
