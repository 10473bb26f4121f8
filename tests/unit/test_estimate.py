"""A sweep's cost before it starts (sweeps.engine.cost, sweeps.engine.estimate): the ASHA and
schedule arithmetic, --dry-run creating nothing, a pilot's measured epoch times, and the
script's --help and --status answering without importing torch or Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from results import store
from sweeps import vlae
from sweeps.cells import Budget, Cell
from sweeps.engine import cost

ROOT = Path(__file__).resolve().parents[2]

budgets = st.builds(
    lambda trials, grace, rf, rungs, extra: (trials, grace, rf, grace * rf**rungs + extra),
    st.integers(1, 200), st.integers(1, 50), st.integers(2, 5), st.integers(0, 4),
    st.integers(0, 30),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(budgets)
def test_asha_epochs_lie_between_every_trial_at_grace_and_every_trial_at_max(b):
    trials, grace, rf, max_epochs = b
    epochs = cost.asha_epochs(trials, grace, rf, max_epochs)
    assert len(epochs) == trials and epochs[0] == max_epochs  # the best runs to the end
    assert trials * grace <= sum(epochs) <= trials * max_epochs
    assert all(grace <= e <= max_epochs for e in epochs)


@settings(max_examples=300, deadline=None)
@given(budgets, st.integers(1, 50))
def test_asha_epochs_grow_with_the_trials(b, more):
    trials, grace, rf, max_epochs = b
    fewer = sum(cost.asha_epochs(trials, grace, rf, max_epochs))
    assert sum(cost.asha_epochs(trials + more, grace, rf, max_epochs)) >= fewer + more * grace


def test_asha_epochs_by_hand():
    """16 trials, grace 50, rf 3, max 2000 (the VLAE paper budget): rungs 50, 150, 450, 1350;
    5 trials pass 50, 2 pass 150, 1 passes 450 and 1350."""
    assert cost.asha_epochs(16, 50, 3, 2000) == [2000, 450, 150, 150, 150] + [50] * 11
    assert cost.asha_epochs(3, 10, 2, 10) == [10, 10, 10]  # grace = max: no rung


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.tuples(st.floats(0.1, 100), st.integers(0, 2)), min_size=1,
                         max_size=8), min_size=1, max_size=6),
       st.integers(1, 10), st.booleans())  # fmt: skip
def test_a_schedule_is_no_shorter_than_its_work_over_its_slots_or_its_longest_chain(
    cells, slots, together
):
    jobs = [[cost.Job(rank, length, phase) for length, phase in c] for rank, c in enumerate(cells)]
    wall, busy = cost.schedule(jobs, slots, together=together)
    work = sum(length for c in cells for length, _ in c)
    assert abs(busy - work) < 1e-6 * max(1.0, work)
    chain = max(sum(max(x for x, p in c if p == q) for q in {p for _, p in c}) for c in cells)
    assert wall >= work / slots - 1e-6 and wall >= chain - 1e-6
    assert wall <= work + 1e-6


def test_a_cells_cost_counts_its_winners_retrainings_and_evaluations():
    budget = vlae.BUDGETS["paper"]  # winner_seeds 3, eval_seeds 3, k 5000
    cell = Cell("vlae", "vae", "mnist", "bernoulli")
    c = cost.cell_cost(cell, budget)
    assert sum(c.trials) == 3450 and c.retrainings == (2000, 2000)
    assert len(c.evaluations) == 9  # 3 trained models x 3 importance-sampling seeds
    assert c.evaluations[0] == 10_000 * 5000 / (3 * 54_000)  # the test set's passes, in epochs


def script(*argv: str, check_modules: bool = False,
           name: str = "vlae.py") -> subprocess.CompletedProcess:  # fmt: skip
    """``python sweeps/<name> argv`` in a child; with ``check_modules``, under -X importtime."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    flags = ["-X", "importtime"] if check_modules else []
    return subprocess.run([sys.executable, *flags, str(ROOT / "sweeps" / name), *argv],
                          capture_output=True, text=True, env=env, timeout=300)  # fmt: skip


def imported(stderr: str) -> set[str]:
    """The modules a child imported, from its -X importtime lines."""
    return {ln.rsplit("|", 1)[1].strip() for ln in stderr.splitlines()
            if ln.startswith("import time:") and ln.count("|") == 2}  # fmt: skip


