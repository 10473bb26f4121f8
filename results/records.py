"""What Tune and Optuna recorded of a sweep, read from storage without Ray and without writing.

Tune keeps, per cell, ``<storage>/ray/<cell>/``: ``experiment_state-<time>.json`` (each trial's
status, failures and last result; one file per Tuner run: a resumed run rewrites its own, a run
that added trials writes another) and one folder per trial with ``params.json``, ``error.txt`` when
it failed, and its newest checkpoints (``checkpoint_NNNNNN/`` holding our ``state.pt``,
``history.json`` and ``config.json``). Optuna keeps ``<storage>/optuna/<cell>.journal`` (or an RDB
given as --study-storage). These are the two records the Parquet rows are checked against.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pyarrow as pa
import pyarrow.fs as pafs

from results import store

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

    @property
    def ended(self) -> bool:
        return self.status in TUNE_DONE


def _read_text(fs: pafs.FileSystem, path: str) -> str | None:
    try:
        with fs.open_input_stream(path) as f:
            return f.read().decode()
    except (OSError, pa.ArrowException):
        return None


def _read_json(fs: pafs.FileSystem, path: str):
    text = _read_text(fs, path)
    try:
        return None if text is None else json.loads(text)
    except ValueError:
        return None


def _listing(fs: pafs.FileSystem, folder: str) -> list[pafs.FileInfo]:
    return fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))


def experiment_states(storage: str, sweep: str) -> list[str]:
    """A cell's saved Tune experiment states, oldest first: none when its driver was killed
    after Tune made the experiment's folder but before Tune first saved its state."""
    fs, root = store.filesystem(storage)
    listing = _listing(fs, f"{root}/ray/{sweep}")
    return sorted(i.path for i in listing if i.base_name.startswith("experiment_state-"))


def tune_trials(storage: str, sweep: str) -> dict[str, TuneTrial] | None:
    """Every trial Tune recorded for a cell, by trial id; None if Tune holds no record of it."""
    fs, root = store.filesystem(storage)
    folder = f"{root}/ray/{sweep}"
    states = experiment_states(storage, sweep)
    if not states:
        return None
    trials: dict[str, TuneTrial] = {}
    for path in states:  # oldest first: a later Tuner run's word on a trial wins
        state = _read_json(fs, path)
        if not isinstance(state, dict):
            continue  # a half-written state file; Tune keeps the previous one beside it
        for json_state, runtime in state.get("trial_data", []):
            t, meta = json.loads(json_state), json.loads(runtime)
            trials[t["trial_id"]] = TuneTrial(
                trial_id=t["trial_id"],
                status=t["status"],
                folder=f"{folder}/{t['relative_logdir']}",
                last_result=meta.get("last_result") or {},
                retries=int(meta.get("num_failures", 0)),
                run_metadata=meta,
            )
    for trial in trials.values():
        _read_trial_folder(fs, trial)
    return trials


def _read_trial_folder(fs: pafs.FileSystem, trial: TuneTrial) -> None:
    trial.given_config = _read_json(fs, f"{trial.folder}/params.json") or {}
    trial.error = _read_text(fs, f"{trial.folder}/error.txt")
    checkpoints = sorted(
        i.path
        for i in _listing(fs, trial.folder)
        if i.type == pafs.FileType.Directory and i.base_name.startswith("checkpoint_")
    )
    for path in reversed(checkpoints):
        if fs.get_file_info(f"{path}/state.pt").type == pafs.FileType.File:
            trial.checkpoint = path
            break


def checkpoint_json(storage: str, checkpoint: str | None, name: str):
    """A JSON file (HISTORY_FILE, CONFIG_FILE) of a checkpoint folder; None if absent/unreadable."""
    if checkpoint is None:
        return None
    fs, _ = store.filesystem(storage)
    return _read_json(fs, f"{checkpoint}/{name}")


def checkpoint_uri(storage: str, checkpoint: str) -> str:
    """A checkpoint folder as the sweep records it: a local path, or scheme://bucket/path."""
    fs, _ = store.filesystem(storage)
    kind = fs.type_name
    return checkpoint if kind == "local" else f"{kind}://{checkpoint}"


RDB_SCHEMES = ("postgresql", "mysql", "sqlite")


def study_storage(storage: str, sweep: str, study_url: str | None = None, create: bool = True):
    """The Optuna storage of a cell: an RDB URL (``study_url``, or ``storage`` itself) as given,
    else the journal file ``<storage>/optuna/<sweep>.journal``.

    With ``create=False`` (read-only commands) a journal that does not exist is None, never
    created.
    """
    url = study_url or storage
    if url.startswith(RDB_SCHEMES):
        sqlite_file = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
        if not create and sqlite_file is not None and not sqlite_file.is_file():
            return None  # opening it would create the database file
        return optuna.storages.RDBStorage(url)
    path = Path(url).expanduser().resolve() / "optuna" / f"{sweep}.journal"
    if not create and not path.is_file():
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    backend = optuna.storages.journal.JournalFileBackend(str(path))
    return optuna.storages.JournalStorage(backend)


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
