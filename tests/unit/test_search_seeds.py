"""--search-seeds N without Ray: the rows' spread columns, the estimate's factor, the cell record
that a cell goes on with, and the trainable each N registers (training.lockstep trains them)."""

from __future__ import annotations

import json
import math
import time

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

from results import rows, store
from sweeps import vlae
from sweeps.cells import Budget, Cell
from sweeps.engine import cli, cost, preflight, trial

CELL = {"sweep": "vlae-vae-fashion_mnist-gaussian", "paper": "vlae", "family": "vae",
        "dataset": "fashion_mnist", "likelihood": "gaussian", "variant": "-",
        "protocol": "project"}  # fmt: skip
CELLS = vlae.setting_cells("fashion_mnist", (1,))
TINY = Budget(trials=2, max_epochs=2, grace_epochs=1, reduction_factor=2, patience=2, eval_k=5,
              eval_seeds=1, fixed={"model/hidden_dim": 16})  # fmt: skip


def row(last: dict, history: list[dict]) -> dict:
    return rows.trial_row(CELL, "t1", {"train/seed": 4}, last, history, error=None, retries=0,
                          checkpoint_path="", gpus=0.0, provenance={})  # fmt: skip


def test_a_row_of_two_seeds_holds_the_mean_and_the_spread_at_the_best_epoch():
    history = [
        {"epoch": 1, "val_loss": 11.0, "val_loss_std": 1.4, "seed_val_losses": [10.0, 12.0]},
        {"epoch": 2, "val_loss": 9.0, "val_loss_std": 2.8, "seed_val_losses": [11.0, 7.0]},
        {"epoch": 3, "val_loss": 9.5, "val_loss_std": 0.7, "seed_val_losses": [9.0, 10.0]},
    ]
    last = {**history[-1], "finished": True, "best_val_loss": 9.0, "best_epoch": 2,
            "search_seeds": 2}  # fmt: skip
    r = row(last, history)
    assert r["best_val_loss"] == 9.0 and r["seed"] == 4
    assert r["search_seeds"] == 2 and r["val_loss_std"] == 2.8
    assert json.loads(r["seed_best_val_losses"]) == [9.0, 7.0]  # each seed's own best
    pruned = row({"epoch": 1, "search_seeds": 2}, history[:1])  # ASHA stopped it after epoch 1
    assert pruned["status"] == "pruned" and pruned["val_loss_std"] == 1.4


def test_a_row_of_one_seed_has_the_rows_it_had_and_no_spread():
    history = [{"epoch": 1, "val_loss": 11.0}, {"epoch": 2, "val_loss": 9.0}]
    last = {**history[-1], "finished": True, "best_val_loss": 9.0, "best_epoch": 2}
    r = row(last, history)
    assert r["search_seeds"] == 1 and math.isnan(r["val_loss_std"])
    assert r["seed_best_val_losses"] == ""
    assert set(r) - set(rows.SEED_SPREAD) == set(row(last, []))  - set(rows.SEED_SPREAD)
    errored = row({"config_error": "bad", "search_seeds": 3}, [])  # failed before an epoch
    assert errored["status"] == "errored" and errored["search_seeds"] == 3


def test_rows_and_curves_written_before_the_spread_read_as_one_seed(tmp_path):
    s, sweep = str(tmp_path), CELL["sweep"]
    history = [{"epoch": 1, "val_loss": 9.0}]
    old = {k: v for k, v in row({**history[0], "finished": True}, history).items()
           if k not in rows.SEED_SPREAD}  # fmt: skip
    curve = {k: v for k, v in rows.curve_rows(sweep, "t1", history)[0].items()
             if k != "val_loss_std"}  # fmt: skip
    for table, record in (("trials", old), ("curves", curve)):
        frame = pd.DataFrame([record]).assign(schema_version=1, written_at=time.time())
        folder = f"{s}/results/{table}/{sweep}"
        pa.fs.LocalFileSystem().create_dir(folder, recursive=True)
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), f"{folder}/t1.parquet")
    back = store.load(s, "trials").iloc[0]
    assert back["search_seeds"] == 1 and math.isnan(back["val_loss_std"])
    assert back["seed_best_val_losses"] == ""
    assert math.isnan(store.load(s, "curves").iloc[0]["val_loss_std"])


