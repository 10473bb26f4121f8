"""A killed sweep driver resumes with `--resume`: no trial lost or repeated, in Tune or Optuna,
with two cells in flight at once (sweeps.engine.in_flight). The restored searcher alone:
tests/unit/test_resume.py."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from ray import tune

from results import store
from sweeps import vlae
from sweeps.engine.tuner import optuna_storage
from tests.conftest import kill_process_group, make_mnist_like

CELL = vlae.CELLS[0]
HF = next(c for c in vlae.CELLS if c.family == "vae_hf" and c.dataset == CELL.dataset)
REPO = Path(__file__).resolve().parents[2]


def epochs_logged(trial_dir: Path) -> int:
    """Results the driver has logged for a trial (its checkpoints are registered by then)."""
    try:
        return len((trial_dir / "result.json").read_text().splitlines())
    except OSError:
        return 0


DRIVER = """
import sys
from sweeps import vlae
from sweeps.engine import cli
from sweeps.cells import Budget

budget = Budget(trials=4, max_epochs=4, grace_epochs=4, reduction_factor=2, patience=4,
                eval_k=5, eval_seeds=1,
                fixed={"model/hidden_dim": 256, "train/batch_size": 16})
cells = [vlae.CELLS[0], next(c for c in vlae.CELLS if c.family == "vae_hf")]
sys.exit(cli.main("vlae", cells, {"smoke": budget}, {}))
"""


@pytest.mark.slow
def test_a_killed_driver_resumes_without_lost_or_repeated_trials(tmp_path, monkeypatch):
    data = make_mnist_like(tmp_path / "data", "torchvision", n_train=3000, n_test=50)
    ray_tmp = tempfile.mkdtemp(prefix="rr", dir="/tmp")  # short: unix socket paths are limited
    env = {
        **os.environ,
        "VAE_DATA_ROOT": str(data.parent.parent),
        "VAE_CACHE": str(tmp_path / "cache"),
        "RAY_TMPDIR": ray_tmp,
        "PYTHONPATH": str(REPO),
    }
    (tmp_path / "driver.py").write_text(DRIVER)
    storage = tmp_path / "sweep"
    cmd = [sys.executable, str(tmp_path / "driver.py"), "--storage", str(storage),
           "--datasets", "fashion_mnist", "--max-concurrent", "2"]  # fmt: skip
    experiments = [storage / "ray" / cell.name for cell in (CELL, HF)]
    driver = second = None
    try:
        with open(tmp_path / "first.log", "w") as log:
            driver = subprocess.Popen(
                cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            # Kill the driver (and the Ray instance it embeds) once a trial is done and another
            # is in flight past its second epoch: a crash, with no chance to save anything.
            # Two trials at a time over both cells: the second cell starts as the first's last
            # trials run, so the kill may find either or both in flight.
            deadline = time.time() + 600  # generous: loaded, these epochs run 10-30x slower
            while time.time() < deadline and driver.poll() is None:
                done = set(store.load(str(storage), "trials").get("trial_id", []))
                dirs = [d for e in experiments for d in e.glob("TrainTrial_*")]
                if done and any(epochs_logged(d) >= 2 for d in dirs
                                if d.name.split("_")[2] not in done):  # fmt: skip
                    break
                time.sleep(0.1)
            assert driver.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            kill_process_group(driver.pid)
            driver.wait()
        before = store.load(str(storage), "trials")
        assert 1 <= len(before) < 8

        second = subprocess.Popen(
            [*cmd, "--resume"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        out = second.communicate(timeout=600)[0]
        (tmp_path / "second.log").write_text(out)
        assert second.returncode == 0, out[-3000:]
    finally:
        for p in (driver, second):
            if p is not None:
                kill_process_group(p.pid)
        shutil.rmtree(ray_tmp, ignore_errors=True)

    for cell, experiment in zip((CELL, HF), experiments, strict=True):
        check_cell(storage, cell, experiment, before)
    # The trials in flight at the crash went on from their checkpoints.
    assert (store.load(str(storage), "curves")["resumed_from"] > 0).any()


def check_cell(storage: Path, cell, experiment: Path, before) -> None:
    # Tune: one experiment of exactly four trials, all ended normally.
    tune_trials = tune.ExperimentAnalysis(str(experiment)).trials
    assert len(tune_trials) == 4 and {t.status for t in tune_trials} == {"TERMINATED"}
    ids = {t.trial_id for t in tune_trials}
    # Parquet: one row per trial, the ones written before the crash among them.
    trials = store.load(str(storage), "trials", sweep=cell.name)
    assert set(trials["trial_id"]) == ids and len(trials) == 4
    assert set(before[before["sweep"] == cell.name]["trial_id"]) <= ids
    assert set(trials["status"]) == {"completed"}
    # Optuna: four trials, each tied to one Tune trial, none left RUNNING.
    study = optuna.load_study(study_name=cell.name, storage=optuna_storage(str(storage), cell))
    ran = [t for t in study.trials if "duplicate_of" not in t.user_attrs]
    assert len(ran) == 4
    assert {t.user_attrs["tune_trial_id"] for t in ran} == ids
    assert {t.state.name for t in ran} == {"COMPLETE"}
    # The restored sampler may draw the adopted orphan's parameters again: such a draw is told
    # FAIL as a duplicate and never runs, so no configuration ran twice.
    repeats = [t for t in study.trials if "duplicate_of" in t.user_attrs]
    assert all(t.state.name == "FAIL" and "tune_trial_id" not in t.user_attrs for t in repeats)
    assert len({tuple(sorted(t.params.items())) for t in ran}) == 4
    # Curves are whole.
    curves = store.load(str(storage), "curves", sweep=cell.name)
    for trial_id, c in curves.groupby("trial_id"):
        assert sorted(c["epoch"]) == list(range(1, 5)), trial_id
    table = json.loads(trials.iloc[0]["config_json"])
    assert table["model/hidden_dim"] == 256  # the budget's fixed keys are not searched over


def sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


CTRL_C_DRIVER = """
import sys
from sweeps import vlae
from sweeps.engine import cli
from sweeps.cells import Budget

