"""The cell's Optuna study names its objective (results.studies.OBJECTIVE), so
optuna-dashboard and Optuna's plots show "best_val_loss" instead of "Objective 0": on a new study,
on a study made before the name existed (a resumed sweep's), never over a name already set."""

from __future__ import annotations

import optuna
import pytest

from sweeps.engine.searcher import OBJECTIVE, PruneAwareOptunaSearch
from sweeps.engine.trial import METRIC
from sweeps.engine.tuner import MODE


def one_float(trial):
    trial.suggest_float("x", 0.0, 1.0)


def journal(path):
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


def searcher(storage) -> PruneAwareOptunaSearch:
    return PruneAwareOptunaSearch(space=one_float, metric=METRIC, mode=MODE, study_name="s",
                                  storage=storage, experiment="/runs/exp")  # fmt: skip


def names_on_disk(path):
    """The names as a reader that opens the journal afresh (optuna-dashboard) sees them."""
    return optuna.load_study(study_name="s", storage=journal(path)).metric_names


def test_a_new_study_names_its_objective_and_a_completed_trial_is_told_under_it(tmp_path):
    path = tmp_path / "s.journal"
    s = searcher(journal(path))
    s.suggest("a")
    s.on_trial_complete("a", {"epoch": 1, METRIC: 0.5, "finished": True, "best_val_loss": 0.25})
    assert OBJECTIVE == "best_val_loss" and names_on_disk(path) == [OBJECTIVE]
    study = optuna.load_study(study_name="s", storage=journal(path))
    assert study.best_value == 0.25  # the value so named is the best validation loss


@pytest.mark.parametrize("how", ["built", "restored"])
def test_a_study_made_before_the_name_is_named_when_a_resumed_sweep_opens_it(tmp_path, how):
    path = tmp_path / "s.journal"
    old = optuna.create_study(study_name="s", storage=journal(path), direction="minimize")
    old.tell(old.ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0)}), 0.5)
    assert names_on_disk(path) is None  # as an earlier version of the sweep left it
    if how == "built":
        searcher(journal(path))  # the resumed sweep's searcher, on the existing study
    else:  # Tune's pickled searcher (no study in it), restored: it reopens the study
        state = tmp_path / "state.pkl"
        PruneAwareOptunaSearch(metric=METRIC, mode=MODE, study_name="s").save(str(state))
        restored = PruneAwareOptunaSearch(
            metric=METRIC, mode=MODE, study_name="s", storage=journal(path)
        )
        restored.restore(str(state))
    assert names_on_disk(path) == [OBJECTIVE]
    assert len(optuna.load_study(study_name="s", storage=journal(path)).trials) == 1


def test_a_name_already_set_is_kept(tmp_path):
    path = tmp_path / "s.journal"
    study = optuna.create_study(study_name="s", storage=journal(path), direction="minimize")
    study.set_metric_names(["nelbo"])
    searcher(journal(path))
    assert names_on_disk(path) == ["nelbo"]
