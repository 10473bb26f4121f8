"""End to end on a real local Ray instance: Optuna + ASHA sweep -> Parquet -> the paper's table.
The sweep's checks before Ray starts: tests/unit/test_sweep.py."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest
import torch

import search_spaces
from results import check, records, store
from results.__main__ import main as results_main
from sweeps import vlae
from sweeps.cells import Budget
from sweeps.engine import cli, nodes
from sweeps.engine.tuner import optuna_storage
from tests.conftest import make_mnist_like
from tests.replays import assert_replays
from tests.unit.test_sweep import CELL, TINY  # the unit half's cell and budget
from training.config import Config
from training.data import load_data
from training.trainer import build_model, fit

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def run(storage, budget, monkeypatch, space=None, extra=()):
    if space is not None:
        monkeypatch.setitem(search_spaces.SPACES, "vae", space)
    argv = ["--storage", str(storage), "--datasets", "fashion_mnist", *extra]
    return cli.main("vlae", [CELL], {"smoke": budget}, {}, argv=argv)


def test_two_trial_sweep_lands_in_parquet_and_renders_the_table(
    ray_local, tmp_path, monkeypatch, capsys
):
    assert run(tmp_path, TINY, monkeypatch, extra=["--winner-seeds", "2"]) == 0
    every = store.load(str(tmp_path), "trials")
    trials = every[every["role"] == "search"]
    assert len(trials) == 2 and set(trials["status"]) <= {"completed", "pruned"}
    assert (trials["git_sha"] != "").all() and trials["versions"].str.contains("torch").all()
    assert "config/train/lr" in trials and "config/model/latent_dim" in trials
    curves = store.load(str(tmp_path), "curves")
    assert set(curves["trial_id"]) == set(every["trial_id"])
    assert (
        curves.groupby("trial_id")["epoch"].max().to_dict()
        == every.set_index("trial_id")["epochs"].to_dict()
    )
    # The winner trained once more with the next training seed: marked, never a search trial.
    winner = trials[trials["status"] == "completed"].sort_values("best_val_loss").iloc[0]
    again = every[every["role"] == "seed"]
    assert len(again) == 1 and again["seed_of"].tolist() == [winner["trial_id"]]
    assert again["seed"].tolist() == [winner["seed"] + 1] and again["optuna_trial"].tolist() == [-1]
    ids = [winner["trial_id"], again.iloc[0]["trial_id"]]
    first, second = (curves[curves["trial_id"] == t] for t in ids)
    assert first["train_loss"].iloc[0] != second["train_loss"].iloc[0]  # a fresh initialisation
    evals = store.load(str(tmp_path), "evaluations")
    assert sorted(evals["trial_id"].unique()) == sorted(
        [winner["trial_id"], again.iloc[0]["trial_id"]]
    )
    assert sorted(evals["seed"]) == [0, 0, 1, 1] and (evals["k"] == 5).all()
    assert (evals["cpu_seconds"] > 0).all() and (every["cpu_seconds"] > 0).all()
    out = capsys.readouterr().out
    assert "| VAE | - | project | " in out and "(n=2, k=5)" in out and "(2 IS seeds)" in out
    assert (tmp_path / "tables" / "vlae.md").is_file()  # a finished sweep writes its tables

    # Each row explains itself: where its keys came from, its Optuna trial, readable times,
    # a checkpoint path that still reads if the storage moves.
    sources = json.loads(winner["key_sources"])
    assert sources["train/lr"] == "search" and sources["family"] == "cell"
    assert sources["model/hidden_dim"] == "budget" and sources["train/max_epochs"] == "budget"
    assert set(sources.values()) == {"search", "cell", "budget", "default"}
    assert json.loads(again.iloc[0]["key_sources"])["train/seed"] == "winner-seeds"
    assert sorted(trials["optuna_trial"]) == [0, 1]
    assert str(winner["start_time"].tz) == "UTC" and winner["end_time"] > winner["start_time"]
    assert not winner["checkpoint_path"].startswith("/")
    assert Path(store.locate(str(tmp_path), winner["checkpoint_path"])).is_dir()
    assert check.summary(check.check(str(tmp_path))) == ([], [])

    # The sweep's progress, from storage alone.
    argv = ["--storage", str(tmp_path), "--datasets", "fashion_mnist", "--status"]
    assert cli.main("vlae", [CELL], {"smoke": TINY}, {}, argv=argv) == 0
    status = capsys.readouterr().out.splitlines()
    assert status[0].split() == [
        "family",
        "dataset",
        "likelihood",
        "variant",
        "protocol",
        "state",
        "completed",
        "pruned",
        "errored",
        "running",
        "target",
        "seeds",
        "best_val_loss",
    ]
    counts = trials["status"].value_counts()
    fields = status[1].split()
    assert fields[:6] == ["vae", "fashion_mnist", "gaussian", "-", "project", "done"]
    assert int(fields[6]) == counts.get("completed", 0) and int(fields[9]) == 0
    assert int(fields[10]) == TINY.trials and int(fields[11]) == 1
    best = trials[trials["status"] == "completed"]["best_val_loss"].min()
    assert float(fields[12]) == pytest.approx(best, abs=1e-3)

    # python sweeps/replay.py on this storage (last: it edits a curve; tests/replays.py)
    assert_replays(str(tmp_path), trials, capsys)


def test_a_cell_killed_before_tune_saved_its_state_resumes_afresh(
    ray_local, tmp_path, monkeypatch, capsys
):
    """Killed after Tune made the experiment folder (its tuner.pkl) but before Tune first saved
    the experiment's state: Tune's restore would restart it with an empty config (every trial
    errored); --resume runs the cell's trials afresh instead."""
    assert run(tmp_path, TINY, monkeypatch) == 0
    experiment = tmp_path / "ray" / CELL.name
    for part in experiment.iterdir():  # what such a driver leaves: its record and tuner.pkl
        if part.name != "tuner.pkl":
            shutil.rmtree(part) if part.is_dir() else part.unlink()
    for folder in ("results", "optuna", "samples"):
        shutil.rmtree(tmp_path / folder, ignore_errors=True)
    assert store.cell_record(str(tmp_path), CELL.name) is not None

    argv = ["--storage", str(tmp_path), "--datasets", "fashion_mnist", "--resume"]
    assert cli.main("vlae", [CELL], {"smoke": TINY}, {}, argv=argv) == 0
    trials = store.load(str(tmp_path), "trials")
    assert len(trials) == 2 and set(trials["status"]) <= {"completed", "pruned"}, trials["reason"]
    assert "| VAE | - | project | " in capsys.readouterr().out


