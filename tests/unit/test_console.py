"""The sweep's console (sweeps.engine.console, sweeps.engine.summary): progress lines and the
closing summary read from real small storages (Parquet rows, a cell record, Tune's experiment
state in its on-disk format), their ETA arithmetic, their width, and the thread that prints
them."""

from __future__ import annotations

import io
import json
import logging
import math
import os
import re
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from results import store
from sweeps import vlae
from sweeps.engine import console
from sweeps.engine.console import CellState, duration, eta_seconds, left_epochs
from sweeps.engine.summary import resume_command, summary_lines

REPO = Path(__file__).resolve().parents[2]

CELL = next(c for c in vlae.CELLS if c.name == "vlae-vae-fashion_mnist-gaussian")
OTHER = next(c for c in vlae.CELLS if c.name != CELL.name and c.dataset == "fashion_mnist")
ANSI = re.compile(r"\x1b\[")


def trial_row(trial_id, status, best, epochs, role="search", gpus=0.0, cpus=1.0, wall=36.0):
    return {
        "sweep": CELL.name, "paper": "vlae", "family": "vae", "dataset": "fashion_mnist",
        "likelihood": "gaussian", "variant": "-", "protocol": "project", "trial_id": trial_id,
        "role": role, "seed_of": "", "status": status, "reason": "", "best_val_loss": best,
        "epochs": epochs, "wall_seconds": wall, "gpu_seconds": wall * gpus,
        "cpu_seconds": wall * cpus,
    }  # fmt: skip


def tune_state(storage, trials: list[tuple[str, str, int, float, float]]) -> None:
    """Tune's experiment state of CELL: (trial id, status, epoch, seconds, start time) each."""
    folder = store.filesystem(storage)[1] + f"/ray/{CELL.name}"
    data = [
        [
            json.dumps({"trial_id": t, "status": s, "relative_logdir": f"TrainTrial_{t}"}),
            json.dumps({"start_time": start, "num_failures": 0,
                        "last_result": {"epoch": e, "time_total_s": secs}}),  # fmt: skip
        ]
        for t, s, e, secs, start in trials
    ]
    os.makedirs(folder, exist_ok=True)
    with open(f"{folder}/experiment_state-2026-01-01_00-00-00.json", "w") as f:
        json.dump({"trial_data": data, "runner_data": {}, "stats": {}}, f)


@pytest.fixture
def storage(tmp_path):
    """CELL in progress: target 4, max 3 epochs; 2 trials ended (a completed one of 3 epochs,
    a pruned one of 1), one running at epoch 1; 5 s an epoch; its first trial 100 s ago."""
    s = str(tmp_path)
    store.write_cell_record(s, CELL.name, {"trials": 4, "base_config": {"train/max_epochs": 3}})
    rows = [trial_row("a", "completed", -150.5, 3), trial_row("b", "pruned", -120.0, 1)]
    store.write(s, "trials", CELL.name, "ab", rows)
    now = time.time()
    tune_state(s, [("a", "TERMINATED", 3, 15.0, now - 100), ("b", "TERMINATED", 1, 5.0, now - 99),
                   ("c", "RUNNING", 1, 5.0, now - 50)])  # fmt: skip
    return s


def test_left_epochs_counts_waiting_trials_at_the_ended_ones_mean():
    # 4 trials: two ended after 3 and 1 epochs (mean 2), one running at epoch 1 -> 1 more,
    # one not started -> 2: 3 epochs left.
    assert left_epochs(4, [3, 1], [1], 3) == 3.0
    assert left_epochs(4, [], [], 3) == 12.0  # nothing ended: every trial to max_epochs
    assert left_epochs(2, [3, 1], [], 3) == 0.0  # all ended
    assert left_epochs(3, [1, 1], [2], 3) == 1.0  # past the mean: at least one epoch more
    assert eta_seconds(3.0, 5.0, 1) == 15.0 and eta_seconds(3.0, 5.0, 3) == 5.0
    assert eta_seconds(3.0, None, 2) is None and eta_seconds(None, 5.0, 2) is None


