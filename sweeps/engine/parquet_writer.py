"""The Parquet rows of a cell's trials, written by a Tune callback as each trial ends.

    ParquetWriter(storage, cell, resources, ...)  the callback sweeps.engine.tuner and
                                                  sweeps.engine.seeds give their Tuners
    completed_row(storage, cell, trial_id)        a trial's completed row, if it has one
"""

from __future__ import annotations

import json

from ray import tune

from results import records, rows, store, studies
from sweeps.cells import Cell
from sweeps.engine import tune_record
from sweeps.engine.provenance import provenance
from training import checkpoint as ckpt_io
from training.config import Config, flatten


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
    or a re-training of ``seed_of`` with another training seed: sweeps.engine.seeds).
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

    def __setstate__(self, state: dict) -> None:
        """Unpickled from Tune's ``tuner.pkl``: rows go where the storage lies now."""
        self.__dict__.update(state)
        if (where := tune_record.here(self.cell.name)) is not None:
            self.storage, self.study_storage = where.storage, where.study_storage

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._write(trial, None)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._write(trial, str(trial.get_error() or "trial failed"))

    def _optuna_trial(self, trial_id: str) -> tuple[int, str]:
        """The number of the trial's Optuna trial and where a warm start took its configuration
        from (records.warm_start_of); (-1, ""): a seed re-training, which has none, or a study
        that cannot be read now (the row is worth more than the number)."""
        if self.role != rows.SEARCH:
            return -1, ""
        try:
            study = records.study_trials(self.storage, self.cell.name, self.study_storage)
        except Exception as e:  # noqa: BLE001 - e.g. a database that is down for a moment
            print(f"warning: trial {trial_id}: its Optuna trial number is unknown ({e})")
            return -1, ""
        study = study or []
        return records.optuna_trial(study, trial_id), records.warm_start_of(study, trial_id)

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
        number, warm = self._optuna_trial(trial.trial_id)
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
            optuna_trial=number,
            role=self.role,
            seed_of=self.seed_of,
            warm_start=warm,
        )
        # The study first: on an object store its journal goes up before the row does, so a
        # row never names a trial that a driver killed now would leave out of the study there
        # (a resume on another head would draw its configuration again).
        studies.flush(self.study_storage or self.storage, self.cell.name)
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
