"""The trial slots that cells in flight together share (sweeps.engine.in_flight): one named actor.

    Slots.options(name=slots_name(storage), ...).remote(capacity, experiments)  the driver's
    SlotsClient(name).acquire / hold / release                                  a cell's calls

The searcher of each cell (wrapped in sweeps.engine.shared_slots.SharedSlots) takes a slot before it
asks Optuna for a configuration and gives it back when the trial ends.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import ray

NAMESPACE = "vae-sweeps"
WAIT_S = 1.0
"""How long a cell that was refused a slot counts as waiting (Tune's controller asks again
within ~0.1 s)."""
STARTUP_S = 60.0
"""How long a cell of the sweep that has not asked yet (its task is still starting) counts as
waiting with no slot."""


class SlotsState:
    """The sweep's trial slots: a counting semaphore, kept by a cell while it has trials to start,
    shared fairly among the cells that wait.

    A slot freed by a cell that has trials left to start stays that cell's, so its next trial
    takes the actor of the one before (Tune's actor reuse; a slot handed to another cell would
    also leave Tune's cached actor holding the slot's CPUs and GPUs). A cell gives its slots up
    as its last trials end. A free slot goes to the waiting cell that holds the fewest (the
    earlier in the sweep among equals), so every cell runs from the start, few trials at a time:
    each cell's TPE sees more results before it draws. Nothing is idle for fairness: a cell gets
    a slot whenever more are free than cells ahead of it wait for.

    Named after the storage (slots_name), so a searcher restored by ``Tuner.restore`` finds the
    new driver's actor by name: a handle in the searcher's pickled state would be stale.
    """

    def __init__(self, capacity: int, experiments: list[str] = ()):
        self.capacity = capacity
        self.held: dict[tuple[str, str], str] = {}  # (experiment, trial id) -> experiment
        self.kept: dict[str, int] = {}  # experiment -> freed slots kept for its next trials
        self.waiting: dict[str, tuple[int, float]] = {}  # experiment -> (rank, last refused)
        # The sweep's cells that have not asked yet: waiting, with no slot, for STARTUP_S.
        self.unasked = {exp: rank for rank, exp in enumerate(experiments)}
        self.startup_ends = time.monotonic() + STARTUP_S

    def _share(self, experiment: str) -> int:
        held = sum(e == experiment for e in self.held.values())
        return held + self.kept.get(experiment, 0)

    def _ahead(self, experiment: str, rank: int, now: float) -> int:
        """How many other waiting cells come first: fewer slots held, or as many and earlier."""
        mine = (self._share(experiment), rank)
        others = [(e, r) for e, (r, t) in self.waiting.items() if now - t < WAIT_S]
        if now < self.startup_ends:
            others += list(self.unasked.items())
        return sum((self._share(e), r) < mine for e, r in others if e != experiment)

    def acquire(self, experiment: str, trial_id: str, rank: int) -> bool:
        now = time.monotonic()
        self.unasked.pop(experiment, None)
        free = self.capacity - len(self.held) - sum(self.kept.values())
        if self.kept.get(experiment):
            self.kept[experiment] -= 1
        elif free <= self._ahead(experiment, rank, now):
            self.waiting[experiment] = (rank, now)
            return False
        self.waiting.pop(experiment, None)
        self.held[(experiment, trial_id)] = experiment
        return True

    def hold(self, experiment: str, trial_ids: list[str]) -> None:
        """Count trials a restored experiment resumes (they never ask): may exceed the cap."""
        self.unasked.pop(experiment, None)
        for t in trial_ids:
            self.held[(experiment, t)] = experiment

    def release(self, experiment: str, trial_id: str, left: int) -> None:
        """A trial ended; ``left``: how many trials its cell has still to start."""
        kept = self.kept.get(experiment, 0)
        if self.held.pop((experiment, trial_id), None) is not None:
            kept += 1
        self.kept[experiment] = min(kept, left)  # no more kept than the cell will ask for
        if left == 0:  # the cell has asked for its last trial
            self.waiting.pop(experiment, None)

    def forget(self, experiment: str) -> None:
        """A cell's experiment ended (or its task died): free whatever it still held."""
        self.held = {k: v for k, v in self.held.items() if v != experiment}
        for d in (self.kept, self.waiting, self.unasked):
            d.pop(experiment, None)

    def in_use(self) -> int:
        return len(self.held)


Slots = ray.remote(num_cpus=0)(SlotsState)
"""The actor: one per sweep driver, asking for no resources."""


def slots_name(storage: str) -> str:
    return "slots-" + hashlib.sha1(storage.encode()).hexdigest()[:12]


_actors: dict[str, ray.actor.ActorHandle] = {}
"""Handles looked up by name, per process (the controller asks for a slot every ~0.1 s)."""


@dataclass(frozen=True)
class SlotsClient:
    """A sweep's Slots actor as a cell's searcher calls it: SlotsState's methods, by name of the
    actor (slots_name), not by handle, so a pickled searcher finds the new driver's actor.

    With no such actor (the sweep's driver did not start one, e.g. a hand-restored run), every
    trial gets a slot and nothing is told.
    """

    name: str

    def _actor(self) -> ray.actor.ActorHandle | None:
        if self.name not in _actors:
            try:
                _actors[self.name] = ray.get_actor(self.name, namespace=NAMESPACE)
            except ValueError:  # no such actor: the sweep's driver did not start one
                return None
        return _actors[self.name]

    def acquire(self, experiment: str, trial_id: str, rank: int) -> bool:
        """A slot for a new trial (SlotsState.acquire), waited for; True without an actor."""
        for _ in range(2):  # a handle of an actor that died (a restarted driver): look it up again
            actor = self._actor()
            if actor is None:
                return True
            try:
                return ray.get(actor.acquire.remote(experiment, trial_id, rank))
            except ray.exceptions.RayActorError:
                _actors.pop(self.name, None)
        return True

    def hold(self, experiment: str, trial_ids: list[str]) -> None:
        """SlotsState.hold, fire and forget."""
        if (actor := self._actor()) is not None:
            actor.hold.remote(experiment, trial_ids)

    def release(self, experiment: str, trial_id: str, left: int) -> None:
        """SlotsState.release, fire and forget."""
        if (actor := self._actor()) is not None:
            actor.release.remote(experiment, trial_id, left)