@given(
    target=st.integers(0, 50),
    ended=st.lists(st.integers(0, 20), max_size=20),
    running=st.lists(st.integers(0, 20), max_size=8),
)
def test_left_epochs_is_never_negative_and_zero_once_every_trial_has_ended(target, ended, running):
    max_epochs = 20
    left = left_epochs(target, ended, running, max_epochs)
    assert left >= 0
    if not running and len(ended) >= target:
        assert left == 0
    assert left <= max(target, len(ended) + len(running)) * max_epochs


def test_durations_read_as_people_write_them():
    assert [duration(s) for s in (None, math.nan, 0, 59.4, 61, 3599, 3600 * 2 + 180, 90000)] == [
        "-", "-", "0s", "59s", "1m01s", "59m59s", "2h03m", "1d01h"
    ]  # fmt: skip


def test_a_cells_state_comes_from_its_storage(storage):
    (state,) = console.cell_states(storage, [CELL])
    assert (state.completed, state.pruned, state.errored, state.target) == (1, 1, 0, 4)
    assert state.best == -150.5 and state.state == "in progress"
    assert state.left_epochs == 3.0 and state.epoch_s == pytest.approx(25.0 / 5)
    assert 99 < state.elapsed_s < 200
    line = console.cell_line(state, at_once=2)
    assert "2/4 trials (1 completed, 1 pruned, 0 errored)" in line and "best -150.50" in line
    assert "1m4" in line  # 100 s and a little since its first trial started
    # one trial running (Optuna's study is absent here: Tune's record says RUNNING)
    assert state.running == 1 and line.endswith("ETA 15s")


def test_a_cell_with_no_epoch_yet_says_when_its_eta_comes(tmp_path):
    s = str(tmp_path)
    store.write_cell_record(s, CELL.name, {"trials": 4, "base_config": {"train/max_epochs": 3}})
    tune_state(s, [("a", "RUNNING", 0, 0.0, time.time())])
    states = console.cell_states(s, [CELL, OTHER])
    assert [c.state for c in states] == ["in progress", "not started"]
    lines = console.progress_lines(states, 5.0, at_once=2)
    assert len(lines) == 2  # the sweep's line, then the one cell that moves
    assert "1 in progress, 1 not started; ETA: after the first epoch" in lines[0]
    assert lines[1].endswith("ETA after the first epoch")


def test_the_sweeps_eta_shares_the_trial_slots_between_its_cells():
    def cell(name, left, epoch_s, state="in progress"):
        return CellState(name, state, 0, 0, 0, 1, 4, math.nan, 10.0, left, epoch_s)

    states = [cell("a", 6.0, 4.0), cell("b", 4.0, 6.0), cell("c", 0.0, 2.0, state="done")]
    line = console.sweep_line(states, 30.0, at_once=2)
    # 10 epochs left at a mean 4 s an epoch, 2 at a time: 20 s
    assert "30s elapsed; cells: 1 done, 2 in progress, 0 not started; ETA 20s" in line
    assert "ETA: the cells' trials have ended" in console.sweep_line(states[2:], 1.0, 2)
    # a cell with no epoch measured yet: at the timed cells' mean epoch (3 s), and it says so
    states[1] = cell("b", 4.0, None)
    line = console.sweep_line(states, 30.0, at_once=2)
    assert line.endswith("ETA 15s (search trials only, 2 at a time; 1 untimed cells at the mean "
                         "epoch)")  # fmt: skip


@given(name=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=200),
       counts=st.lists(st.integers(0, 10**6), min_size=5, max_size=5),
       best=st.floats(allow_nan=True, allow_infinity=False, width=32),
       seconds=st.one_of(st.none(), st.floats(0, 1e9)))  # fmt: skip
def test_no_progress_line_is_wider_than_150_characters(name, counts, best, seconds):
    c = CellState(name, "in progress", *counts[:4], counts[4], best, seconds, seconds, seconds)
    for line in [console.cell_line(c, 3), *console.progress_lines([c], 1e7, 3)]:
        assert len(line) <= console.WIDTH and not ANSI.search(line) and "\n" not in line