def scripted_space(trial):
    """A real space plus, by trial number, a diverging trial, a crashing one and slow learners."""
    trial.suggest_float("train/lr", 3e-3, 5e-3, log=True)
    return {
        1: {"train/lr": 1e30},  # the loss overflows: the trainer's NaN guard ends it
        2: {"model/latent_dim": 0},  # an invalid config: the trial raises
        3: {"train/lr": 1e-7},
        4: {"train/lr": 1e-7},
        5: {"train/lr": 1e-7},
    }.get(trial.number, {})


def test_failures_are_recorded_and_asha_stops_become_pruned_in_optuna(
    ray_local, tmp_path, monkeypatch
):
    budget = Budget(
        trials=6,
        max_epochs=4,
        grace_epochs=1,
        reduction_factor=2,
        patience=4,
        eval_k=5,
        eval_seeds=1,
        fixed={"model/hidden_dim": 16},
    )
    # One trial at a time: the good trial 0 sets each ASHA rung before the slow learners reach
    # it, so they are pruned whatever the machine's load (with two at once, a slow learner that
    # ran ahead of trial 0 set the rungs itself and completed).
    extra = ["--max-concurrent", "1"]
    assert run(tmp_path, budget, monkeypatch, space=scripted_space, extra=extra) == 0

    trials = store.load(str(tmp_path), "trials")
    assert len(trials) == 6
    errored = trials[trials["status"] == "errored"]["reason"].tolist()
    assert any("loss became" in r for r in errored), errored
    assert any("latent_dim" in r for r in errored), errored
    # A trial that fails on its own config is not retried: the same config fails the same way.
    bad_config = trials[trials["reason"].str.contains("latent_dim")]
    assert (bad_config["retries"] == 0).all() and (bad_config["epochs"] == 0).all()

    study = optuna.load_study(study_name=CELL.name, storage=optuna_storage(str(tmp_path), CELL))
    states = [t.state for t in study.trials]
    ours = trials["status"].value_counts().to_dict()
    assert states.count(optuna.trial.TrialState.COMPLETE) == ours.get("completed", 0)
    assert states.count(optuna.trial.TrialState.PRUNED) == ours.get("pruned", 0) >= 1
    assert states.count(optuna.trial.TrialState.FAIL) == ours.get("errored", 0) == 2
    by_id = trials.set_index("trial_id")  # an Optuna trial names the Tune trial it ran
    for t in study.trials:
        if t.state == optuna.trial.TrialState.PRUNED:
            # Its learning curve up to the stop; Optuna itself shows the last one as its value.
            assert t.intermediate_values and max(t.intermediate_values) < budget.max_epochs
            assert t.value == t.intermediate_values[max(t.intermediate_values)]
        if t.state == optuna.trial.TrialState.COMPLETE:
            row = by_id.loc[t.user_attrs["tune_trial_id"]]
            assert t.value == pytest.approx(row["best_val_loss"])
            assert sorted(t.intermediate_values) == list(range(1, budget.max_epochs + 1))


