"""End to end on a real local Ray instance: a smoke sweep whose configurations train with two
seeds each (--search-seeds 2), its rows' spread, its checkpoints, the winner's re-training, its
trials' replays, and a continuation with another number of seeds refused. The parts:
tests/unit/test_lockstep.py, tests/unit/test_search_seeds.py."""

from __future__ import annotations

import json
import statistics

import pytest
import ray

from results import store
from tests.e2e.test_sweep_journeys import run
from tests.replays import replay
from tests.unit.test_sweep import TINY
from training import checkpoint

pytestmark = pytest.mark.slow


def test_a_sweep_of_two_seeds_per_trial_records_their_mean_and_spread(
    ray_local, tmp_path, monkeypatch, capsys
):
    extra = ["--search-seeds", "2", "--trials", "2", "--winner-seeds", "2"]
    assert run(tmp_path, TINY, monkeypatch, extra=extra) == 0
    every = store.load(str(tmp_path), "trials")
    search = every[every["role"] == "search"]
    assert len(search) == 2 and (search["search_seeds"] == 2).all()
    for r in search.itertuples():
        best = json.loads(r.seed_best_val_losses)
        assert len(best) == 2 and r.val_loss_std >= 0
        folder = store.locate(str(tmp_path), r.checkpoint_path)
        assert "/TrainTrialSeeds2_" in folder
        history = json.loads(open(f"{folder}/{checkpoint.HISTORY_FILE}").read())
        for h in history:  # the trial's value is the mean of its two seeds'
            assert h["val_loss"] == pytest.approx(statistics.fmean(h["seed_val_losses"]))
        assert min(h["val_loss"] for h in history) == r.best_val_loss
        assert [min(h["seed_val_losses"][i] for h in history) for i in (0, 1)] == best
        state = checkpoint.load(f"{folder}/seed-1", "cpu")  # the second seed's model too
        assert state["train_state"]["epoch"] == r.epochs
    # The winner (its first seed's model evaluated) trained again with the next seed, one seed.
    again = every[every["role"] == "seed"]
    winner = search[search["trial_id"] == again.iloc[0]["seed_of"]].iloc[0]
    assert len(again) == 1 and again.iloc[0]["search_seeds"] == 1
    assert again.iloc[0]["seed"] == winner["seed"] + 1
    evals = store.load(str(tmp_path), "evaluations")
    assert set(evals["trial_id"]) == {winner["trial_id"], again.iloc[0]["trial_id"]}
    capsys.readouterr()
    for r in search.itertuples():  # a trial of two seeds replays as it ran: both, in lockstep
        code, out, err = replay(capsys, "--storage", str(tmp_path), "--trial", r.trial_id)
        assert code == 0 and f"replaying {r.epochs} on cpu, 2 seeds" in out, out + err
        assert out.splitlines()[-1].startswith("identical: every metric of every epoch")

    ray.shutdown()  # the refusal comes before Ray starts
    code = run(tmp_path, TINY, monkeypatch, extra=["--resume", "--search-seeds", "3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ")
    assert "was started with --search-seeds 2, not 3" in err[0]
    assert not ray.is_initialized()