def test_the_progress_thread_prints_plain_lines_and_stops(storage, monkeypatch):
    monkeypatch.setenv("VAE_PROGRESS_SECONDS", "0.05")
    out = io.StringIO()  # not a terminal
    with console.Progress(storage, [CELL], None, at_once=2, out=out) as p:
        deadline = time.monotonic() + 30
        while out.getvalue().count("\n") < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert not p._thread.is_alive()
    text = out.getvalue()
    assert text.startswith("-- ") and CELL.name in text and not ANSI.search(text)
    assert all(len(line) <= console.WIDTH for line in text.splitlines())


def test_an_error_in_the_progress_thread_is_one_warning_and_the_sweep_goes_on(
    tmp_path, capsys
):
    s = str(tmp_path)
    store.write_cell_record(s, CELL.name, {"trials": 4})
    (tmp_path / "cells" / f"{CELL.name}.json").write_text("{not json")  # damaged: it raises
    p = console.Progress(s, [CELL], None, at_once=1, every_s=0.01)
    p.start()
    p._thread.join(timeout=30)  # it ends itself after the warning
    assert not p._thread.is_alive()
    p.stop()  # still fine to call
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("warning: progress lines stopped: ")


def test_quiet_keeps_ray_and_optuna_to_warnings_unless_verbose(monkeypatch):
    import optuna

    monkeypatch.delenv("RAY_AIR_NEW_OUTPUT", raising=False)
    levels = {n: logging.getLogger(n).level for n in console.NOISY_LOGGERS}
    before = optuna.logging.get_verbosity()
    try:
        console.quiet(verbose=True)
        assert "RAY_AIR_NEW_OUTPUT" not in os.environ
        assert {n: logging.getLogger(n).level for n in console.NOISY_LOGGERS} == levels
        console.quiet(verbose=False)
        assert os.environ["RAY_AIR_NEW_OUTPUT"] == "0"
        assert all(logging.getLogger(n).level == logging.WARNING for n in console.NOISY_LOGGERS)
        assert optuna.logging.get_verbosity() == optuna.logging.WARNING
        assert (console.tune_verbosity(True), console.tune_verbosity(False)) == (1, 0)
    finally:
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)
        optuna.logging.set_verbosity(before)


def test_the_summary_says_time_trials_cost_places_and_next_commands(storage):
    s = storage
    store.write(s, "trials", CELL.name, "seed", [trial_row("d", "completed", -149.0, 3,
                                                           role="seed", gpus=0.5)])  # fmt: skip
    evaluation = {"sweep": CELL.name, "trial_id": "a", "seed": 0, "k": 5,
                  "test_log_likelihood": -150.0, "cpu_seconds": 72.0,
                  "gpu_seconds": 0.0}  # fmt: skip
    store.write(s, "evaluations", CELL.name, "a", [evaluation])
    argv = ["sweeps/vlae.py", "--storage", s, "--families", "vae"]
    lines = summary_lines(s, "vlae", [CELL], 125.0, argv, logs="/tmp/ray/session_x/logs")
    assert lines[0] == (
        "== sweep ended in 2m05s: 1 cell, 2 search trials (1 completed, 1 pruned, 0 errored), "
        "1 winner re-trainings, 1 test evaluation"
    )
    # CPU: 3 trials x 36 core-s + 72 core-s of evaluation = 180 core-s; GPU: 18 GPU-s
    assert lines[1].startswith("   cost: 0.005 GPU-hours, 0.05 CPU core-hours")
    assert lines[2] == f"   tables: {s}/tables/ (vlae.md, vlae.tex, vlae.csv)"
    assert lines[3].startswith(f"   report: {s}/report/vlae.html ")
    assert lines[4:6] == [f"   logs: Tune's under {s}/ray/<cell>/",
                          "         Ray's under /tmp/ray/session_x/logs"]  # fmt: skip
    assert lines[6:8] == [f"   next: python -m results report vlae --storage {s}",
                          f"         python -m results table vlae --storage {s}"]  # fmt: skip
    # the cell is unfinished (Tune's record has a trial running): --resume is the next step
    assert lines[8:] == [f"         python sweeps/vlae.py --storage {s} --families vae --resume"
                         "  (1 cell unfinished)"]  # fmt: skip
    assert all(len(line) <= console.WIDTH and not ANSI.search(line) for line in lines)


