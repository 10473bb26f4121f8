"""A storage is relocatable: moved, copied, or synced from s3:// to a local folder, it is read,
checked and continued where it now lies, and the place it came from is never written again.

Real sweeps (subprocess drivers on one Ray cluster the module starts, as in
tests/e2e/test_crash_points.py), real moves, and moto's S3 server on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from results import check, store
from results.__main__ import main as results_main
from tests.conftest import make_mnist_like
from tests.e2e.test_crash_points import REPO, TRIALS, sweep

pytestmark = pytest.mark.slow


def listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """moto's S3 server with a bucket ``sweeps``, then one Ray cluster whose workers reach it
    (AWS_* set before the cluster starts); yields (the drivers' env, a filesystem on S3)."""
    from moto.server import ThreadedMotoServer
    from ray.cluster_utils import Cluster

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    root = tmp_path_factory.mktemp("data")
    make_mnist_like(root, "torchvision", folder="FashionMNIST")
    temp_dir = tempfile.mkdtemp(prefix="rm", dir="/tmp")  # short: unix socket paths are limited
    extra = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "VAE_DATA_ROOT": str(root), "VAE_CACHE": str(root / "cache"),
        "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    }  # fmt: skip
    s3 = pafs.S3FileSystem(
        endpoint_override=f"127.0.0.1:{port}", scheme="http", allow_bucket_creation=True,
        access_key="testing", secret_key="testing", region="us-east-1",
    )  # fmt: skip
    s3.create_dir("sweeps")
    cluster = None
    try:
        with pytest.MonkeyPatch.context() as mp:
            for k, v in extra.items():
                mp.setenv(k, v)  # the cluster's workers inherit them; store.load reads S3 too
            cluster = Cluster(initialize_head=True, head_node_args={
                "num_cpus": 2, "num_gpus": 0, "node_ip_address": "127.0.0.2",
                "temp_dir": temp_dir, "include_dashboard": False,
            })  # fmt: skip
            drivers = {**os.environ, "PYTHONPATH": str(REPO), "RAY_ADDRESS": cluster.address}
            yield drivers, s3
    finally:
        if cluster is not None:
            cluster.shutdown()
        server.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)


def consistent(storage: str, trials: int) -> None:
    assert check.summary(check.check(storage)) == ([], [])
    rows = store.load(storage, "trials")
    assert len(rows) == trials and rows["config_json"].is_unique
    assert rows["checkpoint_path"].str.startswith("ray/").all()  # relative to the storage


def test_a_killed_sweep_moved_elsewhere_resumes_where_it_lies(env, tmp_path, capsys):
    drivers, _ = env
    first, moved = tmp_path / "first", tmp_path / "elsewhere" / "moved"
    run = sweep(drivers, first, crash="trials_part:1")  # one row written, the rest to come
    assert run.returncode < 0, (run.stdout + run.stderr)[-3000:]
    moved.parent.mkdir()
    shutil.move(first, moved)

    run = sweep(drivers, moved, "--resume")
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert not first.exists()  # nothing went back to where it was
    consistent(str(moved), TRIALS)
    journal = (moved / "optuna" / "vlae-vae-fashion_mnist-gaussian.journal").read_text()
    assert str(first) not in journal  # the study names its experiment relative to the storage
    assert results_main(["table", "vlae", "--storage", str(moved)]) == 0
    assert "WARNING" not in capsys.readouterr().out


def test_a_sweep_on_s3_synced_to_a_local_folder_reads_checks_and_adds_trials(env, tmp_path):
    drivers, s3 = env
    run = sweep(drivers, tmp_path / "s3", uri="s3://sweeps/run")
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    before = {i.path: i.size for i in s3.get_file_info(pafs.FileSelector("sweeps/run", True))}
    local = tmp_path / "local"
    pafs.copy_files("sweeps/run", str(local), source_filesystem=s3,
                    destination_filesystem=pafs.LocalFileSystem())  # fmt: skip
    consistent(str(local), TRIALS)
    assert results_main(["table", "vlae", "--storage", str(local)]) == 0

    run = sweep(drivers, local, "--add-trials", "1")
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    consistent(str(local), TRIALS + 1)
    after = {i.path: i.size for i in s3.get_file_info(pafs.FileSelector("sweeps/run", True))}
    assert after == before  # the bucket it came from is untouched