budget = Budget(trials=3, max_epochs=3, grace_epochs=3, reduction_factor=2, patience=3,
                eval_k=5, eval_seeds=1, winner_seeds=2,
                fixed={"model/hidden_dim": 64, "train/batch_size": 16})
sys.exit(cli.main("vlae", [vlae.CELLS[0]], {"smoke": budget}, {}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_ctrl_c_on_a_one_cell_sweep_stops_it_and_resume_finishes(tmp_path, how):
    """Ctrl-C (SIGINT to the foreground process group, as a terminal sends it) on a sweep of one
    cell, whose Tuner runs in the main thread: one line and exit 130 at once (Tune's own
    handler would only have ended the Tuner, and the sweep gone on to the winner's
    re-trainings); --resume then finishes with its records consistent. SIGTERM to the driver
    alone (`kill`, cluster/slurm.sbatch near its time limit) stops it the same way."""
    from results import check

    data = make_mnist_like(tmp_path / "data", "torchvision", n_train=1500, n_test=50)
    ray_tmp = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short: unix socket paths are limited
    env = {**os.environ, "VAE_DATA_ROOT": str(data.parent.parent), "RAY_TMPDIR": ray_tmp,
           "VAE_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}  # fmt: skip
    (tmp_path / "driver.py").write_text(CTRL_C_DRIVER)
    storage = tmp_path / "sweep"
    cmd = [sys.executable, str(tmp_path / "driver.py"), "--storage", str(storage),
           "--datasets", "fashion_mnist", "--max-concurrent", "1"]  # fmt: skip
    driver = None
    try:
        # As from a terminal: SIGINT's default action, even if this process ignores it (a
        # background job of a shell does, and an ignored SIGINT is inherited across exec).
        driver = subprocess.Popen(
            cmd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            preexec_fn=sigint_default,
        )
        deadline = time.time() + 600
        while time.time() < deadline and driver.poll() is None:
            if not store.load(str(storage), "trials").empty:  # one trial ended, more to come
                break
            time.sleep(0.2)
        if how == "ctrl-c":
            os.killpg(driver.pid, signal.SIGINT)
        else:
            driver.send_signal(signal.SIGTERM)
        out = driver.communicate(timeout=120)[0]
        assert driver.returncode == 130, out[-3000:]
        assert "interrupted: every cell's state so far is saved" in out
        assert "--resume continues it" in out
        if how == "sigterm":
            return  # the resume is the Ctrl-C case's
        resumed = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True,
                                 timeout=600)  # fmt: skip
        assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    finally:
        if driver is not None:
            kill_process_group(driver.pid)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    trials = store.load(str(storage), "trials")
    assert (trials["role"] == "search").sum() == 3 and (trials["role"] == "seed").sum() == 1
    assert check.summary(check.check(str(storage))) == ([], [])
