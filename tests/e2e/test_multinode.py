"""Fault tolerance and packing on a real multi-node Ray cluster on this machine (fake GPUs)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time

import pytest
import ray
from ray._common import utils as ray_utils
from ray.cluster_utils import Cluster
from ray.util.state import list_actors

from results import store
from sweeps import vlae
from sweeps.cells import Budget
from sweeps.engine import cli, nodes

pytestmark = pytest.mark.slow
CELL = vlae.CELLS[0]
HF = next(c for c in vlae.CELLS if c.family == "vae_hf" and c.dataset == CELL.dataset)


@pytest.fixture
def cluster(monkeypatch, tiny_data_root):
    """A head with no trial resources and whatever worker nodes the test adds; always torn down."""
    monkeypatch.setenv("VAE_DATA_ROOT", str(tiny_data_root))
    temp_dir = tempfile.mkdtemp(prefix="rc", dir="/tmp")
    # Cluster writes the head's address into Ray's default temp dir, which it does not create
    # (a fresh machine has no /tmp/ray); the teardown removes it again, so no later ray.init()
    # attaches to this cluster once it is gone.
    os.makedirs(ray_utils.get_default_ray_temp_dir(), exist_ok=True)
    c = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "num_gpus": 0,
            "temp_dir": temp_dir,
            "include_dashboard": True,
        },
    )
    try:
        yield c
    finally:
        ray.shutdown()
        c.shutdown()
        ray_utils.reset_ray_address()
        shutil.rmtree(temp_dir, ignore_errors=True)


TRIAL_ACTORS = {"TrainTrial", "ResourceTrainable"}
"""A trial's actor: tune.with_resources' subclass of sweeps.engine.trial.TrainTrial, registered as
"TrainTrial"; Ray may name it by that or by its qualname
"with_resources.<locals>.ResourceTrainable"."""


def alive_trials() -> list:
    return [a for a in list_actors(filters=[("state", "=", "ALIVE")], raise_on_missing_output=False)
            if a.class_name.rsplit(".", 1)[-1] in TRIAL_ACTORS]  # fmt: skip


class Watcher(threading.Thread):
    """Polls the cluster while the sweep runs in the main thread."""

    def __init__(self, act=None):
        super().__init__(daemon=True)
        self.act, self.stop, self.max_alive, self.min_free_gpu = act, False, 0, float("inf")
        self.errors: list[str] = []

    def run(self):
        while not self.stop:
            try:
                self.max_alive = max(self.max_alive, len(alive_trials()))
                self.min_free_gpu = min(self.min_free_gpu, ray.available_resources().get("GPU", 0))
                if self.act is not None and self.act():
                    self.act = None  # acted once
            except Exception as e:  # the state API can hiccup while a node goes away
                self.errors.append(repr(e))
            time.sleep(0.2)


def run_sweep(storage, budget, *extra, cells=(CELL,)):
    argv = ["--storage", str(storage), "--datasets", "fashion_mnist", *extra]
    return cli.main("vlae", list(cells), {"smoke": budget}, {}, argv=argv)


def test_fractional_gpus_pack_two_trials_per_gpu(cluster, tmp_path):
    for _ in range(2):
        cluster.add_node(num_cpus=2, num_gpus=1)
    ray.init(address=cluster.address)
    budget = Budget(
        trials=6,
        max_epochs=12,
        grace_epochs=12,
        reduction_factor=2,
        patience=12,
        eval_k=2,
        eval_seeds=1,
        # Each step padded to 50 ms: a trial lasts seconds, not the half second this CPU takes,
        # so the trials overlap for the watcher's polls (it once saw only 2 alive at once).
        fixed={"model/hidden_dim": 16, "train/step_seconds": 0.05},
    )
    watcher = Watcher()
    watcher.start()
    assert run_sweep(tmp_path, budget, "--gpus-per-trial", "0.5", "--cpus-per-trial", "0.5") == 0
    watcher.stop = True
    # 2 GPUs at 0.5 per trial: up to 4 trials at once, all GPU capacity in use at some point.
    assert 3 <= watcher.max_alive <= 4, watcher.errors[-3:]
    assert watcher.min_free_gpu == 0
    trials = store.load(str(tmp_path), "trials")
    assert len(trials) == 6 and (trials["status"] == "completed").all()
    assert (trials["gpu_seconds"] - 0.5 * trials["wall_seconds"]).abs().max() < 1e-6


def test_a_lost_worker_node_retries_its_trials_from_their_checkpoints(cluster, tmp_path):
    # 2 cells in flight at once, a trial each, on 3 one-CPU nodes: the spare node takes over
    # (nodes cannot be added from the watcher thread: Cluster.add_node fails off the main thread).
    nodes = [cluster.add_node(num_cpus=1) for _ in range(3)]
    ray.init(address=cluster.address)
    budget = Budget(
        trials=1,
        max_epochs=60,
        grace_epochs=60,
        reduction_factor=2,
        patience=60,
        eval_k=2,
        eval_seeds=1,
        fixed={"model/hidden_dim": 16},
    )
    killed = {}

    def kill_a_busy_node() -> bool:
        """Once every trial has reported epoch 3, remove the node running one of them (once).

        Each trial reports the node it runs on; Tune appends results to result.json as they come.
        """
        if killed:
            return True
        last = [
            json.loads(f.read_text().splitlines()[-1])
            for f in (tmp_path / "ray").glob("*/TrainTrial_*/result.json")
            if f.read_text().strip()
        ]
        if len(last) < 2 or min(r["epoch"] for r in last) < 3:
            return False
        victim = next(n for n in nodes if n.node_id == last[0]["node_id"])
        killed["node"] = victim.node_id
        cluster.remove_node(victim)
        return True

    watcher = Watcher(act=kill_a_busy_node)
    watcher.start()
    assert run_sweep(tmp_path, budget, cells=(CELL, HF)) == 0
    watcher.stop = True
    assert killed, f"no node was removed before the trials finished: {watcher.errors[-3:]}"
    # Both cells' controllers were threads of one process on the head (sweeps.engine.in_flight).
    controllers = list_actors(filters=[("class_name", "=", "CellControllers")], detail=True)
    assert len(controllers) == 1 and controllers[0].node_id == cluster.head_node.node_id

    trials = store.load(str(tmp_path), "trials")
    assert len(trials) == 2 and (trials["status"] == "completed").all()
    assert set(trials["sweep"]) == {CELL.name, HF.name}
    assert (trials["epochs"] == budget.max_epochs).all()
    retried = trials[trials["retries"] > 0]
    assert len(retried) >= 1
    curves = store.load(str(tmp_path), "curves")
    for trial_id in retried["trial_id"]:
        resumed = curves[curves["trial_id"] == trial_id]["resumed_from"]
        assert resumed.max() >= 3, "the retried trial started over instead of resuming"


def test_a_trial_no_node_type_can_hold_is_refused_before_it_pends_forever(
    cluster, tmp_path, capsys, monkeypatch
):
    # 2 GPUs in the cluster, but 1 per node, and the launcher's node types have 1 GPU each too:
    # a 2-GPU trial could never be placed.
    for _ in range(2):
        cluster.add_node(num_cpus=2, num_gpus=1)
    ray.init(address=cluster.address)
    bootstrap = tmp_path / "ray_bootstrap_config.yaml"
    bootstrap.write_text(
        "available_node_types:\n"
        "  head: {resources: {CPU: 0}, max_workers: 0}\n"
        "  gpu: {resources: {CPU: 2, GPU: 1}, min_workers: 0, max_workers: 8}\n"
    )
    monkeypatch.setattr(nodes, "BOOTSTRAP_CONFIG", bootstrap)
    budget = Budget(trials=1, max_epochs=1, grace_epochs=1, reduction_factor=2, patience=1,
                    eval_k=2, eval_seeds=1, fixed={"model/hidden_dim": 16})  # fmt: skip
    assert run_sweep(tmp_path / "s", budget, "--gpus-per-trial", "2") == 2
    err = capsys.readouterr().err
    assert "asks 1 CPUs and 2 GPUs, but no node of this cluster" in err
    assert "the largest: 2 CPUs and 1 GPUs" in err
    assert not (tmp_path / "s" / "ray").exists()  # no trial was started

    # A node type with 4 GPUs that the autoscaler can launch makes the same trial feasible.
    bootstrap.write_text(
        "available_node_types:\n  big: {resources: {CPU: 8, GPU: 4}, max_workers: 2}\n"
    )
    nodes.check_cluster_resources({"cpu": 1, "gpu": 2})
    # Node types the launcher fills in from the instance type are unknown: a warning, no refusal.
    bootstrap.write_text("available_node_types:\n  big: {node_config: {}, max_workers: 2}\n")
    nodes.check_cluster_resources({"cpu": 1, "gpu": 2})
    assert "its node types are unknown here" in capsys.readouterr().err


@pytest.fixture
def data_mirror(tmp_path, monkeypatch):
    """A dataset mirror on 127.0.0.1 (python -m training data's layout: <dataset>/<file> and
    SHA256SUMS) serving a small MNIST; yields its URL."""
    import functools
    import http.server

    from tests.conftest import make_mnist_like
    from tests.formats import write_sha256sums

    monkeypatch.setenv("no_proxy", "127.0.0.1")
    www = tmp_path / "mirror"
    make_mnist_like(www / "mnist", "debian")
    write_sha256sums(www)
    quiet = type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(quiet, directory=str(www))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_the_data_is_checked_on_the_nodes_that_run_trials(cluster, data_mirror, tmp_path, capsys):
    """The sweep checks its datasets on each node that will run trials, at that node's address,
    not on the driver's machine: a node without them is one line naming it, before anything is
    written; with data/download=true the check passes and the node's trials fetch them (from a
    mirror here) and run."""
    bare = tmp_path / "bare"  # another "machine": its own data root and cache, nothing in them
    env = {"VAE_DATA_ROOT": str(bare / "data"), "VAE_CACHE": str(bare / "cache"),
           "VAE_DATA_MIRROR": data_mirror}  # fmt: skip
    cluster.add_node(num_cpus=1, node_ip_address="127.0.0.2", env_vars=env)
    ray.init(address=cluster.address)
    budget = Budget(trials=1, max_epochs=1, grace_epochs=1, reduction_factor=2, patience=1,
                    eval_k=2, eval_seeds=1, fixed={"model/hidden_dim": 16})  # fmt: skip
    # MNIST: no system folder holds it (Fashion-MNIST may be in /usr/share/datasets)
    mnist = [next(c for c in vlae.CELLS if c.family == "vae" and c.dataset == "mnist")]

    def sweep(*extra):
        argv = ["--storage", str(tmp_path / "s"), "--datasets", "mnist", *extra]
        return cli.main("vlae", mnist, {"smoke": budget}, {}, argv=argv)

    assert sweep() == 2
    err = capsys.readouterr().err
    assert "error: on node 127.0.0.2: dataset 'mnist' not found" in err, err
    assert "python -m training data --datasets mnist" in err
    assert not (tmp_path / "s").exists() and not (bare / "data").exists()

    assert sweep("--set", "data/download=true") == 0
    assert sorted(p.name for p in (bare / "data" / "mnist").iterdir()) == [
        ".mnist.mirror.json",  # the sizes the mirror served, for the check above
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
    ]  # fmt: skip
    assert (store.load(str(tmp_path / "s"), "trials")["status"] == "completed").all()
