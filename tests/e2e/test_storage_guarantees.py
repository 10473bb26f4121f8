"""A storage is one sweep's record: re-runs, added trials, resumes, lost and damaged rows.

End to end on a real local Ray instance, real Optuna journals and real Parquet: one small sweep is
run once per module and each test works on its own copy of the storage it left.
"""

from __future__ import annotations

import shutil
import tempfile

import pandas as pd
import pytest
import ray

import search_spaces
from results import store
from results.__main__ import main as results_main
from results.records import study_trials
from sweeps import vlae
from sweeps.cells import Budget
from sweeps.engine import cli
from tests.conftest import make_mnist_like

pytestmark = pytest.mark.slow

CELL = vlae.CELLS[0]  # VAE, fashion_mnist, gaussian
TINY = Budget(trials=2, max_epochs=2, grace_epochs=1, reduction_factor=2, patience=2, eval_k=5,
              eval_seeds=1, fixed={"model/hidden_dim": 16})  # fmt: skip
VOLATILE = ["written_at", "checkpoint_path"]  # when and where a row was written


@pytest.fixture(scope="module")
def ray_module(tmp_path_factory):
    """A private Ray instance for the module; its workers read a tiny Fashion-MNIST."""
    from training.data import read_images

    root = tmp_path_factory.mktemp("data")
    make_mnist_like(root, "torchvision", folder="FashionMNIST")
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VAE_DATA_ROOT", str(root))
        mp.setenv("VAE_CACHE", str(root / "cache"))
        mp.setenv("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
        read_images.cache_clear()
        ray.init(num_cpus=2, num_gpus=0, _temp_dir=temp_dir, include_dashboard=False,
                 configure_logging=False)  # fmt: skip
        try:
            yield root
        finally:
            ray.shutdown()
            read_images.cache_clear()
            shutil.rmtree(temp_dir, ignore_errors=True)


def sweep(storage, *extra) -> int:
    argv = ["--storage", str(storage), "--datasets", "fashion_mnist", *extra]
    return cli.main("vlae", [CELL], {"smoke": TINY}, {}, argv=argv)


@pytest.fixture(scope="module")
def swept(ray_module, tmp_path_factory):
    storage = tmp_path_factory.mktemp("swept") / "s"
    assert sweep(storage) == 0
    return storage


@pytest.fixture
def storage(swept, tmp_path):
    copy = tmp_path / "s"
    shutil.copytree(swept, copy)
    return copy


def rows(storage, table="trials") -> pd.DataFrame:
    df = store.load(str(storage), table)
    df = df.drop(columns=[c for c in VOLATILE if c in df])
    keys = ["trial_id"] + (["epoch"] if table == "curves" else [])
    return df[sorted(df.columns)].sort_values(keys).reset_index(drop=True)


def test_a_second_run_into_the_same_storage_refuses_and_changes_nothing(storage, capsys):
    before = rows(storage)
    journal = (storage / "optuna" / f"{CELL.name}.journal").read_bytes()
    assert sweep(storage) == 2
    err = capsys.readouterr().err
    assert "already holds 1 of these cells" in err and "--resume" in err and "--add-trials" in err
    pd.testing.assert_frame_equal(rows(storage), before)
    assert (storage / "optuna" / f"{CELL.name}.journal").read_bytes() == journal


def test_added_trials_extend_the_cell_and_repeat_no_configuration(storage, capsys):
    assert sweep(storage, "--add-trials", "2") == 0
    trials = store.load(str(storage), "trials")
    assert len(trials) == 4 and trials["config_json"].is_unique
    study = study_trials(str(storage), CELL.name)
    assert len(study) == 4
    assert len({tuple(sorted(t.params.items())) for t in study}) == 4  # the sampler went on
    assert {t.user_attrs["tune_trial_id"] for t in study} == set(trials["trial_id"])
    capsys.readouterr()
    assert results_main(["check", "--storage", str(storage)]) == 0
    assert "1 cells, 0 differences" in capsys.readouterr().out
    assert sweep(storage, "--status") == 0
    line = capsys.readouterr().out.splitlines()[1].split()
    assert line[4:6] == ["project", "done"] and sum(map(int, line[6:9])) == 4 and line[10] == "4"


def test_resuming_a_finished_sweep_says_so_and_another_config_is_refused(storage, capsys):
    before = rows(storage)
    assert sweep(storage, "--resume") == 0
    assert "nothing to resume" in capsys.readouterr().out
    pd.testing.assert_frame_equal(rows(storage), before)
    assert sweep(storage, "--resume", "--set", "model/hidden_dim=32") == 2
    err = capsys.readouterr().err
    assert "started with another config (model/hidden_dim: 16 then, 32 now)" in err


def test_lost_and_damaged_rows_are_reported_then_rebuilt_as_they_were(storage, capsys):
    before, curves = rows(storage), rows(storage, "curves")
    folder = storage / "results" / "trials" / CELL.name
    lost, damaged = sorted(p.name for p in folder.iterdir())
    (folder / lost).unlink()
    (folder / damaged).write_bytes((folder / damaged).read_bytes()[:100])
    (storage / "results" / "curves" / CELL.name / lost).unlink()

    assert results_main(["table", "vlae", "--storage", str(storage)]) == 2
    err = capsys.readouterr().err
    assert "damaged Parquet part" in err and damaged in err and "--repair" in err
    assert results_main(["check", "--storage", str(storage)]) == 1
    out = capsys.readouterr().out
    assert f"{lost.removesuffix('.parquet')}: no row for a " in out  # completed or pruned
    assert f"damaged trials part {folder / damaged}" in out and "3 repairable" in out

    assert results_main(["check", "--storage", str(storage), "--repair"]) == 0
    pd.testing.assert_frame_equal(rows(storage), before)
    pd.testing.assert_frame_equal(rows(storage, "curves"), curves)
    assert list((storage / "quarantine" / "results" / "trials" / CELL.name).iterdir())  # kept

    # --resume rebuilds too, and a table built on a storage missing a row says so.
    (folder / lost).unlink()
    capsys.readouterr()
    assert results_main(["table", "vlae", "--storage", str(storage)]) == 0
    assert "WARNING: this storage is not a finished, consistent record" in capsys.readouterr().out
    assert sweep(storage, "--resume") == 0
    assert f"rebuilt {CELL.name} {lost.removesuffix('.parquet')}" in capsys.readouterr().out
    pd.testing.assert_frame_equal(rows(storage), before)


def test_a_duplicated_configuration_and_an_untraceable_row_are_reported(storage, capsys):
    trials = store.load(str(storage), "trials")
    twin = trials.iloc[[0]].assign(trial_id="deadbeef")
    store.write(str(storage), "trials", CELL.name, "deadbeef", twin)
    assert results_main(["check", "--storage", str(storage)]) == 1
    out = capsys.readouterr().out
    assert "ran the same configuration as ['deadbeef']" in out or "deadbeef" in out
    assert "deadbeef: a row of a trial Tune has no record of" in out
    assert "deadbeef: a row with no Optuna trial" in out


def diverging(trial):
    """A space whose every draw overflows the loss (module level: Tune pickles the searcher)."""
    trial.suggest_float("train/lr", 1e29, 1e30)


def test_a_cell_with_no_completed_trial_fails_the_sweep_and_says_why(
    ray_module, tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(search_spaces.SPACES, "vae", diverging)
    assert sweep(tmp_path / "s") == 1
    err = capsys.readouterr().err
    assert f"error: cell {CELL.name} has no completed trial: 2 errored." in err
    assert "loss became" in err and "(x2)" in err
    trials = store.load(str(tmp_path / "s"), "trials")
    assert (trials["status"] == "errored").all() and (trials["retries"] == 0).all()


def three_points(trial):
    """A space of three configurations (module level: Tune pickles the searcher)."""
    trial.suggest_categorical("model/latent_dim", [2, 3, 4])


def test_no_configuration_runs_twice_even_in_a_tiny_space(ray_module, tmp_path, monkeypatch):
    monkeypatch.setitem(search_spaces.SPACES, "vae", three_points)
    assert sweep(tmp_path / "s", "--trials", "3") == 0
    trials = store.load(str(tmp_path / "s"), "trials")
    assert sorted(trials["config/model/latent_dim"]) == [2, 3, 4]
    study = study_trials(str(tmp_path / "s"), CELL.name)
    repeats = [t for t in study if "duplicate_of" in t.user_attrs]
    assert all(t.state.name == "FAIL" and "tune_trial_id" not in t.user_attrs for t in repeats)
