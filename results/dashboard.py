"""One optuna-dashboard for a whole sweep: every cell's study, each under its cell's name.

    python -m results dashboard --storage DIR_OR_URI [--study-storage URL] [--port 8080]

A sweep keeps one study per cell, each in its own journal (``optuna/<cell>.journal``), and
optuna-dashboard opens one storage: SweepStudies is a read-only Optuna storage that shows the
journals of a storage as one, so one dashboard lists the cells (98 for the VLAE paper sweep)
with their trials, curves and importances. A cell that starts while it runs appears on the next
page load. Where the studies are in a database (--study-storage), that database already holds
them all and is served as it is.

Read-only: the dashboard's notes and its other writes are refused, so a dashboard can never
change a study a sweep is writing. A study that names no objective shows ``OBJECTIVE``.
"""

from __future__ import annotations

import copy
import time

import optuna
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.study._frozen import FrozenStudy
from optuna.trial import FrozenTrial, TrialState

from results import records, store, studies
from results.studies import OBJECTIVE

METRIC_NAMES = "study:metric_names"  # where Optuna's Study.set_metric_names keeps them
REMOTE_TTL_S = 10.0
"""How long an object store's journal, read into memory, is shown before it is read again."""
SHIFT = 32
"""A trial's id here: its cell's index above SHIFT bits, its id in the cell's journal below."""


class ReadOnly(optuna.exceptions.StorageInternalError):
    """A write through the sweep's dashboard."""


class SweepStudies(BaseStorage):
    """The studies of every cell of ``storage`` as one read-only Optuna storage."""

    def __init__(self, storage: str, study_url: str | None = None):
        self.storage, self.study_url = storage, study_url
        self._index: dict[str, int] = {}  # cell -> study id here, stable while it runs
        self._open: dict[str, tuple[BaseStorage, float]] = {}

    def cells(self) -> list[str]:
        """The cells with a study, in the order first seen (their study ids here)."""
        for cell in store.sweeps(self.storage):
            if cell not in self._index and self._backend(cell) is not None:
                self._index[cell] = len(self._index)
        return list(self._index)

    def _backend(self, cell: str) -> BaseStorage | None:
        backend, opened = self._open.get(cell, (None, 0.0))
        local = store.filesystem(self.storage)[0].type_name == "local"
        if backend is None or (not local and time.monotonic() - opened > REMOTE_TTL_S):
            backend = records.study_storage(self.storage, cell, self.study_url, create=False)
            if backend is not None:
                self._open[cell] = (backend, time.monotonic())
        return backend

    def _cell(self, study_id: int) -> tuple[str, BaseStorage, int]:
        names = self.cells() if study_id >= len(self._index) else list(self._index)
        if not 0 <= study_id < len(names):
            raise KeyError(f"no study {study_id} in {self.storage}")
        cell = names[study_id]
        backend = self._backend(cell)
        return cell, backend, backend.get_study_id_from_name(cell)

    def _trial(self, study_id: int, trial: FrozenTrial) -> FrozenTrial:
        shown = copy.copy(trial)
        shown._trial_id = (study_id << SHIFT) | trial._trial_id
        return shown

    # reading
    def get_all_studies(self) -> list[FrozenStudy]:
        return [self._study(i) for i in range(len(self.cells()))]

    def _study(self, study_id: int) -> FrozenStudy:
        cell, _, _ = self._cell(study_id)
        return FrozenStudy(
            study_name=cell,
            direction=None,
            directions=self.get_study_directions(study_id),
            user_attrs=self.get_study_user_attrs(study_id),
            system_attrs=self.get_study_system_attrs(study_id),
            study_id=study_id,
        )

    def get_study_id_from_name(self, study_name: str) -> int:
        if study_name not in self.cells():
            raise KeyError(f"no study named {study_name} in {self.storage}")
        return self._index[study_name]

    def get_study_name_from_id(self, study_id: int) -> str:
        return self._cell(study_id)[0]

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        _, backend, sid = self._cell(study_id)
        return backend.get_study_directions(sid)

    def get_study_user_attrs(self, study_id: int) -> dict:
        _, backend, sid = self._cell(study_id)
        return backend.get_study_user_attrs(sid)

    def get_study_system_attrs(self, study_id: int) -> dict:
        _, backend, sid = self._cell(study_id)
        attrs = dict(backend.get_study_system_attrs(sid))
        attrs.setdefault(METRIC_NAMES, [OBJECTIVE])
        return attrs

    def get_all_trials(
        self, study_id: int, deepcopy: bool = True, states: tuple[TrialState, ...] | None = None
    ) -> list[FrozenTrial]:
        _, backend, sid = self._cell(study_id)
        trials = backend.get_all_trials(sid, deepcopy=deepcopy, states=states)
        return [self._trial(study_id, t) for t in trials]

    def get_trial(self, trial_id: int) -> FrozenTrial:
        study_id, local = trial_id >> SHIFT, trial_id & ((1 << SHIFT) - 1)
        _, backend, _ = self._cell(study_id)
        return self._trial(study_id, backend.get_trial(local))

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        _, backend, sid = self._cell(study_id)
        local = backend.get_trial_id_from_study_id_trial_number(sid, trial_number)
        return (study_id << SHIFT) | local

    # writing: refused
    def _refuse(self, *args, **kwargs):
        raise ReadOnly(f"the sweep's dashboard is read-only ({self.storage}); open a cell's own "
                       "study with optuna-dashboard to write to it")  # fmt: skip

    create_new_study = delete_study = set_study_user_attr = set_study_system_attr = _refuse
    create_new_trial = set_trial_param = set_trial_state_values = _refuse
    set_trial_intermediate_value = set_trial_user_attr = set_trial_system_attr = _refuse


def storage_for(storage: str, study_url: str | None = None) -> BaseStorage:
    """What the dashboard shows: the sweep's database as it is, else its journals as one."""
    if studies.is_rdb(study_url or storage):
        return studies.rdb(study_url or storage)
    return SweepStudies(storage, study_url)


def serve(storage: str, study_url: str | None, host: str, port: int) -> int:
    """Serve the sweep's studies until Ctrl-C."""
    try:
        from optuna_dashboard import run_server
    except ImportError as e:  # the `dashboard` extra
        raise ValueError(f"{e}: pip install -e '.[dashboard]' (make install does)") from None
    shown = storage_for(storage, study_url)
    if isinstance(shown, SweepStudies) and not shown.cells():
        raise store.StorageError(f"no Optuna study under {storage} (has a sweep run there?)")
    count = len(shown.cells()) if isinstance(shown, SweepStudies) else "every"
    print(f"optuna-dashboard: {count} cells' studies of {storage} at http://{host}:{port}/ "
          "(read-only; Ctrl-C stops it)", flush=True)  # fmt: skip
    try:
        run_server(shown, host=host, port=port)
    except KeyboardInterrupt:
        pass
    return 0
