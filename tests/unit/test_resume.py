"""A restored searcher (sweeps.engine.searcher.PruneAwareOptunaSearch), as a resumed sweep's
driver gets it: it adopts the trials asked after its last save and reopens its study where the
storage now lies. A killed driver resumed end to end: tests/e2e/test_resume_journeys.py."""

from __future__ import annotations

import pickle
import subprocess
import sys

import optuna

from sweeps.engine.searcher import PruneAwareOptunaSearch
from sweeps.engine.trial import METRIC
from sweeps.engine.tuner import MODE


def one_float(trial):
    trial.suggest_float("x", 0.0, 1.0)


def searcher(storage, seed=0) -> PruneAwareOptunaSearch:
    return PruneAwareOptunaSearch(
        space=one_float,
        metric=METRIC,
        mode=MODE,
        sampler=optuna.samplers.TPESampler(seed=seed),
        study_name="s",
        storage=storage,
        experiment="/runs/exp",
    )


def test_a_restored_searcher_adopts_the_trials_asked_after_its_last_save(tmp_path):
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "s.journal"))
    )
    first = searcher(storage)
    first.suggest("a"), first.suggest("b")
    first.save(str(tmp_path / "state.pkl"))  # Tune's periodic experiment snapshot
    done = {"epoch": 1, METRIC: 0.5, "finished": True, "best_val_loss": 0.5}
    first.on_trial_complete("a", done)
    c = first.suggest("c")  # ... and the driver dies before the next snapshot

    second = searcher(storage, seed=1)
    second.restore(str(tmp_path / "state.pkl"))
    second.on_trial_complete("a", done)  # "a" reran from its checkpoint: told twice, no error
    assert second.suggest("d") == c  # the orphan asked for "c" is adopted, parameters and all
    second.suggest("e")  # a fresh one

    everything = optuna.load_study(study_name="s", storage=storage).trials
    trials = [t for t in everything if "duplicate_of" not in t.user_attrs]
    assert [t.user_attrs["tune_trial_id"] for t in trials] == ["a", "b", "d", "e"]
    assert [t.state.name for t in trials] == ["COMPLETE", "RUNNING", "RUNNING", "RUNNING"]
    # The restored sampler's random state is the snapshot's: its next draw for "e" repeated the
    # orphan's parameters, was told FAIL as a duplicate of it, and drawn again.
    repeats = [t for t in everything if "duplicate_of" in t.user_attrs]
    assert [(t.state.name, t.user_attrs["duplicate_of"]) for t in repeats] == [("FAIL", 2)]
    assert len({t.params["x"] for t in trials}) == 4


def test_a_trial_tune_saved_after_the_searchers_pickle_keeps_its_optuna_trial(
    tmp_path, monkeypatch
):
    """Tune uploads its experiment state and the searcher's pickle in the background: a
    restored experiment can name a trial ("c", not yet run) that the restored searcher, pickled
    a save earlier, does not hold. "c" keeps its Optuna trial and is told how it ended; the next
    new trial is not given c's configuration again (it was: CI's S3 kill test, 'a row with no
    Optuna trial' and 'ran the same configuration')."""
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "s.journal"))
    )
    first = searcher(storage)
    first.suggest("a")
    first.save(str(tmp_path / "state.pkl"))
    c = first.suggest("c")  # Tune saves its state with "c" pending, then the driver dies

    second = searcher(storage, seed=1)
    second.restore(str(tmp_path / "state.pkl"))
    monkeypatch.setattr(second, "_saved_by_tune", lambda: {"a": False, "c": False})
    d = second.suggest("d")
    assert d != c
    done = {"epoch": 1, METRIC: 0.5, "finished": True, "best_val_loss": 0.5}
    second.on_trial_complete("c", done)  # the restored "c" ran with its saved configuration
    trials = optuna.load_study(study_name="s", storage=storage).trials
    ours = [t for t in trials if "duplicate_of" not in t.user_attrs]
    assert [t.user_attrs["tune_trial_id"] for t in ours] == ["a", "c", "d"]
    assert [t.state.name for t in ours] == ["RUNNING", "COMPLETE", "RUNNING"]


def test_a_restored_searcher_reopens_its_study_where_the_storage_now_lies(tmp_path, monkeypatch):
    """Tune pickles the searcher (tuner.pkl, searcher-state-*.pkl); a storage moved since is
    resumed in place: the restored searcher tells the journal where it lies now, and the old
    place is never created again."""
    import pickle

    from sweeps.engine import tune_record

    monkeypatch.setattr(tune_record, "_here", {})  # this test's locations only

    def journal(root):
        path = root / "optuna" / "s.journal"
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))

    def place(root):
        where = tune_record.Location(str(root), None, f"{root}/ray/s", None, journal(root))
        tune_record.locate("s", where)

    old, new = tmp_path / "old", tmp_path / "new"
    place(old)
    first = searcher(journal(old))
    first.results = str(old)
    first.suggest("a")
    first.save(str(tmp_path / "state.pkl"))
    pickled = pickle.dumps(first)  # as in tuner.pkl
    assert str(old / "optuna") not in str(pickle.loads(pickled).__dict__.get("_storage"))
    old.rename(new)

    place(new)
    second = pickle.loads(pickled)
    second.restore(str(tmp_path / "state.pkl"))
    second.on_trial_complete("a", {"epoch": 1, METRIC: 0.5, "finished": True, "best_val_loss": 0.5})
    second.suggest("b")
    assert not old.exists()
    trials = optuna.load_study(study_name="s", storage=journal(new)).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "RUNNING"]
    assert trials[1].user_attrs["tune_experiment"] == "ray/s"  # relative to the storage


def test_the_module_names_of_a_storage_written_before_sweeps_engine_resolve():
    """Tune's pickles in a storage written before the machinery moved into sweeps/engine/ name
    the old modules (tuner.pkl: searcher, wrapper, scheduler, callback); each name still finds
    its class (sweeps/__init__.py's MOVED), and only when something asks for it."""
    from sweeps.engine import parquet_writer, searcher, shared_slots, slots, trial, tune_record

    old = {
        ("sweeps.tune_glue", "PruneAwareOptunaSearch"): searcher.PruneAwareOptunaSearch,
        ("sweeps.tune_glue", "ParquetWriter"): parquet_writer.ParquetWriter,  # tune_glue.py had it
        ("sweeps.shared_slots", "SharedSlots"): shared_slots.SharedSlots,
        ("sweeps.slots", "SlotsClient"): slots.SlotsClient,
        ("sweeps.tune_record", "ASHA"): tune_record.ASHA,
        ("sweeps.tune_record", "FIFO"): tune_record.FIFO,
        ("sweeps.parquet_writer", "ParquetWriter"): parquet_writer.ParquetWriter,
        ("sweeps.trial", "TrainTrial"): trial.TrainTrial,
    }
    for (module, name), cls in old.items():
        assert pickle.loads(f"c{module}\n{name}\n.".encode()) is cls, (module, name)
    lazy = "import sys, sweeps.cells; print(sorted(m for m in sys.modules if 'sweeps.' in m))"
    out = subprocess.run([sys.executable, "-c", lazy], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["['sweeps.cells']"], out.stderr
