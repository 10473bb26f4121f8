"""One writer per storage (results.lease), end to end: two tiny sweeps started at once into one
storage: one runs, the other exits 2 with one line before writing anything; read-only commands
work beside the running one and leave its lease alone; the runner SIGKILLed leaves its lease, and
`--resume` takes it over with a line, finishes, and `results check` finds 0 differences and the
target's 2 rows. The lease itself, with real processes and files: tests/unit/test_lease.py.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from results import lease, store
from results.__main__ import main as results_main
from sweeps import vlae
from sweeps.cells import Budget
from sweeps.engine import cli
from tests.conftest import kill_process_group, make_mnist_like

REPO = Path(__file__).resolve().parents[2]
HOST = socket.gethostname()


def lease_bytes(storage: str) -> bytes | None:
    return lease.Place(storage).read()


DRIVER = """
import sys
from sweeps import vlae
from sweeps.engine import cli
from sweeps.cells import Budget
budget = Budget(trials=2, max_epochs=2, grace_epochs=1, reduction_factor=2, patience=2,
                eval_k=5, eval_seeds=1, fixed={"model/hidden_dim": 16})
sys.exit(cli.main("vlae", [vlae.CELLS[0]], {"smoke": budget}, {}))
"""


CELL = vlae.CELLS[0]


BUDGET = Budget(trials=2, max_epochs=2, grace_epochs=1, reduction_factor=2, patience=2,
                eval_k=5, eval_seeds=1, fixed={"model/hidden_dim": 16})  # fmt: skip


@pytest.mark.slow
def test_two_sweeps_at_once_one_runs_and_a_killed_ones_lease_is_taken_over(tmp_path, capsys):
    data = make_mnist_like(tmp_path / "data", "torchvision")
    ray_tmp = tempfile.mkdtemp(prefix="rl", dir="/tmp")  # short: unix socket paths are limited
    env = {**os.environ, "VAE_DATA_ROOT": str(data), "VAE_CACHE": str(tmp_path / "cache"),
           "RAY_TMPDIR": ray_tmp, "PYTHONPATH": str(REPO)}  # fmt: skip
    (tmp_path / "driver.py").write_text(DRIVER)
    storage = str(tmp_path / "sweep")
    cmd = [sys.executable, str(tmp_path / "driver.py"), "--storage", storage]
    record = Path(storage) / "cells" / f"{CELL.name}.json"
    procs = []
    try:
        for name in ("a", "b"):  # started at the same instant
            out, err = open(tmp_path / f"{name}.out", "w"), open(tmp_path / f"{name}.err", "w")
            with out, err:
                procs.append(subprocess.Popen(cmd, env=env, stdout=out, stderr=err,
                                              start_new_session=True))  # fmt: skip
        deadline = time.time() + 300
        while all(p.poll() is None for p in procs) and time.time() < deadline:
            time.sleep(0.1)
        loser = next(p for p in procs if p.poll() is not None)
        winner = next(p for p in procs if p is not loser)
        name = "ab"[procs.index(loser)]
        err = (tmp_path / f"{name}.err").read_text()
        assert loser.returncode == 2, err[-3000:]
        assert err.splitlines() == [
            next(line for line in err.splitlines() if line.startswith("error: storage "))
        ]
        assert f"is in use by a sweep (pid {winner.pid} on host {HOST}" in err
        assert not (tmp_path / f"{name}.out").read_text()
        held = json.loads(lease_bytes(storage))
        assert held["pid"] == winner.pid

        while not record.exists() and winner.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert winner.poll() is None, (tmp_path / f"{'ba'[procs.index(loser)]}.err").read_text()
        # Read-only commands beside the running sweep: they work and leave its lease alone.
        capsys.readouterr()
        assert cli.main("vlae", [CELL], {"smoke": BUDGET}, {},
                        argv=["--storage", storage, "--status"]) == 0  # fmt: skip
        assert results_main(["check", "--storage", storage]) in (0, 1)
        out = capsys.readouterr()
        assert "fashion_mnist" in out.out and "1 cells" in out.out, out
        assert json.loads(lease_bytes(storage))["id"] == held["id"]

        kill_process_group(winner.pid)  # a crash: no chance to release the lease
        winner.wait()
        assert json.loads(lease_bytes(storage))["id"] == held["id"]
        resumed = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True,
                                 timeout=600, start_new_session=True)  # fmt: skip
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        notes = [line for line in resumed.stderr.splitlines() if line.startswith("note: ")]
        assert len(notes) == 1 and notes[0].startswith(
            f"note: storage {storage}: the sweep that held it (pid {winner.pid} on host {HOST}, "
        )
        assert f"no process {winner.pid} on this host); taking over its lease" in notes[0]
    finally:
        for p in procs:
            kill_process_group(p.pid)
        shutil.rmtree(ray_tmp, ignore_errors=True)

    assert lease_bytes(storage) is None
    capsys.readouterr()
    assert results_main(["check", "--storage", storage]) == 0
    assert "1 cells, 0 differences" in capsys.readouterr().out
    assert len(store.load(storage, "trials", sweep=CELL.name)) == BUDGET.trials
