"""A trial whose reused actor is lost while it starts is retried, not errored
(sweeps.engine.tune_record.retry_lost_reused_actors), on real Tune and Ray.

Tune gives a new trial a finished trial's actor (reuse_actors) and resets it while the trial is
PENDING; Tune itself retries only RUNNING trials. The actor's process here ends itself in its
first reset, as a node's loss ends it: the trial must run again in a new actor and complete,
with one failure counted.
"""

from __future__ import annotations

import os
from pathlib import Path

from ray import tune

from sweeps.engine import tune_record


class EndsInItsFirstReset(tune.Trainable):
    """Two epochs of nothing; the first reset_config of the run ends the worker process."""

    def setup(self, config: dict) -> None:
        self.epoch = 0

    def step(self) -> dict:
        self.epoch += 1
        return {"epoch": self.epoch, "val_loss": 1.0, "done": self.epoch >= 2}

    def reset_config(self, new_config: dict) -> bool:
        marker = Path(new_config["marker"])
        if not marker.exists():
            marker.write_text("the actor's process ended in its reset\n")
            os._exit(1)  # the actor is lost, as with its node
        self.epoch = 0
        return True


class EndsInItsSecondTrialsFirstEpoch(EndsInItsFirstReset):
    """The process running the trial with x=2 ends in that trial's first epoch, once."""

    def setup(self, config: dict) -> None:
        self.epoch, self.x, self.marker = 0, config["x"], Path(config["marker"])

    def step(self) -> dict:
        if self.x == 2 and not self.marker.exists():
            self.marker.write_text("the actor's process ended while its trial ran\n")
            os._exit(1)
        return super().step()

    def reset_config(self, new_config: dict) -> bool:
        self.setup(new_config)
        return True


def run(tmp_path: Path, scheduler, trainable=EndsInItsFirstReset) -> tune.ResultGrid:
    tuner = tune.Tuner(
        trainable,
        param_space={"marker": str(tmp_path / "marker"), "x": tune.grid_search([1, 2, 3])},
        tune_config=tune.TuneConfig(
            scheduler=scheduler, max_concurrent_trials=1, reuse_actors=True
        ),
        run_config=tune.RunConfig(
            storage_path=str(tmp_path / "ray"), name="lost",
            failure_config=tune.FailureConfig(max_failures=2), verbose=0,
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False),  # none to save
        ),  # fmt: skip
    )
    return tuner.fit()


def test_a_trial_whose_reused_actor_is_lost_while_it_starts_is_retried(ray_local, tmp_path):
    grid = run(tmp_path, tune_record.FIFO())
    assert (tmp_path / "marker").exists()  # an actor was lost in its reset
    assert not grid.errors
    assert sorted(r.metrics["config"]["x"] for r in grid) == [1, 2, 3]
    assert all(r.metrics["epoch"] == 2 for r in grid)
    failures = sorted(t.num_failures for t in grid._experiment_analysis.trials)
    assert failures == [0, 0, 1]  # the retried trial counts its failure


def test_without_it_tune_errors_that_trial(ray_local, tmp_path):
    """The case the fix exists for: Tune's own FIFO scheduler errors the trial."""
    from ray.tune.schedulers import FIFOScheduler

    grid = run(tmp_path, FIFOScheduler())
    assert (tmp_path / "marker").exists()
    assert len(grid.errors) == 1


def test_a_trial_whose_actor_is_lost_while_it_runs_is_retried(ray_local, tmp_path):
    grid = run(tmp_path, tune_record.FIFO(), EndsInItsSecondTrialsFirstEpoch)
    assert (tmp_path / "marker").exists()
    assert not grid.errors
    assert sorted(r.metrics["config"]["x"] for r in grid) == [1, 2, 3]
    failures = sorted(t.num_failures for t in grid._experiment_analysis.trials)
    assert failures == [0, 0, 1]
