"""python sweeps/replay.py: a stored trial trained again, its curve compared bit for bit.

The replays of real stored trials run on the storage of tests/e2e/test_sweep_journeys.py's
two-trial sweep (tests/replays.py's ``assert_replays``, called there), so that no second sweep is
paid for.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.replays import replay

COMMAND = Path(__file__).resolve().parents[2] / "sweeps" / "replay.py"


def test_a_path_with_no_sweep_is_one_error_line(tmp_path):
    """Through the real entry point: `python sweeps/replay.py` runs the replay."""
    cmd = [sys.executable, str(COMMAND), "--storage", str(tmp_path), "--trial", "x"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"error: no sweep under {tmp_path}\n"
    assert not (tmp_path / "results").exists()  # read-only


def test_the_old_command_says_where_the_replay_moved(tmp_path):
    """`python -m training replay ...` names the command that replaces it, arguments and all."""
    cmd = [sys.executable, "-m", "training", "replay", "--storage", str(tmp_path / "a b"), "--list"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    moved = f"python sweeps/replay.py --storage '{tmp_path}/a b' --list"
    assert done.stderr == f"error: moved: {moved}\n"


def test_replay_flags_are_checked(tmp_path, capsys):
    code, _, err = replay(capsys, "--storage", str(tmp_path))
    assert code == 2 and err == "error: give --trial ID, or --list to see the trials\n"
    code, _, err = replay(capsys, "--storage", str(tmp_path), "--trial", "x", "--epochs", "0")
    assert code == 2 and err == "error: --epochs must be >= 1, got 0\n"
    code, _, err = replay(capsys, "--trial", "x")
    assert code == 2 and "--storage" in err and err.count("\n") == 1
