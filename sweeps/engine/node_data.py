"""Each dataset read once per node, into the node's object store, read zero-copy by its trials.

    start()            driver: one NodeData actor per live node that has none yet
    check_here(), check_on_cluster()
                       driver, before the sweep starts: are the datasets where trials will run
    load_data(cfg, d)  trial:  training.data.load_data with the node's copy of the files' images

Without it every trial process decodes the dataset's files itself (a second per trial for
Fashion-MNIST's 70,000 images here, and one copy in memory per trial). With it the first trial on
a node asks that node's actor, which reads the files once (training.reader.read_images) and puts
the decoded arrays into the node's object store; every trial on the node maps them read-only,
without a copy, and runs the rest of the pipeline (split, scaling, binarisation: training.data)
on them, so it gets the tensors it would have made itself, bit for bit
(tests/e2e/test_node_data.py).

The actors belong to the sweep's driver and die with it (never detached), and ask for no CPU. A
trial on a node without one (an autoscaler added the node after start(), or the actor died) or
whose actor fails reads the files itself, so a missing or damaged dataset is the same
DatasetError either way.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import ray
import torch
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from sweeps.cells import Budget, Cell
from sweeps.engine.nodes import trial_nodes
from training.data import Data, DatasetError
from training.data import load_data as load_in_process
from training.fetch import check_available, fetch
from training.files import candidate_roots, locate
from training.reader import read_images

NAMESPACE = "vae-sweeps"


def actor_name(node_id: str) -> str:
    return f"vae-data-{node_id}"


@ray.remote(num_cpus=0)
class NodeData:
    """One node's decoded datasets, by (dataset, root, download), as object-store refs."""

    def __init__(self):
        self.refs: dict[tuple, ray.ObjectRef] = {}
        self.reads = 0

    def get(self, dataset: str, root: str, download: bool) -> list[ray.ObjectRef]:
        key = (dataset, root, download)
        if key not in self.refs:
            images = read_images(dataset, root, download)
            self.refs[key] = ray.put(tuple(t.numpy() for t in images))
            self.reads += 1
        return [self.refs[key]]  # in a list: a bare ref would be resolved into a copy

    def read_count(self) -> int:
        return self.reads


_started: dict[tuple[str, str, str], ray.actor.ActorHandle] = {}
"""The driver's handles by (cluster, job, actor name): an actor whose every handle is gone is
ended, name or not."""


def start(nodes: list[dict] | None = None) -> list:
    """A NodeData actor on every live node that can run a trial (it has CPUs or GPUs) and has
    none yet: call again to cover added nodes. The handles are kept here for as long as the
    driver's process lives: the first handle owns the actor, and a handle got again by name
    (get_if_exists) would not keep it alive once the first one is dropped."""
    handles, context = [], ray.get_runtime_context()
    for node in nodes if nodes is not None else ray.nodes():
        resources = node.get("Resources", {})
        if not node["Alive"] or not (resources.get("CPU") or resources.get("GPU")):
            continue
        name = actor_name(node["NodeID"])
        key = (context.gcs_address, context.get_job_id(), name)
        if key not in _started:
            here = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            _started[key] = NodeData.options(
                name=name, namespace=NAMESPACE, get_if_exists=True, scheduling_strategy=here
            ).remote()
        handles.append(_started[key])
    return handles


@ray.remote(num_cpus=0)
def _missing_here(wanted: list[tuple[str, str, bool]]) -> list[str]:
    """On a node: what is wrong with each (dataset, root, download) there (training.fetch)."""
    problems = []
    for dataset, root, download in wanted:
        try:
            check_available(dataset, root, download)
        except DatasetError as e:
            problems.append(str(e))
    return problems


def check_on_nodes(
    wanted: list[tuple[str, str, bool]], nodes: list[dict], timeout: float = 180.0
) -> dict[str, list[str]]:
    """{node address: its problems} for every node that lacks a dataset it will read (or cannot
    fetch it), asked by a zero-resource task pinned to each node, so the data are checked where
    the trials will read them, not on the driver's machine (a launcher's head needs none)."""
    refs = {
        n["NodeManagerAddress"]: _missing_here.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote(wanted)
        for n in nodes
    }
    ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout)
    out = {}
    for address, ref in refs.items():
        if ref not in ready:
            out[address] = [f"the node did not answer a data check in {timeout:g} s"]
        elif problems := ray.get(ref):
            out[address] = problems
    return out


def datasets_read(cells: list[Cell], budget: Budget) -> list[tuple[str, str, bool]]:
    """(dataset, data/root, data/download) of every cell's trials, each once."""
    read = set()
    for cell in cells:
        cfg = cell.base_config(budget)
        read.add((cell.dataset, cfg.get("data/root", ""), bool(cfg.get("data/download", False))))
    return sorted(read)


def check_here(wanted: list[tuple[str, str, bool]]) -> None:
    """Every dataset read whole here, as a trial will read it (a damaged file fails now, not in
    every trial); with data/download=true, fetched and verified first, once."""
    for dataset, root, download in wanted:
        if download and locate(dataset, candidate_roots(root)) is None:
            for line in fetch(dataset, root):
                print(f"data: {line}", file=sys.stderr)
        read_images(dataset, root)


def check_on_cluster(wanted: list[tuple[str, str, bool]]) -> None:
    """The datasets on the nodes that will run trials, not on the driver's machine (a launcher's
    head runs no trial and needs no data): a zero-resource task on each (check_on_nodes)."""
    nodes = trial_nodes()
    if not nodes:  # an autoscaler adds them later; their setup commands fetch the data
        print("data: no node that runs trials is up yet; each reads its datasets when it "
              "starts (cluster/gpu.yaml's setup fetches them)", file=sys.stderr)  # fmt: skip
        return
    here = ray.util.get_node_ip_address()
    if all(n["NodeManagerAddress"] == here for n in nodes):  # this machine's files: read them
        check_here(wanted)
        return
    missing = check_on_nodes(wanted, nodes)
    if missing:
        address, problems = next(iter(missing.items()))
        others = f" (and {len(missing) - 1} more nodes)" if len(missing) > 1 else ""
        raise DatasetError(f"on node {address}{others}: {problems[0]}")


def read_on_node(dataset: str, root: str = "", download: bool = False) -> tuple[torch.Tensor, ...]:
    """read_images from this node's NodeData actor; read here if there is none or it fails."""
    if not ray.is_initialized():
        return read_images(dataset, root, download)
    try:
        actor = ray.get_actor(actor_name(ray.get_runtime_context().get_node_id()), NAMESPACE)
        [ref] = ray.get(actor.get.remote(dataset, root, download))
        arrays = ray.get(ref)
    except Exception:  # noqa: BLE001 - no actor, a dead one, or its read failed: read here
        return read_images(dataset, root, download)
    with warnings.catch_warnings():
        # The arrays are read-only shared memory. torch warns that writing to them would be
        # undefined; nothing does: load_data's pipeline makes new tensors of them (split,
        # to_unit), never writes into what a reader returns (tests/e2e/test_node_data.py).
        warnings.simplefilter("ignore", UserWarning)
        return tuple(torch.from_numpy(np.asarray(a)) for a in arrays)


def load_data(cfg, device: torch.device | str = "cpu") -> Data:
    """training.data.load_data with this node's copy of the dataset's files."""
    return load_in_process(cfg, device, read=read_on_node)
