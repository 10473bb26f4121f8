"""A cell's searcher under the sweep's shared trial cap (sweeps.engine.slots), when cells run at
once.

    SharedSlots(searcher, slots, rank, trials)   the search_alg of a cell's Tuner (tune_cell)

In the manner of Ray's ConcurrencyLimiter: ``suggest`` returns None (Tune asks again on its next
step) until the sweep's Slots actor grants this cell a slot, then asks the wrapped searcher for a
configuration; ``on_trial_complete`` gives the slot back, then tells the wrapped searcher. What
Optuna is told (sweeps.engine.searcher.PruneAwareOptunaSearch) is the wrapped searcher's alone.
Every cell's searcher is wrapped, at once or not (``slots`` None): ``suggest`` checks the sweep's
--max-gpu-hours first (sweeps.engine.gpu_cap).
"""

from __future__ import annotations

from typing import Protocol

from ray.tune.search import Searcher
from ray.tune.search.util import _set_search_properties_backwards_compatible

from sweeps.engine import gpu_cap, tune_record
from sweeps.engine.slots import SlotsClient


class CellSearcher(Protocol):
    """What SharedSlots asks of the searcher it wraps, besides Tune's Searcher methods."""

    experiment: str  # <storage>/ray/<cell>: the cell, as the Slots actor knows it

    @property
    def cell(self) -> str: ...  # where tune_record places the cell in this run of the sweep

    def running(self) -> list[str]: ...  # its Tune trials asked and not yet ended

    def started(self) -> int: ...  # how many Tune trials it has given a configuration


class SharedSlots(Searcher):
    """A searcher whose trials each take one of the sweep's shared slots (sweeps.engine.slots).

    ``slots``: the Slots actor's name (None: no cap shared, every call passes through);
    ``rank``: this cell's priority for a free slot (lower first); ``trials``: how many trials the
    cell starts in all (a cell with trials left keeps the slot a trial frees).

    Tune pickles it in ``tuner.pkl``; unpickled or restored, it re-points to the slots of this
    run of the sweep (tune_record.here). The wrapped searcher is ``wrapped``, not ``searcher``:
    Tune's SearchGenerator saves the state of each ``.searcher`` wrapper, and this one has none,
    so ``searcher-state-*.pkl`` and ``search_gen_state-*.json`` stay the wrapped searcher's and
    Tune's, as before this wrapper (a storage written then resumes without a warning).
    """

    def __init__(self, searcher: CellSearcher, slots: str | None, rank: int = 0, trials: int = 0):
        self.wrapped = searcher
        self.slots = SlotsClient(slots) if slots is not None else None
        self.rank, self.trials = rank, trials
        self._holding = False  # told the slots about the trials a restored experiment resumes
        super().__init__(metric=searcher.metric, mode=searcher.mode)

    @property
    def metric(self) -> str:
        return self.wrapped.metric

    @property
    def mode(self) -> str:
        return self.wrapped.mode

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict,
                              **spec) -> bool:  # fmt: skip
        return _set_search_properties_backwards_compatible(
            self.wrapped.set_search_properties, metric, mode, config, **spec
        )

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        return self.wrapped.set_max_concurrency(max_concurrent)  # Tune's own limiter still caps

    def suggest(self, trial_id: str) -> dict | None:
        # --max-gpu-hours first: a trial refused after it took a slot would hold that slot
        if not gpu_cap.allows(self.wrapped.cell, trial_id, len(self.wrapped.running())):
            return None  # not Searcher.FINISHED: Tune would save the search as finished
        if self.slots is not None:
            experiment = self.wrapped.experiment
            if not self._holding:
                self.slots.hold(experiment, self.wrapped.running())
                self._holding = True
            if not self.slots.acquire(experiment, trial_id, self.rank):
                return None  # Tune asks again on its next step
        config = self.wrapped.suggest(trial_id)
        if config is not None:
            gpu_cap.started(self.wrapped.cell, trial_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.wrapped.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if self.slots is not None:
            left = max(0, self.trials - self.wrapped.started())  # trials still to start
            self.slots.release(self.wrapped.experiment, trial_id, left)
        self.wrapped.on_trial_complete(trial_id, result=result, error=error)

    def add_evaluated_point(self, *args, **kwargs):
        return self.wrapped.add_evaluated_point(*args, **kwargs)

    def on_pause(self, trial_id: str) -> None:
        self.wrapped.on_pause(trial_id)

    def on_unpause(self, trial_id: str) -> None:
        self.wrapped.on_unpause(trial_id)

    def save(self, checkpoint_path: str) -> None:
        self.wrapped.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.wrapped.restore(checkpoint_path)
        self._repoint()
        self._holding = False  # a new driver's slots know nothing of the resumed trials

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._repoint()

    def _repoint(self) -> None:
        """The slots of this run of the sweep, where it says (the wrapped searcher reopens its
        study where it says too); unpickled outside a sweep, the ones it was pickled with."""
        where = tune_record.here(self.wrapped.cell)
        if where is not None and where.optuna_storage is not None:
            self.slots = SlotsClient(where.slots) if where.slots is not None else None
