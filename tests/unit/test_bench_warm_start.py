"""benchmarks/warm_start.py's analysis: best losses by core-hours spent, fresh re-trainings."""

import argparse
import json
import math

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.warm_start import (
    ahead,
    best_within,
    cold_and_warm,
    markdown,
    retrained,
    sweep_command,
    winner_config,
)


def rows(*trials) -> pd.DataFrame:
    """Search trials as (trial_id, status, best_val_loss, cpu_seconds, ended_at)."""
    cols = ["trial_id", "status", "best_val_loss", "cpu_seconds", "ended_at"]
    df = pd.DataFrame([dict(zip(cols, t, strict=True)) for t in trials])
    return df.assign(wall_seconds=df["cpu_seconds"], gpu_seconds=0.0, started_at=0.0)


# Listed out of order: trials are taken in order of ended_at. Spent: a 360 s, b 720, c 1080,
# d 1440 (0.1, 0.2, 0.3, 0.4 core-h).
COLD = rows(
    ("c", "completed", -90.0, 360.0, 30.0),
    ("a", "completed", -80.0, 360.0, 10.0),
    ("b", "pruned", -500.0, 360.0, 20.0),  # a pruned trial's loss never counts; its cost does
    ("d", "completed", -95.0, 360.0, 40.0),
)


def test_the_best_counts_only_completed_trials_ended_within_the_hours():
    assert math.isnan(best_within(COLD, 0.05))
    assert best_within(COLD, 0.1) == -80.0
    assert best_within(COLD, 0.25) == -80.0  # b pruned
    assert best_within(COLD, 0.3) == -90.0
    assert best_within(COLD, 10.0) == -95.0


def test_the_marks_are_shares_of_the_cold_searchs_whole_cost():
    warm = rows(("q", "completed", -99.0, 360.0, 5.0), ("r", "completed", -120.0, 2000.0, 9.0))
    marks = cold_and_warm(COLD, warm, fractions=(0.25, 0.5, 1.0))
    assert marks[0.25] == (pytest.approx(0.1), -80.0, -99.0)
    assert marks[0.5] == (pytest.approx(0.2), -80.0, -99.0)
    # r ended past the cold search's whole 0.4 core-h: the warm search is judged without it
    assert marks[1.0] == (pytest.approx(0.4), -95.0, -99.0)


def test_warm_is_ahead_with_a_lower_loss_or_the_only_one():
    assert ahead(-80.0, -90.0) and not ahead(-90.0, -80.0) and not ahead(-80.0, -80.0)
    assert ahead(math.nan, -1.0) and not ahead(-1.0, math.nan) and not ahead(math.nan, math.nan)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["completed", "pruned", "errored"]),
            st.floats(-1e3, 1e3),
            st.floats(1.0, 1e4),
        ),
        min_size=1,
        max_size=12,
    ),
    st.floats(0.0, 20.0),
    st.floats(0.0, 20.0),
)
def test_the_best_never_worsens_with_more_hours_and_ends_at_the_completed_minimum(t, h1, h2):
    search = rows(*((str(i), s, v, c, float(i)) for i, (s, v, c) in enumerate(t)))
    lo, hi = sorted((h1, h2))
    a, b = best_within(search, lo), best_within(search, hi)
    assert math.isnan(a) or b <= a
    done = [v for s, v, _ in t if s == "completed"]
    whole = best_within(search, sum(c for *_, c in t) / 3600)
    assert (math.isnan(whole) and not done) or whole == min(done)


SOURCES = json.dumps({"train/seed": "default", "train/lr": "search", "train/patience": "budget"})


def config(seed: int, lr: float) -> tuple[str, str]:
    """A row's config_json and key_sources."""
    return json.dumps({"train/seed": seed, "train/lr": lr, "train/patience": 3}), SOURCES


def search_with_winner(winner_seed: int = 0) -> pd.DataFrame:
    """A winner w (train/seed ``winner_seed``) re-trained with the next three seeds."""
    base = [("w", "search", None, winner_seed, -100.0, *config(winner_seed, 1e-3)),
            ("x", "search", None, winner_seed, -90.0, *config(winner_seed, 1e-2))]  # fmt: skip
    base += [(f"r{i}", "seed", "w", winner_seed + i, -100.0 + i, *config(winner_seed + i, 1e-3))
             for i in (1, 2, 3)]  # fmt: skip
    cols = ["trial_id", "role", "seed_of", "seed", "best_val_loss", "config_json", "key_sources"]
    return pd.DataFrame([dict(zip(cols, r, strict=True)) for r in base])


def test_only_the_seeds_neither_search_trained_on_are_compared():
    evaluations = pd.DataFrame({"trial_id": ["w", "r1", "r2", "r3", "r3"],
                                "test_log_likelihood": [9.0, 8.0, 7.0, 6.0, 4.0]})  # fmt: skip
    fresh = retrained(search_with_winner(5), evaluations, skip=2)
    assert list(fresh["seed"]) == [7, 8]
    assert list(fresh["best_val_loss"]) == [-98.0, -97.0]
    assert list(fresh["test_ll"]) == [7.0, 5.0]  # r3's two evaluations, averaged
    assert list(retrained(search_with_winner(), evaluations, skip=1)["seed"]) == [1, 2, 3]


def test_a_retraining_without_evaluation_reads_nan_and_no_retraining_reads_empty():
    fresh = retrained(search_with_winner(), pd.DataFrame(), skip=2)
    assert len(fresh) == 2 and fresh["test_ll"].isna().all()
    only_search = search_with_winner().query("role == 'search'")
    assert retrained(only_search, pd.DataFrame(), skip=2).empty


def test_the_winners_configuration_is_its_searched_keys():
    assert winner_config(search_with_winner(4)) == {"train/lr": 1e-3}
    assert winner_config(search_with_winner().query("role == 'search'")) == {}


def test_a_table_in_markdown_has_its_index_first():
    df = pd.DataFrame({"a": [1, 2]}, index=pd.Index([0, 1], name="seed"))
    assert markdown(df).splitlines() == ["| seed | a |", "|---|---|", "| 0 | 1 |", "| 1 | 2 |"]


def test_each_search_is_the_sweep_its_part_needs():
    args = argparse.Namespace(storage_root="/r", cpus_per_trial=1.0, address=None, trials=24,
                              max_epochs=10, winner_seeds=4)  # fmt: skip
    pilot = sweep_command(args, "pilot")
    assert "--trials" not in pilot and pilot[-2:] == ["--winner-seeds", "1"]
    cold, warm, two = (sweep_command(args, f"{k}-s2") for k in ("cold", "warm", "two"))
    for cmd in (cold, warm, two):
        assert cmd[cmd.index("--seed") + 1] == "2" and cmd[cmd.index("--trials") + 1] == "24"
        assert "train/max_epochs=10" in cmd
    assert "--warm-start" not in cold and "--search-seeds" not in cold
    assert warm[warm.index("--warm-start") + 1] == "/r/pilot"
    assert warm[warm.index("--winner-seeds") + 1] == "1"
    assert (
        two[two.index("--search-seeds") + 1] == "2" and two[two.index("--winner-seeds") + 1] == "4"
    )