def test_hyperspherical_smoke_sweep_fills_both_papers_tables(ray_local, tmp_path, capsys):
    from sweeps import hyperspherical as h

    wanted = ("d=2", "d=5 2+2+1")
    chosen = [c for c in h.CELLS if c.dataset == "fashion_mnist" and c.variant in wanted]
    assert {c.family for c in chosen} == {"nvae", "svae", "psvae"}
    budget = dataclasses.replace(TINY, trials=1, eval_seeds=1, fixed={"model/hidden_dims": "32,16"})
    argv = ["--storage", str(tmp_path), "--datasets", "fashion_mnist"]
    assert cli.main("hyperspherical", chosen, {"smoke": budget}, {}, argv=argv) == 0
    trials = store.load(str(tmp_path), "trials")
    assert len(trials) == 3 and set(trials["status"]) == {"completed"}
    evals = store.load(str(tmp_path), "evaluations")
    assert len(evals) == 3
    e = evals.iloc[0]
    assert e["test_elbo"] == pytest.approx(e["test_log_px_z"] - e["test_kl"], abs=1e-3)
    assert (evals["test_log_likelihood"] >= evals["test_elbo"] - 1.0).all()  # IWAE >= ELBO-ish
    out = capsys.readouterr().out
    assert "| S-VAE | d=2 | " in out and "| N-VAE | d=2 | " in out  # the UAI table
    assert "| S-VAE (product) | d=5 2+2+1 | " in out  # the product-space table
    # the papers' datasets this sweep did not run: named under the table, shown on request
    assert "`python -m results table svae18 --all-datasets` shows them" in out
    assert "-132.50 ± 0.73 †" not in out
    assert results_main(["table", "svae18", "--storage", str(tmp_path), "--all-datasets"]) == 0
    assert "-132.50 ± 0.73 †" in capsys.readouterr().out  # the paper's S-VAE d=2 LL beside ours


def test_a_cells_trials_reuse_one_actor_and_train_as_in_a_fresh_process(
    ray_local, tmp_path, monkeypatch
):
    """With one slot, the cell's three trials run in one worker process (TrainTrial's
    reset_config), and the last one, two trials into that process, has the curve of the same
    configuration trained here from scratch, bit for bit."""
    budget = dataclasses.replace(TINY, trials=3)
    argv = ["--storage", str(tmp_path), "--datasets", "fashion_mnist", "--max-concurrent", "1"]
    assert cli.main("vlae", [CELL], {"smoke": budget}, {}, argv=argv) == 0
    results = sorted((tmp_path / "ray" / CELL.name).glob("TrainTrial_*/result.json"))
    runs = [[json.loads(line) for line in f.read_text().splitlines()] for f in results]
    assert len(runs) == 3
    assert len({r["pid"] for run in runs for r in run}) == 1  # one process for all three
    last = max(runs, key=lambda run: run[0]["trial_started_at"])
    trials = store.load(str(tmp_path), "trials").set_index("trial_id")
    row = trials.loc[last[0]["trial_id"]]
    threads = int(re.search(r"x(\d+) threads", row["hardware"]).group(1))
    folder = Path(store.locate(str(tmp_path), row["checkpoint_path"]))
    config = json.loads((folder / records.CONFIG_FILE).read_text())
    cfg = Config.from_dict(config)
    torch.set_num_threads(threads)
    try:
        data = load_data(cfg.data)
        history = []
        fit(build_model(cfg, data.x_shape), data, cfg.train, report=lambda m, _: history.append(m))
    finally:
        torch.set_num_threads(2)
    # As far as it ran: ASHA may have stopped it after its first epoch.
    assert [r["val_loss"] for r in last] == [m["val_loss"] for m in history][: len(last)]


