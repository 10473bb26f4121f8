"""A sweep's driver SIGKILLed at every kill point (results.crash_points), one at a time, then
resumed: `results check` finds 0 differences, the cell has its target of trials, no
configuration ran twice and every trial that had completed before the kill keeps its value.

The drivers are subprocesses attached to one Ray cluster the module starts once
(ray.cluster_utils.Cluster on the loopback address 127.0.0.2: Ray resolves 127.0.0.1 in an
address to the machine's outward one), so each run pays no Ray start-up; a SIGKILLed
driver's trials die with it, as its own embedded Ray would have.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from results import check, store
from results.crash_points import ENV, POINTS, crash_point, target
from tests.conftest import make_mnist_like

REPO = Path(__file__).resolve().parents[2]
TRIALS = 2
DRIVER = f"""
import dataclasses, os, sys
from sweeps import vlae
from sweeps.engine import cli
from sweeps.cells import Budget

budget = Budget(trials={TRIALS}, max_epochs=2, grace_epochs=1, reduction_factor=2, patience=2,
                eval_k=5, eval_seeds=1, fixed={{"model/hidden_dim": 16}})
cell = vlae.CELLS[0]
if os.environ.get("CASE"):
    cell = dataclasses.replace(cell, variant=os.environ["CASE"])
sys.exit(cli.main("vlae", [cell], {{"smoke": budget}}, {{}}))
"""
"""In this module each case's cell is the VAE cell under a name of its own (its variant: the
case, $CASE): Tune stages an experiment's files on the driver's machine in a folder named after
the cluster's session, the second the experiment started and the experiment's name, so two
drivers of one cell starting in the same second on one cluster would share it and upload each
other's files."""
CASES = [  # (kill point, its pass), in the order a sweep passes them
    ("cell_record", 1),
    ("study_asked", 2),  # the second trial asked, not yet tied to its Tune trial
    ("study_tied", 1),
    ("tune_state", 1),  # Tune's first save naming the new trials
    ("tune_file_half", 6),  # a file of Tune's second or third save, not yet renamed whole
    ("study_report", 2),
    ("study_told", 1),
    ("trials_part", 1),  # one trial's row written, the other in flight
    ("curves_part", 2),  # the second trial's row written, its curve not yet
    ("orphans_closed", 1),
    ("evaluations_part", 1),
    ("samples", 1),
]
SEED_CASE = ("trials_part", 3)  # with --winner-seeds 2: the winner's re-training's row
AT_ONCE = 4  # cases run in parallel (each its own storage, drivers and trials)


def test_every_kill_point_is_tried():
    assert {name for name, _ in CASES} == set(POINTS)