def test_help_shows_the_defaults_and_imports_neither_torch_nor_ray():
    out = script("--help", check_modules=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "(default: smoke)" in " ".join(out.stdout.split())
    assert "--dry-run" in out.stdout and "--yes" in out.stdout
    modules = imported(out.stderr)
    assert "sweeps.engine.cli" in modules and not {"torch", "ray"} & modules


SCRIPTS = sorted(p.name for p in (ROOT / "sweeps").glob("*.py") if "__main__" in p.read_text())


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_scripts_help_imports_neither_torch_nor_ray(name):
    out = script("--help", check_modules=True, name=name)
    assert out.returncode == 0 and "usage:" in out.stdout, out.stderr[-2000:]
    assert not {"torch", "ray"} & imported(out.stderr)


def test_status_imports_neither_torch_nor_ray(tmp_path):
    cell = Cell("vlae", "vae", "fashion_mnist", "gaussian")
    store.write_cell_record(str(tmp_path), cell.name, {"trials": 4})
    out = script("--status", "--storage", str(tmp_path), check_modules=True)
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(ln for ln in out.stdout.splitlines() if ln.split()[:2] == ["vae", "fashion_mnist"])
    assert "in progress" in line
    modules = imported(out.stderr)
    assert "sweeps.engine.status" in modules and not {"torch", "ray"} & modules


def test_a_dry_run_prints_each_cell_and_a_total_and_creates_nothing(tmp_path):
    storage = tmp_path / "not-there"
    argv = ["--budget", "paper", "--dry-run", "--gpus", "8", "--storage", str(storage),
            "--datasets", "mnist", "--families", "vae", "vlae"]  # fmt: skip
    out = script(*argv, check_modules=True)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    cells = [c for c in vlae.CELLS if c.dataset == "mnist" and c.family in ("vae", "vlae")]
    assert lines[1].split()[0] == "cell" and lines[1].endswith("GPU-h")  # the table's header
    for c in cells:  # a row per cell: trials, epochs under ASHA (at most), ...
        line = next(ln for ln in lines if ln.split()[0] == c.name)
        assert line.split()[1:4] == ["16", "3,450", "(32,000)"]
    assert any(ln.startswith("epoch time: assumed") for ln in lines)
    assert max(len(ln) for ln in lines) <= 150
    total = next(ln for ln in lines if ln.startswith("total:"))
    assert f"{len(cells)} cells, {16 * len(cells)} trials" in total and "on 8 GPUs" in total
    assert not storage.exists()
    assert "ray" not in imported(out.stderr)  # --gpus: no cluster looked for, none started


def test_a_pilot_in_the_storage_gives_its_familys_measured_epoch_time(tmp_path):
    """A VAE trial of the smoke budget (50 batches of 128 a epoch) that took 640 s for 10 epochs:
    0.01 s per training image; the VLAE family, with no trial there, keeps the assumption."""
    row = {"sweep": "vlae-vae-fashion_mnist-gaussian", "paper": "vlae", "family": "vae",
           "dataset": "fashion_mnist", "likelihood": "gaussian", "variant": "-",
           "trial_id": "t1", "role": "search", "status": "completed", "epochs": 10,
           "best_val_loss": 90.0,
           "wall_seconds": 640.0, "hardware": "cpu", "gpu_seconds": 0.0,
           "config_json": json.dumps({"train/epoch_batches": 50, "train/batch_size": 128})}
    store.write(str(tmp_path), "trials", row["sweep"], "t1", [row])  # fmt: skip
    out = script("--budget", "paper", "--dry-run", "--gpus", "1", "--storage", str(tmp_path),
                 "--datasets", "mnist", "--families", "vae", "vlae")  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "epoch time of vae: measured, 10.000 ms per training image (median of 1 trials" in (
        out.stdout)
    header = out.stdout.splitlines()[1].split()
    vae = next(ln for ln in out.stdout.splitlines() if ln.startswith("vlae-vae-mnist-bernoulli "))
    assert vae.split()[-2] == "540.0" and header[-2] == "s/epoch"  # 54,000 images a paper epoch
    assert "epoch time of the other families: assumed" in out.stdout


def test_the_cost_module_needs_no_budget_beyond_the_dataclass():
    budget = Budget(trials=4, max_epochs=3, grace_epochs=1, reduction_factor=2, patience=3,
                    eval_k=10, eval_seeds=1)  # fmt: skip
    c = cost.cell_cost(Cell("vlae", "vae", "fashion_mnist", "gaussian"), budget)
    assert c.trials == (3, 2, 1, 1) and c.retrainings == () and len(c.evaluations) == 1


def vlae_settings(*argv: str):
    from sweeps.engine import cli

    s = cli.parse_args(["--budget", "paper", "--gpus", "1", *argv], "vlae", vlae.CELLS,
                       vlae.BUDGETS, vlae.DEFAULT_DATASETS, vlae.PROTOCOLS)  # fmt: skip
    from sweeps.engine.cli import choose

    budget, chosen, _ = choose(s, vlae.CELLS, vlae.BUDGETS, vlae.PROTOCOLS)
    return s, chosen, budget


class Terminal:
    def isatty(self) -> bool:
        return True


def test_a_large_sweep_asks_at_a_terminal_and_says_its_estimate_elsewhere(monkeypatch, capsys):
    from sweeps.engine import estimate

    big = vlae_settings("--datasets", "mnist")
    assert estimate.estimate(*big).large
    assert estimate.confirmed(*big)  # pytest's stdin is no terminal: it goes on, saying so
    err = capsys.readouterr().err.strip().splitlines()
    cells = sum(c.dataset == "mnist" for c in vlae.CELLS)
    assert len(err) == 1 and err[0].startswith(f"estimate: total: {cells} cells")
    assert estimate.confirmed(*vlae_settings("--datasets", "mnist", "--yes"))
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys, "stdin", Terminal())
    for answer, goes_on in (("n", False), ("", False), ("y", True), ("yes", True)):
        monkeypatch.setattr("builtins.input", lambda prompt, said=answer: said)
        assert estimate.confirmed(*big) is goes_on
    small = vlae_settings("--datasets", "mnist", "--families", "vae", "--trials", "1",
                          "--winner-seeds", "1")  # fmt: skip
    assert not estimate.estimate(*small).large and estimate.confirmed(*small)
