"""The trial slots that cells in flight together share (sweeps.in_flight): one named actor.

The searcher of each cell (sweeps.tune_glue.PruneAwareOptunaSearch) takes a slot before it asks
Optuna for a configuration and gives it back when the trial ends.
"""

from __future__ import annotations

import hashlib
import time

import ray

NAMESPACE = "vae-sweeps"
HANDOVER_S = 1.0
"""How long a slot freed by a cell with trials left stays that cell's (Tune's controller asks
again within ~0.1 s), and how long a cell that was refused keeps its precedence."""


class SlotsState:
    """The sweep's trial slots: a counting semaphore with a per-cell handover and cell priority.

    Named after the storage (slots_name), so a searcher restored by ``Tuner.restore`` finds the
    new driver's actor by name: a handle in the searcher's pickled state would be stale.
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.held: dict[tuple[str, str], str] = {}  # (experiment, trial id) -> experiment
        self.reserved: dict[str, list[float]] = {}  # experiment -> deadlines of handed-over slots
        self.refused: dict[int, float] = {}  # rank -> when it was last refused

    def _free(self, now: float) -> int:
        for exp in list(self.reserved):
            self.reserved[exp] = [d for d in self.reserved[exp] if d > now]
        return self.capacity - len(self.held) - sum(map(len, self.reserved.values()))

    def acquire(self, experiment: str, trial_id: str, rank: int) -> bool:
        now = time.monotonic()
        free = self._free(now)
        if self.reserved.get(experiment):
            self.reserved[experiment].pop()
        elif free <= 0 or any(r < rank and now - t < HANDOVER_S for r, t in self.refused.items()):
            self.refused[rank] = now
            return False
        self.refused.pop(rank, None)
        self.held[(experiment, trial_id)] = experiment
        return True

    def hold(self, experiment: str, trial_ids: list[str]) -> None:
        """Count trials a restored experiment resumes (they never ask): may exceed the cap."""
        for t in trial_ids:
            self.held[(experiment, t)] = experiment

    def release(self, experiment: str, trial_id: str, wants_more: bool) -> None:
        if self.held.pop((experiment, trial_id), None) is not None and wants_more:
            self.reserved.setdefault(experiment, []).append(time.monotonic() + HANDOVER_S)

    def forget(self, experiment: str) -> None:
        """A cell's experiment ended (or its task died): free whatever it still held."""
        self.held = {k: v for k, v in self.held.items() if v != experiment}
        self.reserved.pop(experiment, None)

    def in_use(self) -> int:
        return len(self.held)


Slots = ray.remote(num_cpus=0)(SlotsState)
"""The actor: one per sweep driver, asking for no resources."""


def slots_name(storage: str) -> str:
    return "slots-" + hashlib.sha1(storage.encode()).hexdigest()[:12]


_actors: dict[str, ray.actor.ActorHandle] = {}
"""Handles looked up by name, per process (the controller asks for a slot every ~0.1 s)."""


def _actor(name: str) -> ray.actor.ActorHandle | None:
    if name not in _actors:
        try:
            _actors[name] = ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:  # no such actor: the sweep's driver did not start one
            return None
    return _actors[name]


def take(name: str, experiment: str, trial_id: str, rank: int) -> bool:
    """A slot for a new trial; True when the sweep has no Slots actor (e.g. a hand-restored run)."""
    for _ in range(2):  # a handle of an actor that died (a restarted driver): look it up again
        actor = _actor(name)
        if actor is None:
            return True
        try:
            return ray.get(actor.acquire.remote(experiment, trial_id, rank))
        except ray.exceptions.RayActorError:
            _actors.pop(name, None)
    return True


def tell(name: str, method: str, *args) -> None:
    """hold / release / forget, fire and forget."""
    if (actor := _actor(name)) is not None:
        getattr(actor, method).remote(*args)
