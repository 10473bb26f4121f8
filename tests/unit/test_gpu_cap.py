"""--max-gpu-hours (sweeps.engine.gpu_cap): its arithmetic read from real small storages (Parquet
rows, a cell record, Tune's experiment state in its on-disk format), the refusal a cell leaves
for the driver, the driver's Watch, and the flag's checks. The cap binding in a real sweep:
tests/e2e/test_gpu_cap.py."""

from __future__ import annotations

import math
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from results import store
from sweeps import vlae
from sweeps.engine import cli, gpu_cap
from sweeps.engine.cost import epoch_images
from sweeps.engine.gpu_cap import Cap, Reading
from tests.unit.test_console import CELL, trial_row, tune_state

HOUR = 3600.0


@pytest.fixture
def storage(tmp_path):
    """CELL at 0.5 GPU a trial, max 3 epochs: rows of a (3 epochs) and b (1), 36 s each, and an
    evaluation of 7.2 GPU-s; Tune: a ended, b still RUNNING in its last save (its row says it
    ended), c RUNNING at epoch 1 after 5 s, d RUNNING with no epoch yet."""
    s = str(tmp_path / "sweep")
    store.write_cell_record(s, CELL.name, {"trials": 6, "resources": {"cpu": 1, "gpu": 0.5},
                                           "base_config": {"train/max_epochs": 3}})  # fmt: skip
    rows = [trial_row("a", "completed", -150.5, 3, gpus=0.5),
            trial_row("b", "pruned", -120.0, 1, gpus=0.5)]  # fmt: skip
    store.write(s, "trials", CELL.name, "ab", rows)
    evaluation = {"sweep": CELL.name, "trial_id": "a", "seed": 0, "k": 5,
                  "test_log_likelihood": -150.0, "cpu_seconds": 72.0,
                  "gpu_seconds": 7.2}  # fmt: skip
    store.write(s, "evaluations", CELL.name, "a", [evaluation])
    now = time.time()
    tune_state(s, [("a", "TERMINATED", 3, 15.0, now), ("b", "RUNNING", 1, 5.0, now),
                   ("c", "RUNNING", 1, 5.0, now), ("d", "RUNNING", 0, 0.0, now)])  # fmt: skip
    return s


def cap(storage: str, hours: float) -> Cap:
    return Cap(hours, storage, gpus=0.5, max_epochs=3, assumed_epoch_s=100.0)


def test_spent_committed_and_next_are_read_from_the_rows_and_tunes_records(storage):
    assert gpu_cap.spent_hours(storage) == pytest.approx((18 + 18 + 7.2) / HOUR)
    # c: 0.5 GPU x (its 5 s so far + 5 s x (3 - 1) epochs); d: 0.5 x the cell's 25 s / 5 epochs
    # x 3; a and b have rows (their time is spent)
    assert gpu_cap.committed_hours(storage, 100.0, {"a", "b"}) == pytest.approx(15.0 / HOUR)
    # a trial Tune ended whose row is not written yet counts whole: a's 15 s, at 0.5 GPU
    assert gpu_cap.committed_hours(storage, 100.0, {"b"}) == pytest.approx(22.5 / HOUR)
    # "z" given out here and not in Tune's records yet counts; "c" is counted once
    r = gpu_cap.reading(cap(storage, 1.0), CELL.name, {"z": 0.25, "c": 9.0})
    assert r.spent == pytest.approx(43.2 / HOUR)
    assert r.committed == pytest.approx(15.0 / HOUR + 0.25)
    assert r.next == pytest.approx(0.5 * 5 * 3 / HOUR)  # the cell's measured epoch, not 100 s


def test_a_cell_with_nothing_measured_assumes_the_estimates_epoch(tmp_path):
    s = str(tmp_path)
    r = gpu_cap.reading(cap(s, 1.0), CELL.name, {})
    assert (r.spent, r.committed, r.next) == (0.0, 0.0, pytest.approx(0.5 * 100 * 3 / HOUR))
    base = CELL.base_config(vlae.BUDGETS["smoke"])
    assumed = gpu_cap.cap_for(2.0, s, CELL.dataset, base, 1.0)
    seconds, images, _ = gpu_cap.REFERENCE_EPOCH
    epoch = epoch_images(CELL.dataset, base)  # the smoke budget's batches of an epoch
    assert assumed.assumed_epoch_s == pytest.approx(seconds / images * epoch)
    assert assumed.max_epochs == base["train/max_epochs"]
    assert gpu_cap.cap_for(None, s, CELL.dataset, base, 1.0) is None