def test_another_drivers_embedded_ray_is_never_joined(ray_local):
    """A sweep started while another sweep's (or a test's) embedded Ray runs here starts its
    own: joining it, it died when the other driver ended ("owner's node has crashed")."""
    import ray
    from ray._private.services import find_gcs_addresses

    assert ray.is_initialized() and find_gcs_addresses()  # a live embedded instance
    assert nodes.running_cluster() is None  # not a `ray start` cluster: never attached to


CONSOLE_DRIVER = """
import sys
from sweeps import vlae
from sweeps.cells import Budget
from sweeps.engine import cli
budget = Budget(trials=2, max_epochs=2, grace_epochs=1, reduction_factor=2, patience=2,
                eval_k=5, eval_seeds=1, fixed={"model/hidden_dim": 16})
sys.exit(cli.main("vlae", [vlae.CELLS[0], vlae.CELLS[3]], {"smoke": budget}, {}))
"""
"""Two cells: in flight together, in the CellControllers actor (sweeps.engine.in_flight)."""
RAY_WARNING = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+\s+(WARNING|ERROR) ")
"""A warning Ray itself logs (e.g. its token authentication on start): shown, not ours."""


def test_a_sweeps_console_is_its_own_lines_and_ends_on_a_summary(tmp_path):
    """The driver a person runs, as a subprocess: none of Ray's and Tune's chatter (Tune's boxes,
    the trials' forwarded "Checkpoint successfully created" lines, colour codes), progress lines
    from the storage ($VAE_PROGRESS_SECONDS), and the summary after the table. Its lines:
    sweeps.engine.console (tests/unit/test_console.py)."""
    data = make_mnist_like(tmp_path / "data", "torchvision")
    ray_tmp = tempfile.mkdtemp(prefix="rq", dir="/tmp")  # short: unix socket paths are limited
    env = {**os.environ, "VAE_DATA_ROOT": str(data), "VAE_CACHE": str(tmp_path / "cache"),
           "RAY_TMPDIR": ray_tmp, "PYTHONPATH": str(REPO), "VAE_PROGRESS_SECONDS": "1"}  # fmt: skip
    env.pop("RAY_ADDRESS", None)
    (tmp_path / "driver.py").write_text(CONSOLE_DRIVER)
    storage = tmp_path / "sweep"
    cmd = [sys.executable, str(tmp_path / "driver.py"), "--storage", str(storage)]
    try:
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600,
                             start_new_session=True)  # fmt: skip
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    for chatter in ("Checkpoint successfully created", "Configuration for experiment",
                    "To visualize your results with TensorBoard", "\x1b["):  # fmt: skip
        assert chatter not in out, out[-3000:]
    table = set((storage / "tables" / "vlae.md").read_text().splitlines())  # the tables' own
    ours = [line for line in out.splitlines() if line not in table and not RAY_WARNING.match(line)
            and not line.lstrip().startswith("python ")]  # a command is printed whole  # fmt: skip
    assert [line for line in ours if len(line) > 150] == []
    assert re.search(r"^-- \d\d:\d\d:\d\d \S+ elapsed; cells: ", run.stdout, re.M), out[-3000:]
    summary = run.stdout[run.stdout.index("== sweep ended in ") :].splitlines()
    assert "4 search trials (" in summary[0] and "CPU core-hours" in summary[1]
    watch = run.stdout[run.stdout.index("watch: ") :].splitlines()[:3]  # the dashboard it has
    assert re.fullmatch(r"watch: the Ray dashboard at http://127\.0\.0\.1:\d+", watch[0]), watch
    assert watch[1].strip().startswith(f"python -m results dashboard --storage {storage}")
    for cell in (vlae.CELLS[0], vlae.CELLS[3]):  # what the cells printed in their actor, relayed
        assert re.search(rf"^== {cell.name}: 2 trials \(new", run.stdout, re.M), out[-3000:]
        assert f"   [{cell.name}] test log-likelihood of trial " in run.stdout, out[-3000:]
    assert summary[-1] == f"         python -m results table vlae --storage {storage}"
