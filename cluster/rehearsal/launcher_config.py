"""The rehearsal's cluster-launcher config, made from cluster/gpu.yaml; the node user's shell init.

Pure helpers (stdlib + yaml), no I/O but reading gpu.yaml: rehearse.py writes what they return, and
tests/unit/test_rehearsal_config.py checks it against Ray's own validator.

The config is gpu.yaml with exactly these substitutions, each listed in the generated file's
header (``substitutions``):

- provider: AWS -> the on-premises provider (``type: local``) over three loopback "machines":
  head 127.0.0.1, workers 127.0.0.2 and 127.0.0.3, reached by SSH as a dedicated user.
- docker: dropped (no Docker here); the node user's venv plays the image (Ray, torch, ... from
  the project's .venv, reached through a .pth file).
- available_node_types / head_node_type: dropped, the local provider refuses them (it makes its
  own single type, ``local.cluster.node``, in ray.autoscaler._private.local.config.prepare_local);
  their resources move to the ``ray start`` flags: head ``--num-cpus=0`` (as gpu.yaml), workers
  ``--num-gpus=1`` and 1 CPU each (this machine has 2 cores, no GPU: trials fall back to the CPU).
- max_workers: the number of worker addresses (the provider caps it there anyway).
- /home/ray -> the node user's home, in file_mounts and commands.
- setup commands: each under one lock (three "nodes" share one home, like an NFS home: two
  pip installs into one venv at once would collide); ``pip install -e`` gets the ``[cluster]``
  extra when gpu.yaml names none (the PostgreSQL driver of ``--study-storage postgresql://``);
  ``python -m training data`` fetches the rehearsal's datasets from its local mirror (added to
  the workers' setup when gpu.yaml has no such command).
- ``ray stop`` dropped: it ends every Ray process of the user on the machine, that is the other
  two rehearsal "nodes" too; a rehearsal node always starts fresh.
- ``ray start``: ``--node-ip-address`` of the node (the address its sshd was reached at: the
  three nodes of one machine must differ); ``--dashboard-host=127.0.0.1``; ports that gpu.yaml
  fixes and that three nodes on one machine would share are left to Ray on the workers (object
  manager; dashboard agent, since a lost worker's agent may outlive its raylet); each node's own
  Ray temp dir (a worker defaults to the head's); a modest object store (three nodes share one
  machine's memory).
"""

from __future__ import annotations

import copy
import shlex
import textwrap
from dataclasses import dataclass
from pathlib import Path

import yaml

GPU_YAML = Path(__file__).resolve().parents[1] / "gpu.yaml"
NODE_USER = "vaenode"
HEAD_IP = "127.0.0.1"
WORKER_IPS = ("127.0.0.2", "127.0.0.3")
GPU_YAML_HOME = "/home/ray"
SETUP_LOCK = ".rehearsal-setup.lock"
SETUP_LISTS = (
    "initialization_commands",
    "setup_commands",
    "head_setup_commands",
    "worker_setup_commands",
)
WORKER_CPUS = 1
WORKER_GPUS = 1


@dataclass(frozen=True)
class Params:
    """What the rehearsal decides at run time (addresses of its servers, ports, paths)."""

    ssh_private_key: str
    mirror_url: str  # the dataset mirror: <url>/<dataset>/<file> and <url>/SHA256SUMS
    datasets: tuple[str, ...] = ("mnist",)
    user: str = NODE_USER
    gcs_port: int = 6379  # gpu.yaml's ports: free in the rehearsal's own network namespace
    dashboard_port: int = 8265
    head_object_manager_port: int = 8076
    object_store_bytes: int = 512 * 1024**2
    extra: str = "cluster"

    @property
    def home(self) -> str:
        return f"/home/{self.user}"


def load_gpu_yaml(path: Path = GPU_YAML) -> dict:
    return yaml.safe_load(path.read_text())


# ---- commands -------------------------------------------------------------------------------


def _flags(command: str) -> tuple[list[str], dict[str, str | None]]:
    """Split a ``ray start ...`` command (no quoting in it) into its words before the first flag
    and its ``--flag[=value]`` flags, in order."""
    words = command.split()
    head = [w for w in words if not w.startswith("--")]
    flags: dict[str, str | None] = {}
    for w in words:
        if w.startswith("--"):
            key, eq, value = w.partition("=")
            flags[key] = value if eq else None
    return head, flags


def _join(head: list[str], flags: dict[str, str | None]) -> str:
    return " ".join(head + [k if v is None else f"{k}={v}" for k, v in flags.items()])


def is_ray_stop(command: str) -> bool:
    return command.split()[:2] == ["ray", "stop"]


