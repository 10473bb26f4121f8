"""python -m training replay: a stored trial trained again, its curve compared bit for bit.

The replays of real stored trials run on the storage of tests/test_sweep.py's two-trial sweep
(``assert_replays``, called there), so that no second sweep is paid for.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd

from results import store
from training.__main__ import main


def replay(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["replay", *args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_replays(storage: str, trials: pd.DataFrame, capsys) -> None:
    """Every trial of a real sweep's storage replays identically (completed and, when ASHA
    stopped one, pruned); a curve changed by one ulp at one epoch exits 1 naming the metric and
    the epoch, with a damaged part skipped and named; an unknown id exits 2 naming the trials."""
    for row in trials.itertuples():
        code, out, err = replay(capsys, "--storage", storage, "--trial", row.trial_id)
        assert code == 0, out + err
        assert out.splitlines()[-1] == (
            "identical: every metric of every epoch equals the stored curve bit for bit"
        )
        assert f"{row.status}, {row.epochs} epochs; replaying {row.epochs} on cpu" in out
        assert "torch threads set to 1, as the trial ran" in out  # a 1-CPU Ray trial's count
        assert "may differ" not in out and "may round differently" not in out  # same host, torch
        epoch_lines = [ln for ln in out.splitlines() if ln.split()[:1] == [str(row.epochs)]]
        assert epoch_lines and epoch_lines[-1].split()[-1] == "0"

    done = trials[trials["status"] == "completed"].iloc[0]
    # --epochs 1: the generator stopped after one epoch, as for a trial ASHA stopped there
    code, out, err = replay(
        capsys, "--storage", storage, "--trial", done["trial_id"], "--epochs", "1"
    )
    assert code == 0 and out.splitlines()[-1].startswith("identical: "), out + err
    assert "replaying 1 on cpu" in out and "replayed 1 epochs in " in out

    curves = store.load(storage, "curves", sweep=done["sweep"])
    curve = curves[curves["trial_id"] == done["trial_id"]].reset_index(drop=True)
    last = curve.index[curve["epoch"] == done["epochs"]][0]
    kl = curve.at[last, "val_kl"]
    curve.at[last, "val_kl"] = np.nextafter(kl, np.inf)  # one ulp: bit for bit, or not at all
    store.write(storage, "curves", done["sweep"], done["trial_id"], curve)
    damaged = f"{storage}/results/curves/{done['sweep']}/zz-damaged.parquet"
    with open(damaged, "wb") as f:
        f.write(b"not parquet")
    code, out, err = replay(capsys, "--storage", storage, "--trial", done["trial_id"])
    assert code == 1, out + err
    assert out.splitlines()[-1].startswith(
        f"largest difference: val_kl at epoch {done['epochs']}: "
    ), out
    assert f"warning: skipped the damaged part {damaged}" in err

    code, out, err = replay(capsys, "--storage", storage, "--trial", "nope")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"error: no trial 'nope' under {storage}; ")
    assert all(t in err for t in trials["trial_id"])


def test_a_path_with_no_sweep_is_one_error_line(tmp_path):
    """Through the real entry point: `python -m training replay` dispatches to the replay."""
    cmd = [sys.executable, "-m", "training", "replay", "--storage", str(tmp_path), "--trial", "x"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"error: no sweep under {tmp_path}\n"
    assert not (tmp_path / "results").exists()  # read-only


def test_replay_flags_are_checked(tmp_path, capsys):
    code, _, err = replay(capsys, "--storage", str(tmp_path))
    assert code == 2 and err == "error: give --trial ID, or --list to see the trials\n"
    code, _, err = replay(capsys, "--storage", str(tmp_path), "--trial", "x", "--epochs", "0")
    assert code == 2 and err == "error: --epochs must be >= 1, got 0\n"
    code, _, err = replay(capsys, "--trial", "x")
    assert code == 2 and "--storage" in err and err.count("\n") == 1