def test_the_resume_command_is_the_sweeps_own_with_resume_once():
    assert resume_command(["sweeps/vlae.py", "--storage", "a b", "--resume"]) == (
        "python sweeps/vlae.py --storage 'a b' --resume"
    )


def test_rays_token_notice_is_quiet_but_its_warning_of_no_token_shows():
    import logging

    from sweeps.engine.console import TOKEN_LOGGER, quiet

    quiet(False)
    logger = logging.getLogger(TOKEN_LOGGER)

    def shown(message: str) -> bool:
        return logger.filter(logging.LogRecord(TOKEN_LOGGER, logging.WARNING, "", 0, message,
                                               None, None))  # fmt: skip

    assert not shown("Token authentication is enabled for this Ray cluster. Set ...")
    assert shown("Token authentication is disabled for this Ray cluster. Anyone with ...")


def test_a_failed_copy_of_tunes_state_is_one_warning_line_without_its_traceback():
    """Tune logs an ERROR with a traceback when its background copy of an experiment's state
    fails (a file of it replaced during the copy); quiet, it is one line naming the cell."""
    from sweeps.engine.console import STATE_LOGGER, quiet

    quiet(False)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger(STATE_LOGGER)
    logger.addHandler(handler)
    try:
        try:
            raise FileNotFoundError("[Errno 2] Failed to open local file '.x-tmp-searcher'")
        except FileNotFoundError:
            logger.error("Saving experiment state to storage at '/s/ray/vlae-vae-fashion_mnist-"
                         "gaussian' failed with exception: ", exc_info=True)  # fmt: skip
        logger.error("another error")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines == ["warning: vlae-vae-fashion_mnist-gaussian: Tune's state not copied to the "
                     "storage this time (FileNotFoundError); its next save copies it",
                     "another error"]  # fmt: skip
    assert all(len(line) <= 150 for line in lines)


LIVE_CHILD = """
import sys, time
from sweeps.cells import Cell
from sweeps.engine.console import Progress
p = Progress(sys.argv[1], [Cell("vlae", "vae", "fashion_mnist", "gaussian")], None, 2,
             every_s=0.2)
p.start()
time.sleep(0.6)
print("== a line printed meanwhile")
time.sleep(0.6)
p.stop()
print("after the view")
"""


def run_child(tmp_path, terminal: bool) -> str:
    """LIVE_CHILD's output, its stdout a pseudo-terminal or a pipe."""
    import pty
    import select
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "120", "TERM": "xterm"}
    env.pop("VAE_PROGRESS_SECONDS", None)
    cmd = [sys.executable, "-c", LIVE_CHILD, str(tmp_path)]
    if not terminal:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60).stdout
    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    out = b""
    while select.select([master], [], [], 30)[0]:
        try:
            data = os.read(master, 4096)
        except OSError:  # the child ended: the terminal closed
            break
        if not data:
            break
        out += data
    assert proc.wait(timeout=30) == 0, out
    return out.decode()


def test_a_terminal_gets_a_live_view_and_a_pipe_plain_lines(tmp_path):
    live = run_child(tmp_path, terminal=True)
    assert "\x1b[2K-- " in live  # the progress line redrawn in place
    assert live.count("== a line printed meanwhile") == 1  # printed above the view, once
    last = live.rindex("cells: 0 done, 0 in progress, 1 not started")
    assert live.index("after the view") > last  # the view's last state stays; lines go below
    plain = run_child(tmp_path, terminal=False)
    assert "\x1b" not in plain
    lines = plain.splitlines()
    assert "== a line printed meanwhile" in lines and lines[-1] == "after the view"
    assert all(ln.startswith("-- ") for ln in lines[:-1] if ln != "== a line printed meanwhile")