def test_the_estimate_counts_each_trials_epochs_once_per_seed():
    cell = Cell("vlae", "vae", "mnist", "bernoulli")
    one = cost.cell_cost(cell, vlae.BUDGETS["paper"])
    three = cost.cell_cost(cell, Budget(**{**vars(vlae.BUDGETS["paper"]), "search_seeds": 3}))
    assert three.trials == tuple(3 * e for e in one.trials) and sum(one.trials) == 3450
    assert three.retrainings == one.retrainings and three.evaluations == one.evaluations


def test_a_dry_run_multiplies_the_trials_epochs_and_a_pilot_of_seeds_divides(tmp_path, capsys):
    """A VAE pilot trial of 2 seeds that took 1280 s for 10 epochs of 6,400 images: 10 ms per
    image of one seed's training; the new sweep's trials train 2 seeds, twice the epochs."""
    pilot = {**CELL, "trial_id": "t1", "role": "search", "status": "completed", "epochs": 10,
             "best_val_loss": 90.0, "wall_seconds": 1280.0, "hardware": "cpu",
             "gpu_seconds": 0.0, "search_seeds": 2,
             "config_json": json.dumps({"train/epoch_batches": 50, "train/batch_size": 128})}
    store.write(str(tmp_path), "trials", CELL["sweep"], "t1", [pilot])  # fmt: skip
    argv = ["--budget", "paper", "--dry-run", "--gpus", "1", "--storage", str(tmp_path),
            "--datasets", "mnist", "--families", "vae", "--search-seeds", "2"]  # fmt: skip
    assert cli.main("vlae", vlae.CELLS, vlae.BUDGETS, {}, argv=argv) == 0
    out = capsys.readouterr().out
    assert "epoch time of vae: measured, 10.000 ms per training image" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("vlae-vae-mnist-bernoulli "))
    assert line.split()[1:4] == ["16", "6,900", "(64,000)"]  # 3,450 and 32,000 with one seed
    assert "--search-seeds 2: each search trial trains 2 seeds" in out


@pytest.mark.parametrize("n", ["0", "-2"])
def test_search_seeds_below_one_is_one_error_line_before_ray(n, tmp_path, capsys):
    storage = tmp_path / "sweep"
    argv = ["--storage", str(storage), "--search-seeds", n]
    assert cli.main("vlae", CELLS, {"smoke": TINY}, {}, argv=argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --search-seeds must be at least 1, got {n} (1: each configuration "
                   "trained once; N: with N training seeds, scored by their mean)"]  # fmt: skip
    assert not ray.is_initialized() and not storage.exists()


@pytest.mark.parametrize("was,now,refused", [(None, 1, False), (None, 2, True), (2, 2, False),
                                             (2, 1, True), (2, 3, True)])  # fmt: skip
def test_a_cell_goes_on_with_the_seeds_it_started_with(was, now, refused, tmp_path):
    cell, storage = CELLS[0], str(tmp_path)
    record = {"base_config": cell.base_config(TINY), "trials": TINY.trials}
    if was is not None:  # None: a record written before --search-seeds
        record["search_seeds"] = was
    store.write_cell_record(storage, cell.name, record)
    budget = Budget(**{**vars(TINY), "search_seeds": now})
    if not refused:
        assert preflight.check_storage(storage, [cell], budget, "resume", None) == [cell]
        return
    with pytest.raises(preflight.Refusal) as e:
        preflight.check_storage(storage, [cell], budget, "add", None)
    assert str(e.value) == (
        f"cell {cell.name} was started with --search-seeds {was or 1}, not {now}: its trials' "
        f"values would mix means over other numbers of seeds; run it with --search-seeds "
        f"{was or 1}, or choose another --storage")


def test_each_number_of_seeds_registers_a_trainable_of_its_own():
    assert trial.trainable({"cpu": 1, "gpu": 0}) == "TrainTrial"
    assert trial.trainable({"cpu": 1, "gpu": 0}, 3) == "TrainTrialSeeds3"
    assert trial.with_seeds(1) is trial.TrainTrial and trial.with_seeds(3).search_seeds == 3
    assert trial.with_seeds(3) is trial.with_seeds(3)  # one class per N: Tune pickles it once