def test_a_kill_point_not_registered_is_an_error(monkeypatch):
    monkeypatch.setenv(ENV, "no_such_point:1")
    with pytest.raises(ValueError, match="no kill point 'no_such_point'"):
        target()
    with pytest.raises(ValueError, match="not registered"):
        crash_point("no_such_point")
    monkeypatch.setenv(ENV, "samples:0")
    with pytest.raises(ValueError, match="positive integer"):
        target()
    monkeypatch.setenv(ENV, "samples:2")
    crash_point("cell_record")  # another point: nothing happens


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One Ray cluster for every driver of the module; its workers read a tiny Fashion-MNIST."""
    from ray.cluster_utils import Cluster

    root = tmp_path_factory.mktemp("data")
    make_mnist_like(root, "torchvision", folder="FashionMNIST")
    temp_dir = tempfile.mkdtemp(prefix="rk", dir="/tmp")  # short: unix socket paths are limited
    env = {"VAE_DATA_ROOT": str(root), "VAE_CACHE": str(root / "cache"),
           "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)  # the cluster's workers inherit them
        c = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 2 * AT_ONCE, "num_gpus": 0, "node_ip_address": "127.0.0.2",
            "temp_dir": temp_dir, "include_dashboard": False,
        })  # fmt: skip
        try:
            yield {**os.environ, **env, "PYTHONPATH": str(REPO), "RAY_ADDRESS": c.address}
        finally:
            c.shutdown()
            shutil.rmtree(temp_dir, ignore_errors=True)


def sweep(env: dict, storage: Path, *extra: str, crash: str | None = None, uri: str = "",
          case: str = ""):  # fmt: skip
    """The tiny sweep into ``storage`` (or the storage ``uri``), its driver script beside it;
    with ``case``, its cell is the VAE cell with that variant."""
    driver = storage.parent / "driver.py"
    driver.write_text(DRIVER)
    env = {k: v for k, v in env.items() if k != ENV} | ({ENV: crash} if crash else {})
    env["CASE"] = case
    where = uri or str(storage)
    cmd = [sys.executable, str(driver), "--storage", where, "--max-concurrent", "1", *extra]
    try:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired as e:  # its case fails with what it printed, not all cases
        out, err = (x.decode() if isinstance(x, bytes) else x or "" for x in (e.stdout, e.stderr))
        return subprocess.CompletedProcess(cmd, "timed out after 300 s", out, err)


def completed(storage: Path) -> dict[str, float]:
    trials = store.load(str(storage), "trials")
    if trials.empty:
        return {}
    done = trials[trials["status"] == "completed"]
    return dict(zip(done["trial_id"], done["best_val_loss"], strict=True))


@dataclass
class Outcome:
    """What a case left: the killed run, the completed rows it left, the resume, the storage."""

    first: subprocess.CompletedProcess
    before: dict[str, float]
    second: subprocess.CompletedProcess
    storage: Path


def killed_then_resumed(env: dict, storage: Path, point: str, n: int, *extra: str) -> Outcome:
    case = f"{point.replace('_', '')}{n}"
    first = sweep(env, storage, *extra, crash=f"{point}:{n}", case=case)
    before = completed(storage) if first.returncode == -signal.SIGKILL else {}
    second = sweep(env, storage, "--resume", *extra, case=case)
    return Outcome(first, before, second, storage)


@pytest.fixture(scope="module")
def outcomes(cluster, tmp_path_factory) -> dict[tuple[str, int], Outcome]:
    """Every case, AT_ONCE at a time: a driver mostly waits (for Tune's loop, a worker to start,
    a save to sync), so cases in parallel finish in a fraction of the time one after another."""
    cases = [(*case, ()) for case in CASES] + [(*SEED_CASE, ("--winner-seeds", "2"))]

    def one(case):
        point, n, extra = case
        folder = tmp_path_factory.mktemp(f"{point}-{n}")
        return (point, n), killed_then_resumed(cluster, folder / "s", point, n, *extra)

    with ThreadPoolExecutor(max_workers=AT_ONCE) as pool:
        return dict(pool.map(one, cases))


def assert_consistent(outcome: Outcome, point: str, n: int) -> None:
    first, second, storage = outcome.first, outcome.second, outcome.storage
    log = (first.stdout + first.stderr)[-3000:]
    assert first.returncode == -signal.SIGKILL, log
    # its line, perhaps followed by a worker's that Ray's log thread printed in between
    assert f"crash point {point}:{n}" in first.stderr.splitlines(), log
    log = (second.stdout + second.stderr)[-3000:]
    assert second.returncode == 0, log
    assert check.summary(check.check(str(storage))) == ([], []), log
    trials = store.load(str(storage), "trials")
    search = trials[trials["role"] == "search"]
    assert len(search) == TRIALS, log
    assert trials["config_json"].is_unique  # no configuration ran twice
    assert {json.loads(c)["train/seed"] for c in search["config_json"]} == {0}
    after = completed(storage)
    for trial_id, value in outcome.before.items():  # nothing that had completed is lost or changed
        assert after.get(trial_id) == pytest.approx(value, rel=1e-9), (trial_id, log)


@pytest.mark.slow
@pytest.mark.parametrize(("point", "n"), CASES, ids=[f"{p}:{n}" for p, n in CASES])
def test_a_driver_killed_at_a_kill_point_resumes_to_a_consistent_storage(outcomes, point, n):
    assert_consistent(outcomes[point, n], point, n)


@pytest.mark.slow
def test_a_driver_killed_after_a_winner_retraining_row_resumes(outcomes):
    assert_consistent(outcomes[SEED_CASE], *SEED_CASE)
    trials = store.load(str(outcomes[SEED_CASE].storage), "trials")
    assert (trials["role"] == "seed").sum() == 1