@given(st.floats(0.0, 10.0), st.floats(0.0, 10.0), st.floats(0.0, 10.0), st.floats(1e-3, 30.0))
def test_a_trial_passes_the_cap_exactly_when_the_three_sum_over_it(spent, committed, nxt, hours):
    assert Reading(spent, committed, nxt).passes(hours) == (spent + committed + nxt > hours)


def test_a_capped_idle_cell_leaves_its_reading_and_the_watch_stops_the_driver(storage):
    # spent 43.2 + committed 15 + next 7.5 GPU-s: 65.7 fits a cap of 66 s, not one of 64 s
    gpu_cap.arm(CELL.name, cap(storage, 66 / HOUR))
    assert gpu_cap.allows(CELL.name, "e", running=1)  # given out: now committed, 7.5 s
    gpu_cap.started(CELL.name, "e")  # it had a slot too, and its configuration
    assert not gpu_cap.allows(CELL.name, "f", running=1)  # with e, 73.2 s would pass 66
    assert gpu_cap.capped_idle(storage, CELL.name) is None  # a trial of its own still runs
    # e ended (the searcher says so: running 0), its row not written yet: not idle, no stop
    assert not gpu_cap.allows(CELL.name, "f", running=0)
    assert gpu_cap.capped_idle(storage, CELL.name) is None
    store.write(storage, "trials", CELL.name, "e", [trial_row("e", "pruned", -110.0, 1, gpus=0.5)])
    try:
        with pytest.raises(KeyboardInterrupt):
            with gpu_cap.Watch(storage, 66 / HOUR) as watch:
                watch.pending = {CELL.name}
                assert not gpu_cap.allows(CELL.name, "g", running=0)
                left = gpu_cap.capped_idle(storage, CELL.name)
                assert left is not None and left.spent == pytest.approx((43.2 + 18) / HOUR)
                for _ in range(600):  # the watch looks every second
                    time.sleep(0.1)
    finally:
        gpu_cap.arm(CELL.name, None)
    assert watch.stopped == left
    assert watch.line().startswith(
        f"stopped: the next trial would pass --max-gpu-hours {66 / HOUR:g} (spent 0.017 GPU-h, "
    )
    assert "--resume and a higher --max-gpu-hours" in watch.line()
    assert max(len(line) for line in watch.line().splitlines()) <= 150
    assert gpu_cap.allows("not-armed", "h", running=0)  # no cap: every trial starts


def test_the_start_says_when_the_cap_never_binds():
    assert gpu_cap.start_line(None, 1.0) is None
    note = gpu_cap.start_line(10.0, 0.0)
    assert note.startswith("note: --max-gpu-hours 10 never binds: the trials hold no GPU")
    assert gpu_cap.start_line(10.0, 0.5).startswith("== at most 10 GPU-hours (--max-gpu-hours)")


@pytest.mark.parametrize("hours", ["0", "-1", "nan", "inf"])
def test_a_cap_not_above_zero_is_one_error_line_before_anything(hours, tmp_path, capsys):
    storage = tmp_path / "not-there"
    argv = ["--storage", str(storage), "--max-gpu-hours", hours]
    assert cli.main("vlae", vlae.CELLS, vlae.BUDGETS, vlae.DEFAULT_DATASETS, argv=argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --max-gpu-hours must be a number")
    assert not storage.exists()
    s = cli.parse_args(["--max-gpu-hours", "2.5"], "vlae", vlae.CELLS, vlae.BUDGETS,
                       vlae.DEFAULT_DATASETS)  # fmt: skip
    assert s.max_gpu_hours == 2.5 and not math.isnan(s.max_gpu_hours)


def test_a_process_that_ran_a_sweep_before_counts_none_of_its_trials(storage, tmp_path):
    """A notebook (or the test process) that ran a capped sweep of the same cell elsewhere: that
    one's trials are neither committed here nor awaited as rows (CI met it: the unit test after
    the e2e one never saw its cell idle)."""
    elsewhere = str(tmp_path / "elsewhere")
    gpu_cap.arm(CELL.name, cap(elsewhere, 1.0))
    assert gpu_cap.allows(CELL.name, "old", running=0)
    gpu_cap.started(CELL.name, "old")  # it never wrote a row here
    try:
        gpu_cap.arm(CELL.name, cap(storage, 66 / HOUR))
        assert gpu_cap.unwritten(storage, CELL.name) == set()
        assert gpu_cap.allows(CELL.name, "e", running=0)  # 65.7 GPU-s fits 66: "old" not in it
    finally:
        gpu_cap.arm(CELL.name, None)
