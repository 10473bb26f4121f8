"""A sweep whose --storage is an s3:// URI, against a local S3 server (moto): Tune's experiment and
checkpoints, the Parquet tables and the winner's evaluation all go through the object store."""

from __future__ import annotations

import pyarrow.fs as pafs
import pytest

from results import store
from sweeps import vlae
from sweeps.cells import Budget
from sweeps.engine import cli
from tests import s3 as s3_server

s3 = s3_server.s3  # the fixture: a local S3 server (moto) on 127.0.0.1
pytestmark = pytest.mark.slow
CELL = vlae.CELLS[0]
BUDGET = Budget(trials=2, max_epochs=2, grace_epochs=2, reduction_factor=2, patience=2,
                eval_k=5, eval_seeds=1, fixed={"model/hidden_dim": 16})  # fmt: skip


@pytest.fixture
def ray_with_s3(s3, ray_local):
    return s3  # the order matters: Ray's workers inherit the AWS_* variables set by s3


def test_a_sweep_on_s3_storage(ray_with_s3, tmp_path, capsys):
    storage = "s3://sweeps/run1"
    study = f"sqlite:///{tmp_path / 'optuna.db'}"
    argv = ["--storage", storage, "--study-storage", study, "--datasets", "fashion_mnist"]
    assert cli.main("vlae", [CELL], {"smoke": BUDGET}, {}, argv=argv) == 0

    trials = store.load(storage, "trials")
    assert len(trials) == 2
    # relative to the storage, so a copied bucket prefix still reads; located back under it
    assert trials["checkpoint_path"].str.startswith("ray/").all()
    located = [store.locate(storage, p) for p in trials["checkpoint_path"]]
    assert all(p.startswith("s3://sweeps/run1/ray/") for p in located)
    assert len(store.load(storage, "curves")) == 2 * 2
    evals = store.load(storage, "evaluations")  # read the winner's checkpoint back from S3
    assert len(evals) == 1 and evals["trial_id"].iloc[0] in set(trials["trial_id"])
    listed = ray_with_s3.get_file_info(pafs.FileSelector("sweeps/run1/ray", recursive=True))
    assert any(f.path.endswith("/state.pt") for f in listed)  # Tune's checkpoints live there too
    assert "| VAE | - | project | " in capsys.readouterr().out


def test_a_missing_bucket_fails_before_any_trial(s3, tmp_path, capsys):
    import ray

    argv = ["--storage", "s3://no-such-bucket/x", "--study-storage", f"sqlite:///{tmp_path}/o.db"]
    assert cli.main("vlae", [CELL], {"smoke": BUDGET}, {}, argv=argv) == 2
    assert "no-such-bucket" in capsys.readouterr().err
    assert not ray.is_initialized()
