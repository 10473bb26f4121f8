"""--max-gpu-hours on a real local Ray instance that declares a GPU it does not have (Ray lets
a CPU run a trial that asks for one): the cap binds after the first trial, the sweep stops
saved with exit 3, and --resume without the cap finishes the cell. The arithmetic and the flag's
checks: tests/unit/test_gpu_cap.py."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile

import pytest
import ray

from results import check, store
from sweeps import vlae
from sweeps.engine import cli, gpu_cap
from tests.unit.test_sweep import CELL, TINY

pytestmark = pytest.mark.slow


@pytest.fixture
def fake_gpu(monkeypatch, tiny_data_root):
    """A private local Ray instance with 2 CPUs and 1 declared GPU."""
    monkeypatch.setenv("VAE_DATA_ROOT", str(tiny_data_root))
    monkeypatch.setenv("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    ray.init(num_cpus=2, num_gpus=1, _temp_dir=temp_dir, include_dashboard=False,
             configure_logging=False)  # fmt: skip
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


HF = next(c for c in vlae.CELLS if c.name == "vlae-vae_hf-fashion_mnist-gaussian-T1")


@pytest.mark.parametrize("cells", [[CELL], [CELL, HF]], ids=["one cell", "two cells in flight"])
def test_the_cap_stops_the_sweep_after_its_first_trial_and_resume_finishes_it(
    cells, fake_gpu, tmp_path, capsys
):
    # 2 batches an epoch, each step padded to 50 ms: a measured epoch takes >= 0.1 s, 4 times
    # the 0.024 s the estimate assumes of 256 images before any is measured.
    budget = dataclasses.replace(TINY, trials=3, fixed={**TINY.fixed, "train/epoch_batches": 2,
                                                        "train/step_seconds": 0.05})  # fmt: skip
    assumed = gpu_cap.cap_for(1.0, "", CELL.dataset, CELL.base_config(budget), 0.5)
    first = assumed.gpus * assumed.assumed_epoch_s * assumed.max_epochs / 3600
    hours = 1.5 * first  # the first trial fits as assumed; with it measured, no second one
    assert all(c.base_config(budget)["train/max_epochs"] == assumed.max_epochs for c in cells)

    def sweep(*extra):
        argv = ["--storage", str(tmp_path), "--datasets", "fashion_mnist", "--gpus-per-trial",
                "0.5", "--max-concurrent", "1", "--winner-seeds", "1", *extra]  # fmt: skip
        return cli.main("vlae", cells, {"smoke": budget}, {}, argv=argv)

    assert sweep("--max-gpu-hours", f"{hours!r}") == gpu_cap.EXIT_CODE == 3
    out, err = capsys.readouterr()
    err = out[-2000:] + err
    assert f"stopped: the next trial would pass --max-gpu-hours {hours:g} (spent " in err
    assert "--resume and a higher --max-gpu-hours" in err
    rows = store.load(str(tmp_path), "trials")
    assert len(rows) == 1 and rows["status"].isin(["completed", "pruned"]).all(), err
    assert rows["gpu_seconds"].iloc[0] == pytest.approx(0.5 * rows["wall_seconds"].iloc[0])
    assert rows["gpu_seconds"].iloc[0] / 3600 > hours  # what it spent is over the cap itself
    assert store.load(str(tmp_path), "evaluations").empty  # the cell never ended

    assert sweep("--resume") == 0
    rows = store.load(str(tmp_path), "trials")
    assert (rows["role"] == "search").sum() == 3 * len(cells)
    assert not store.load(str(tmp_path), "evaluations").empty
    assert check.summary(check.check(str(tmp_path))) == ([], [])
