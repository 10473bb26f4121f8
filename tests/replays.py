"""`python sweeps/replay.py` for the tests: ``replay`` runs it in this process; ``assert_replays``
checks every trial of a real sweep's storage replays bit for bit. The replay's own checks:
tests/unit/test_replay.py; ``assert_replays`` runs on the storage of the two-trial sweep of
tests/e2e/test_sweep_journeys.py, so that no second sweep is paid for.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from results import store
from sweeps.engine.replay import main


def replay(capsys, *args: str) -> tuple[int, str, str]:
    code = main([*args])
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
