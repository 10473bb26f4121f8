"""A cell's searcher under the sweep's shared slots (sweeps.engine.shared_slots.SharedSlots), the
typed calls it makes to the Slots actor (sweeps.engine.slots.SlotsClient), and a searcher pickled
before the wrapper existed. The slots themselves: test_slots.py; the cells in flight on Ray:
tests/e2e/test_in_flight.py."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState

from sweeps.engine import slots as slots_module
from sweeps.engine import tune_record
from sweeps.engine.searcher import PruneAwareOptunaSearch, end_state
from sweeps.engine.shared_slots import SharedSlots
from sweeps.engine.slots import SlotsClient
from sweeps.engine.trial import METRIC
from sweeps.engine.tuner import MODE, wrap_restored_searcher

DONE = {"epoch": 1, METRIC: 0.5, "finished": True, "best_val_loss": 0.5}


def one_float(trial):
    trial.suggest_float("x", 0.0, 1.0)


def journal(path):
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


def searcher(storage) -> PruneAwareOptunaSearch:
    return PruneAwareOptunaSearch(
        space=one_float,
        metric=METRIC,
        mode=MODE,
        sampler=optuna.samplers.TPESampler(seed=0),
        study_name="s",
        storage=storage,
        experiment="/runs/ray/s",
    )


class Actor:
    """A stand-in for the Slots actor's handle: each method's ``.remote`` records its call and
    returns what ``grant`` says (ray.get is the identity here)."""

    def __init__(self, grant=True):
        self.calls, self.grant = [], grant
        for method in ("acquire", "hold", "release"):
            setattr(self, method, SimpleNamespace(remote=self._recorder(method)))

    def _recorder(self, method):
        def remote(*args):
            self.calls.append((method, *args))
            return self.grant if method == "acquire" else None

        return remote


@pytest.fixture
def actor(monkeypatch):
    fake = Actor()
    monkeypatch.setattr(slots_module, "_actors", {"slots-x": fake})
    monkeypatch.setattr(slots_module.ray, "get", lambda ref: ref)
    monkeypatch.setattr(tune_record, "_here", {})  # this test's locations only
    return fake


def test_the_client_calls_the_actors_methods_and_grants_without_one(actor, monkeypatch):
    client = SlotsClient("slots-x")
    assert client.acquire("e", "t1", 3) is True
    client.hold("e", ["t0"])
    client.release("e", "t1", 2)
    assert actor.calls == [
        ("acquire", "e", "t1", 3), ("hold", "e", ["t0"]), ("release", "e", "t1", 2)
    ]  # fmt: skip
    actor.grant = False
    assert client.acquire("e", "t2", 3) is False

    def no_actor(name, namespace):
        raise ValueError(name)

    monkeypatch.setattr(slots_module.ray, "get_actor", no_actor)
    nobody = SlotsClient("slots-none")  # a hand-restored run: no driver started the actor
    assert nobody.acquire("e", "t1", 0) is True
    nobody.hold("e", ["t1"]), nobody.release("e", "t1", 0)  # nothing to tell, nothing raised


def test_a_trial_waits_for_a_slot_before_optuna_is_asked_and_frees_it_as_it_ends(actor, tmp_path):
    storage = journal(tmp_path / "s.journal")
    wrapped = SharedSlots(searcher(storage), "slots-x", rank=1, trials=3)
    actor.grant = False
    assert wrapped.suggest("a") is None  # no slot: Tune asks again, Optuna is not asked
    assert optuna.load_study(study_name="s", storage=storage).trials == []
    actor.grant = True
    assert set(wrapped.suggest("a")) == {"x"}
    wrapped.suggest("b")
    wrapped.on_trial_complete("a", DONE)
    assert actor.calls == [
        ("hold", "/runs/ray/s", []),  # once, before its first trial: none resumed
        ("acquire", "/runs/ray/s", "a", 1),
        ("acquire", "/runs/ray/s", "a", 1),
        ("acquire", "/runs/ray/s", "b", 1),
        ("release", "/runs/ray/s", "a", 1),  # 3 trials, 2 started: 1 left to start
    ]
    trials = optuna.load_study(study_name="s", storage=storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.RUNNING]
    assert wrapped.metric == METRIC and wrapped.mode == MODE


def test_without_slots_every_call_passes_through(actor, tmp_path):
    wrapped = SharedSlots(searcher(journal(tmp_path / "s.journal")), None, trials=1)
    wrapped.suggest("a")
    wrapped.on_trial_complete("a", DONE)
    assert actor.calls == []


def test_restored_it_holds_the_resumed_trials_and_takes_this_runs_slots(actor, tmp_path):
    """Tune saves only the wrapped searcher (searcher-state-*.pkl) and pickles the wrapper in
    tuner.pkl; a new driver's slots are found where the sweep now places the cell."""
    storage = journal(tmp_path / "s.journal")
    slots_module._actors["slots-old"] = Actor()  # the first driver's, gone with it
    first = SharedSlots(searcher(storage), "slots-old", rank=2, trials=4)
    first.suggest("a"), first.suggest("b")
    first.save(str(tmp_path / "state.pkl"))
    assert isinstance(pickle.loads((tmp_path / "state.pkl").read_bytes()), dict)  # as before
    pickled = pickle.dumps(first)

    where = tune_record.Location(str(tmp_path), None, "/runs/ray/s", "slots-x", storage)
    tune_record.locate("s", where)
    second = pickle.loads(pickled)
    assert second.slots == SlotsClient("slots-x") and second.rank == 2
    second.restore(str(tmp_path / "state.pkl"))
    second.on_trial_complete("a", DONE)
    second.suggest("c")
    assert actor.calls == [
        ("release", "/runs/ray/s", "a", 2),
        ("hold", "/runs/ray/s", ["b"]),  # the trial resumed, once
        ("acquire", "/runs/ray/s", "c", 2),
    ]


