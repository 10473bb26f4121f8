"""A dataset read once per node (sweeps.engine.node_data) gives a trial the tensors it would have
made."""

from __future__ import annotations

import dataclasses
import gc
import os
import shutil
import tempfile
import time

import pytest
import ray
import torch
from ray._common import utils as ray_utils
from ray.cluster_utils import Cluster
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from sweeps.engine import node_data
from training.config import DataConfig
from training.data import DatasetError, load_data

pytestmark = pytest.mark.slow
FASHION = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(scope="module")
def two_nodes():
    """A head and one worker node, each a Ray node of its own; always torn down."""
    temp_dir = tempfile.mkdtemp(prefix="rn", dir="/tmp")
    os.makedirs(ray_utils.get_default_ray_temp_dir(), exist_ok=True)  # see test_multinode
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "temp_dir": temp_dir})
    worker = c.add_node(num_cpus=1)
    ray.init(address=c.address)
    try:
        yield c.head_node.node_id, worker.node_id
    finally:
        ray.shutdown()
        c.shutdown()
        ray_utils.reset_ray_address()
        shutil.rmtree(temp_dir, ignore_errors=True)


@ray.remote(num_cpus=0)
def load_there(cfg) -> tuple:
    data = node_data.load_data(cfg)
    return tuple(getattr(data, f.name) for f in dataclasses.fields(data))


def on(node_id: str):
    return load_there.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, False))


def assert_same(fields: tuple, expected) -> None:
    for f, got in zip(dataclasses.fields(expected), fields, strict=True):
        want = getattr(expected, f.name)
        if isinstance(want, torch.Tensor):
            assert got.dtype == want.dtype and torch.equal(got, want), f.name
        else:
            assert got == want, f.name


@pytest.mark.skipif(not os.path.isdir(FASHION), reason="apt-get install dataset-fashion-mnist")
def test_a_trial_gets_the_same_tensors_from_its_nodes_copy_read_once(two_nodes):
    head, worker = two_nodes
    node_data.start([n for n in ray.nodes() if n["NodeID"] == worker])  # as the driver does
    actor = ray.get_actor(node_data.actor_name(worker), node_data.NAMESPACE)
    for cfg in (
        DataConfig(dataset="fashion_mnist", binarize=True),
        DataConfig(dataset="fashion_mnist", center=True, val_size=500),
    ):
        assert_same(ray.get(on(worker).remote(cfg)), load_data(cfg))
        # The driver calls start again each minute (for added nodes): the actor and its copy
        # live on (a handle got again by name used to replace the owner's, and Ray ended it).
        node_data.start([n for n in ray.nodes() if n["NodeID"] == worker])
        gc.collect()
        time.sleep(1.0)
    assert ray.get(actor.read_count.remote()) == 1  # both configs, one read of the files
    # The head has no actor: its trial reads the files itself, with the same result.
    cfg = DataConfig(dataset="fashion_mnist", binarize=True)
    assert_same(ray.get(on(head).remote(cfg)), load_data(cfg))


def test_a_missing_dataset_is_the_same_clear_error_through_the_node(two_nodes, tmp_path):
    head, worker = two_nodes
    node_data.start()
    cfg = DataConfig(dataset="fashion_mnist", root=str(tmp_path / "empty"))
    with pytest.raises(DatasetError, match="not found: looked for"):
        ray.get(on(worker).remote(cfg))
