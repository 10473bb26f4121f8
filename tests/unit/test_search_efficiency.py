"""benchmarks/search_efficiency.py's analysis: what a search paid to reach a target, from rows."""

import math

import pandas as pd
import pytest

from benchmarks.search_efficiency import cost_to_target, target_loss, totals


def rows(*trials, cpu_seconds=None) -> pd.DataFrame:
    """Trials as (trial_id, status, best_val_loss, wall_seconds, gpu_seconds, started, ended)."""
    cols = ["trial_id", "status", "best_val_loss", "wall_seconds", "gpu_seconds",
            "started_at", "ended_at"]  # fmt: skip
    df = pd.DataFrame([dict(zip(cols, t, strict=True)) for t in trials])
    if cpu_seconds is not None:
        df["cpu_seconds"] = cpu_seconds
    return df


# Listed out of order: the analysis takes trials in order of ended_at.
SEARCH = rows(
    ("c", "completed", -90.0, 300.0, 0.0, 100.0, 400.0),
    ("a", "completed", -80.0, 100.0, 0.0, 0.0, 100.0),
    ("b", "pruned", -500.0, 50.0, 0.0, 0.0, 150.0),  # pruned: its loss never counts
    ("d", "errored", math.nan, 20.0, 0.0, 150.0, 170.0),
    ("e", "completed", -101.0, 200.0, 0.0, 170.0, 600.0),
)


def test_the_target_is_the_best_completed_loss_of_the_grid():
    assert target_loss(SEARCH) == -101.0
    with pytest.raises(ValueError, match="no completed"):
        target_loss(SEARCH[SEARCH["status"] != "completed"])


def test_cost_counts_every_trial_ended_until_the_best_so_far_reaches_the_target():
    # Order a(100) b(150) d(170) c(400) e(600); best completed so far -80, -80, -80, -90, -101.
    exact = cost_to_target(SEARCH, target=-100.0, cpus_per_trial=2.0)
    assert exact["reached"] and exact["trials"] == 5 and exact["best"] == -101.0
    assert exact["cpu_hours"] == pytest.approx(2 * (100 + 50 + 20 + 300 + 200) / 3600)
    assert exact["elapsed_s"] == 600.0
    # 10% of |-100| above it: -90 reaches it at the fourth trial ended, c.
    loose = cost_to_target(SEARCH, target=-100.0, tolerance=0.1, cpus_per_trial=2.0)
    assert loose["trials"] == 4
    assert loose["cpu_hours"] == pytest.approx(2 * (100 + 50 + 20 + 300) / 3600)
    assert loose["elapsed_s"] == 400.0


def test_a_target_never_reached_reports_the_best_completed_loss_not_a_pruned_one():
    missed = cost_to_target(SEARCH, target=-200.0)
    assert not missed["reached"] and missed["trials"] is None and missed["best"] == -101.0


def test_cpu_seconds_from_the_store_win_over_wall_times_resources():
    search = SEARCH.assign(gpu_seconds=SEARCH["wall_seconds"] * 0.5)
    search["cpu_seconds"] = [3.0, 1.0, 1.0, 1.0, math.nan]  # a row without: wall x cpus
    r = cost_to_target(search, target=-101.0, cpus_per_trial=4.0)
    assert r["cpu_hours"] == pytest.approx((3 + 1 + 1 + 1 + 4 * 200) / 3600)
    assert r["gpu_hours"] == pytest.approx(0.5 * 670 / 3600)
    whole = totals(search, cpus_per_trial=4.0)
    assert (whole["trials"], whole["completed"], whole["pruned"], whole["errored"]) == (5, 3, 1, 1)
    assert whole["cpu_hours"] == r["cpu_hours"] and whole["best"] == -101.0


def test_a_winners_retrainings_with_other_seeds_are_no_part_of_the_search():
    retrained = rows(("z", "completed", -300.0, 900.0, 0.0, 600.0, 1500.0)).assign(role="seed")
    search = pd.concat([SEARCH.assign(role="search"), retrained], ignore_index=True)
    assert target_loss(search) == -101.0
    assert totals(search)["trials"] == 5 and totals(search)["cpu_hours"] == 670 / 3600
    assert cost_to_target(search, target=-300.0)["reached"] is False