def test_a_searcher_pickled_before_shared_slots_restores_wrapped(actor, tmp_path):
    """tuner.pkl and searcher-state-*.pkl of a storage written before SharedSlots hold a bare
    PruneAwareOptunaSearch with the slots' fields its own: restored, it is wrapped with the rank
    and trial count it was pickled with, and the fields leave it."""
    storage = journal(tmp_path / "s.journal")
    old = searcher(storage)
    old.__dict__.update(slots="slots-old", rank=5, trials=7, _holding=True)
    old.suggest("a")
    old.save(str(tmp_path / "state.pkl"))
    tune_record.locate("s", tune_record.Location(str(tmp_path), None, "/runs/ray/s", "slots-x",
                                                 storage))  # fmt: skip
    config = SimpleNamespace(search_alg=pickle.loads(pickle.dumps(old)))  # as in tuner.pkl
    tuner = SimpleNamespace(_local_tuner=SimpleNamespace(_tune_config=config))
    wrap_restored_searcher(tuner, "slots-x", rank=0, trials=2)
    wrapped = config.search_alg
    assert isinstance(wrapped, SharedSlots) and (wrapped.rank, wrapped.trials) == (5, 7)
    wrapped.restore(str(tmp_path / "state.pkl"))
    assert not {"slots", "rank", "trials", "_holding"} & set(wrapped.wrapped.__dict__)
    wrapped.suggest("b")
    assert actor.calls == [("hold", "/runs/ray/s", ["a"]), ("acquire", "/runs/ray/s", "b", 5)]
    wrap_restored_searcher(tuner, "slots-x", rank=0, trials=2)  # wrapped already: as it is
    assert config.search_alg is wrapped


def test_what_optuna_is_told_of_a_trial_that_ended():
    assert end_state({"finished": True, "best_val_loss": 1.5}, False, None) == (
        TrialState.COMPLETE, 1.5
    )  # fmt: skip
    assert end_state({"epoch": 2}, False, None) == (TrialState.PRUNED, None)  # ASHA stopped it
    assert end_state({"finished": True, "best_val_loss": 1.5}, True, None) == (
        TrialState.FAIL, None
    )  # fmt: skip
    assert end_state({"diverged": True}, False, None) == (TrialState.FAIL, None)  # on its own
    # finished before a driver restart, then failed rerunning: it stays completed, as its row
    assert end_state({}, True, {"best_val_loss": 2.0}) == (TrialState.COMPLETE, 2.0)