def head_start(command: str, p: Params) -> str:
    """gpu.yaml's ``ray start --head ...`` for the rehearsal's head (127.0.0.1)."""
    head, flags = _flags(command)
    flags["--port"] = str(p.gcs_port)
    if "--object-manager-port" in flags:
        flags["--object-manager-port"] = str(p.head_object_manager_port)
    flags["--dashboard-host"] = "127.0.0.1"
    flags["--dashboard-port"] = str(p.dashboard_port)
    flags["--node-ip-address"] = "$VAE_NODE_IP"
    flags["--object-store-memory"] = str(p.object_store_bytes)
    return _join(head, flags)


def worker_start(command: str, p: Params) -> str:
    """gpu.yaml's worker ``ray start --address=$RAY_HEAD_IP:6379 ...`` for a rehearsal worker."""
    head, flags = _flags(command)
    address = flags.get("--address") or "$RAY_HEAD_IP:6379"
    flags["--address"] = f"{address.rpartition(':')[0]}:{p.gcs_port}"
    flags.pop("--object-manager-port", None)  # Ray picks: three nodes share this machine
    flags["--node-ip-address"] = "$VAE_NODE_IP"
    flags["--num-cpus"] = str(WORKER_CPUS)
    flags["--num-gpus"] = str(WORKER_GPUS)
    flags["--dashboard-agent-listen-port"] = "0"  # Ray picks (a lost node's agent may linger)
    flags["--temp-dir"] = "$RAY_TMPDIR/ray"  # a worker defaults to the head's temp dir
    flags["--object-store-memory"] = str(p.object_store_bytes)
    return _join(head, flags)


def locked(command: str, p: Params) -> str:
    """The command under the setup lock shared by the three "nodes" (one home, one venv)."""
    return f"flock {p.home}/{SETUP_LOCK} bash -c {shlex.quote(command)}"


def with_extra(command: str, p: Params) -> str:
    """``pip install -e PATH`` -> ``pip install -e 'PATH[extra]'`` when PATH names no extra."""
    words = command.split()
    if words[:3] != ["pip", "install", "-e"] or len(words) < 4 or "[" in words[3]:
        return command
    words[3] = shlex.quote(f"{words[3]}[{p.extra}]")
    return " ".join(words)


def data_command(p: Params) -> str:
    """Fetch and verify the rehearsal's datasets from its mirror into the default data root."""
    return f"python -m training data --datasets {' '.join(p.datasets)} --mirror {p.mirror_url}"


def is_data_command(command: str) -> bool:
    return "-m training data" in command


# ---- the config -----------------------------------------------------------------------------


