"""The cluster a sweep runs on and what it offers a trial: which cluster (an address, a `ray start`
here, or an embedded instance) and the connection to it, the resources one trial asks for, how
many fit now, whether any node (live, or a type the autoscaler can launch) can hold one, and
whether a local storage path can serve every node. The sweep's command line (sweeps.engine.cli)
calls these; Ray is imported inside the functions that need it, so that the command line's
--help, --status and --dry-run do not import it.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import yaml

from sweeps.engine import preflight
from sweeps.engine.settings import Settings


def unreachable(address: str, timeout: float = 5.0) -> str | None:
    """Why nothing answers at a Ray address (``host:port``, ``ray://host:port``), or None when a
    TCP connection to it opens. ray.init would otherwise wait minutes on a wrong address,
    repeating its own warnings."""
    host, _, port = address.split("://", 1)[-1].rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        return "not a host:port address"
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return None
    except TimeoutError:
        return f"no answer in {timeout:g} s"
    except OSError as e:
        return e.strerror or type(e).__name__


def running_cluster() -> str | None:
    """The address of a live `ray start` cluster on this machine, else None.

    Only `ray start` (and ray.cluster_utils.Cluster) write Ray's `ray_current_cluster` file; the
    embedded instance of another sweep (or a test) running here does not, and is never joined:
    it shuts down when its own driver ends, taking this sweep's cells with it. A file left by a
    dead `ray start` names no live GCS process, so it is ignored too.
    """
    from ray._private.services import find_gcs_addresses  # no public API: "is one running"
    from ray._private.utils import read_ray_address  # the address file `ray start` writes

    address = read_ray_address()
    return address if address and address in find_gcs_addresses() else None


def cluster_address(given: str | None) -> str | None:
    """The Ray cluster this sweep attaches to: ``given`` (--address or $RAY_ADDRESS; "auto" is
    the one running here), else a live `ray start` on this machine; None: an embedded instance
    of its own. An address that answers nothing is refused at once (ray.init would wait minutes).
    """
    if given in (None, "", "auto"):
        found = running_cluster()
        if given == "auto" and found is None:
            raise preflight.Refusal(
                "RAY_ADDRESS=auto, but no Ray cluster runs on this machine: start one (`ray "
                "start --head`), give its address, or unset RAY_ADDRESS to run on an embedded one"
            )
        return found
    if why := unreachable(given):
        raise preflight.Refusal(
            f"no Ray cluster answers at {given} ({why}): give the address the head's `ray start` "
            "printed (host:6379), or drop --address / unset RAY_ADDRESS to run on this machine"
        )
    return given


def connect(address: str | None, verbose: bool = False) -> None:
    """Attach to the cluster at ``address`` (see cluster_address); None: start a fresh local
    instance of our own. Unless ``verbose``, the workers' output stays in Ray's log files (not
    forwarded here) and Ray's INFO lines are not printed (sweeps.engine.console)."""
    import logging

    import ray

    if ray.is_initialized():
        return
    quiet = {} if verbose else {"log_to_driver": False, "logging_level": logging.WARNING}
    if address:
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError) as e:
            raise SystemExit(f"error: cannot reach the Ray cluster at {address!r}: {e}") from None
        return
    ray.init(address="local", **quiet)


def ray_attached() -> bool:
    """Whether this process is connected to Ray (a caller's own Ray: tests, notebooks), without
    importing Ray: a process that never imported it cannot be."""
    return "ray" in sys.modules and sys.modules["ray"].is_initialized()


def trial_nodes() -> list[dict]:
    """The live nodes that can run a trial (they have CPUs or GPUs; a launcher's head has none)."""
    import ray  # here, not above: the command line imports this module before --help

    return [
        n
        for n in ray.nodes()
        if n["Alive"] and (n["Resources"].get("CPU") or n["Resources"].get("GPU"))
    ]


def storage_warning(storage: str, hosts: set[str]) -> str | None:
    """A local path is only right for a cluster if it is a shared mount (NFS) on every node."""
    if "://" in storage or len(hosts) <= 1:
        return None
    return (
        f"warning: --storage {storage} is a local path but the cluster spans {len(hosts)} "
        "machines: it must be a shared mount (NFS) on all of them, or use s3:// / gs://"
    )


def fitting_trials(resources: dict) -> int:
    """How many trials of this size the cluster holds now (at least 1)."""
    import ray

    total = ray.cluster_resources()
    fits = [total.get(name.upper(), 0) / need for name, need in resources.items() if need > 0]
    return max(1, int(min(fits, default=1) + 1e-9))


BOOTSTRAP_CONFIG = Path("~/ray_bootstrap_config.yaml")
"""The cluster launcher's config on the head node (``ray up`` / ``ray submit`` run there)."""


def node_types() -> list[dict] | None:
    """The resources of each node type the cluster's autoscaler can launch; None if unknown.

    Ray has no public API for them: autoscaler v2 publishes them in the GCS
    (``get_cluster_config``), the cluster launcher leaves its config on the head.
    """
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:  # noqa: BLE001 - another Ray, no GCS accessor: fall back to the file
        config = None
    if config is not None and config.node_group_configs:
        return [dict(g.resources) for g in config.node_group_configs if g.max_count != 0]
    path = BOOTSTRAP_CONFIG.expanduser()
    if not path.is_file():
        return None
    types = (yaml.safe_load(path.read_text()) or {}).get("available_node_types", {})
    shapes = [t.get("resources") for t in types.values() if t.get("max_workers", 1) != 0]
    # A type whose resources the launcher fills in from the instance type is not known here.
    return shapes if shapes and all(shapes) else None


def check_cluster_resources(resources: dict) -> None:
    """Refuse a trial no node can ever hold; warn where the autoscaler's node types are unknown."""
    import ray

    live = [n["Resources"] for n in ray.nodes() if n["Alive"]]
    types = node_types()
    if types is not None or preflight.fits(resources, live):
        preflight.check_resources(resources, live + (types or []), "of this cluster")
        return
    print(
        f"warning: no node of this cluster can hold a trial of {resources['cpu']:g} CPUs and "
        f"{resources['gpu']:g} GPUs now, and its node types are unknown here: trials wait for an "
        "autoscaler to add such a node (if the cluster does not autoscale, stop and lower "
        "--cpus-per-trial / --gpus-per-trial)",
        file=sys.stderr,
    )


def local_shape() -> dict:
    """What an embedded local Ray instance will offer: this machine's cores and GPUs."""
    import torch

    return {"CPU": os.cpu_count() or 1, "GPU": torch.cuda.device_count()}


def requested(settings: Settings, offered: dict) -> dict:
    """One trial's resources: --gpus-per-trial defaults to 1 where there are GPUs, else 0."""
    gpus = settings.gpus_per_trial
    if gpus is None:
        gpus = 1.0 if offered.get("GPU", 0) > 0 else 0.0
    return {"cpu": settings.cpus_per_trial, "gpu": gpus}