def rehearsal_config(gpu: dict, p: Params) -> tuple[dict, list[str]]:
    """(the launcher config for the rehearsal, the substitutions made, one line each)."""
    gpu = copy.deepcopy(gpu)
    notes: list[str] = []

    def home(text: str) -> str:
        return text.replace(GPU_YAML_HOME, p.home)

    cfg: dict = {"cluster_name": f"{gpu['cluster_name']}-rehearsal"}
    notes.append(f"cluster_name: {gpu['cluster_name']} -> {cfg['cluster_name']}")
    cfg["max_workers"] = len(WORKER_IPS)
    notes.append(f"max_workers: {gpu.get('max_workers')} -> {len(WORKER_IPS)} (worker addresses)")
    for key in ("upscaling_speed", "idle_timeout_minutes"):
        if key in gpu:
            cfg[key] = gpu[key]
    if "docker" in gpu:
        notes.append(
            f"docker ({gpu['docker'].get('image')}): dropped, no Docker here; the node user's "
            "venv is the image (the project's .venv packages through a .pth file)"
        )
    cfg["provider"] = {"type": "local", "head_ip": HEAD_IP, "worker_ips": list(WORKER_IPS)}
    notes.append(
        f"provider: {gpu['provider']['type']} -> local (on-premises), head {HEAD_IP}, "
        f"workers {', '.join(WORKER_IPS)}: loopback addresses of this machine, sshd on each"
    )
    cfg["auth"] = {"ssh_user": p.user, "ssh_private_key": p.ssh_private_key}
    notes.append(f"auth: ssh_user {gpu['auth'].get('ssh_user')} -> {p.user} (a dedicated user)")
    types = gpu.get("available_node_types", {})
    if types:
        shapes = ", ".join(f"{name} {t.get('resources')}" for name, t in types.items())
        notes.append(
            f"available_node_types ({shapes}), head_node_type: dropped, the local provider "
            "refuses them; their resources are ray start flags: head --num-cpus=0, workers "
            f"--num-cpus={WORKER_CPUS} --num-gpus={WORKER_GPUS} (no GPU here: trials use the CPU)"
        )
    cfg["file_mounts"] = {home(k): v for k, v in gpu.get("file_mounts", {}).items()}
    if cfg["file_mounts"] != gpu.get("file_mounts", {}):
        notes.append(f"file_mounts, commands: {GPU_YAML_HOME} -> {p.home}")
    if "rsync_exclude" in gpu:
        cfg["rsync_exclude"] = list(gpu["rsync_exclude"])

    found_data = False
    for key in SETUP_LISTS:
        if key not in gpu:
            continue
        commands = []
        for command in gpu[key]:
            new = with_extra(home(command), p)
            if new != home(command):
                notes.append(f"{key}: {command!r} -> {new!r} (the PostgreSQL driver)")
            if is_data_command(new):
                found_data = True
                new = data_command(p)
                notes.append(
                    f"{key}: {command!r} -> {new!r}: the local mirror (as a cluster without "
                    "internet would use one), holding the rehearsal's datasets"
                )
            commands.append(locked(new, p))
        cfg[key] = commands
    if not found_data:
        cfg.setdefault("worker_setup_commands", []).append(locked(data_command(p), p))
        notes.append("worker_setup_commands: + the dataset fetch from the local mirror")
    locked_lists = [key for key in SETUP_LISTS if cfg.get(key)]
    notes.append(
        f"{', '.join(locked_lists)}: each command under flock {p.home}/{SETUP_LOCK} (the three "
        "nodes share one home and venv)"
    )

    starts = {}
    for key, convert in (
        ("head_start_ray_commands", head_start),
        ("worker_start_ray_commands", worker_start),
    ):
        commands = gpu.get(key, [])
        if any(is_ray_stop(c) for c in commands):
            notes.append(
                f"{key}: `ray stop` dropped (it would end the other rehearsal nodes' Ray "
                "processes, all of one user on one machine; a rehearsal node starts fresh)"
            )
        starts[key] = [convert(c, p) for c in commands if not is_ray_stop(c)]
    cfg.update(starts)
    notes.append(
        "head_start_ray_commands, worker_start_ray_commands: --node-ip-address=$VAE_NODE_IP "
        "(the node's loopback address), "
        f"--dashboard-host=127.0.0.1, GCS port {p.gcs_port}, dashboard {p.dashboard_port}; "
        "workers: object manager and dashboard agent ports left to Ray (three nodes, one "
        f"machine), --temp-dir of their own, --object-store-memory={p.object_store_bytes}"
    )
    return cfg, notes


def render(cfg: dict, notes: list[str], source: Path = GPU_YAML) -> str:
    """The config as YAML, its substitutions as the header comment."""
    lines = [
        f"# Generated by cluster/rehearsal/rehearse.py from {source.name}: the same launcher",
        "# config on this machine's loopback addresses. Deliberate substitutions:",
    ]
    for note in notes:
        lines += textwrap.wrap(note, 96, initial_indent="#   - ", subsequent_indent="#     ")
    return "\n".join(lines) + "\n\n" + yaml.safe_dump(cfg, sort_keys=False, width=10_000)


# ---- the node user's environment ------------------------------------------------------------


def node_bashrc(p: Params, venv: str, s3_env: dict[str, str], pip_index: str) -> str:
    """~/.bashrc of the node user: what a node's image and instance profile give every shell.

    The launcher runs each command through ``bash --login -c -i 'source ~/.bashrc; ...'``, so
    everything a node needs is here, before anything that prints."""
    aws = " ".join(f"{k}={shlex.quote(v)}" for k, v in s3_env.items())
    return f"""# The node user of cluster/rehearsal/rehearse.py; three "nodes" share this home.
# Which node this shell is on: the address its sshd was reached at (SSH_CONNECTION's 3rd field).
VAE_NODE_IP=$(set -- ${{SSH_CONNECTION:-}}; echo ${{3:-{HEAD_IP}}})
export VAE_NODE_IP
# The node's Python, as an image would have it: a venv that reaches the project's .venv packages.
export PATH={venv}/bin:$PATH
# Each node keeps its Ray files apart; usage stats off.
export RAY_TMPDIR=$HOME/t/$VAE_NODE_IP RAY_USAGE_STATS_ENABLED=0
mkdir -p "$RAY_TMPDIR"
# The S3 endpoint and credentials, as an instance profile gives them on a real node (the
# rehearsal's moto server); pyarrow, boto and Ray's storage read these variables.
export {aws}
# The package index of the nodes: the rehearsal's mirror (its network has no route out).
export PIP_NO_INDEX=1 PIP_FIND_LINKS={pip_index} PIP_DISABLE_PIP_VERSION_CHECK=1
"""
