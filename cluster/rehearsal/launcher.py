"""The cluster, through Ray's cluster launcher as a user would drive it: the config made from
gpu.yaml (launcher_config.py), ``ray up``, ``ray submit``; the nodes seen through Ray's state API
on the head's dashboard; a busy worker's raylet killed by its PID.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import urllib.request
from pathlib import Path

import launcher_config as lc
from nodes import HOME, NODE_VENV
from processes import processes
from runner import BIN, REPO, Runner, StepFailed, say

TRIAL_ACTORS = {"TrainTrial", "ResourceTrainable"}  # as in tests/e2e/test_multinode.py


class Launcher:
    """`ray up` and `ray submit` of one cluster config, run from ``work``."""

    def __init__(self, run: Runner, work: Path):
        self.run, self.work = run, work
        self.config = work / "cluster.yaml"
        self.cluster_name = ""
        self.params: lc.Params | None = None

    def write_config(self, key: Path, mirror_url: str) -> list[str]:
        """The launcher config from gpu.yaml (a copy in ``logs``); its substitutions."""
        self.params = lc.Params(ssh_private_key=str(key), mirror_url=mirror_url)
        cfg, notes = lc.rehearsal_config(lc.load_gpu_yaml(), self.params)
        self.cluster_name = cfg["cluster_name"]
        self.config.write_text(lc.render(cfg, notes))
        shutil.copyfile(self.config, self.run.logs / "cluster.yaml")
        return notes

    def node_bashrc(self, s3_env: dict[str, str], mirror_url: str) -> str:
        """The node user's ~/.bashrc for this config: its venv, the bucket, the package index."""
        return lc.node_bashrc(self.params, str(NODE_VENV), s3_env, f"{mirror_url}/wheels/")

    def launcher_env(self) -> dict:
        """The launcher's environment (this process's, and the settings below)."""
        for d in ("launcher", "tmp"):
            (self.work / d).mkdir(exist_ok=True)
        return {
            **os.environ,
            # The launcher's own files (cluster state, config cache) in the rehearsal's dir.
            "RAY_TMPDIR": str(self.work / "launcher"),
            "TMPDIR": str(self.work / "tmp"),
            "RAY_USAGE_STATS_ENABLED": "0",
            # The head's autoscaler v1. Ray 2.60's default, v2, counts the on-premises head
            # against the one node type the local provider makes for head and workers alike
            # (max_workers = the number of worker_ips): it keeps the head and ONE worker, and
            # asks for the second every 5 s without ever launching it.
            "RAY_UP_enable_autoscaler_v2": "0",
        }

    def up(self) -> None:
        """`ray up`: the head set up and started over SSH (its autoscaler does the workers)."""
        argv = [BIN / "ray", "up", "-y", "--no-config-cache", self.config]
        self.run.run(argv, log="ray-up", cwd=REPO, env=self.launcher_env(), timeout=480)

    def submit_argv(self, script, *args) -> list:
        return [BIN / "ray", "submit", self.config, script, *args]

    def submit(self, script, *args, log: str, timeout: float):
        """`ray submit` to its end; (exit code, log) as Runner.run."""
        argv = self.submit_argv(script, *args)
        return self.run.run(argv, log=log, cwd=REPO, env=self.launcher_env(), timeout=timeout)

    # -- the nodes, through Ray's state API --

    def state(self, kind: str, **filters) -> list[dict]:
        """Ray's state API on the head's dashboard (127.0.0.1 in our namespace)."""
        query = "limit=10000&detail=false"
        for key, value in filters.items():
            query += f"&filter_keys={key}&filter_predicates=%3D&filter_values={value}"
        url = f"http://127.0.0.1:{self.params.dashboard_port}/api/v0/{kind}?{query}"
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())["data"]["result"]["result"]

    def alive_nodes(self) -> dict[str, dict]:
        """{address: node} of the nodes alive now; {} while the dashboard does not answer."""
        try:
            return {n["node_ip"]: n for n in self.state("nodes") if n["state"] == "ALIVE"}
        except (OSError, ValueError, KeyError):
            return {}

    def wait_nodes(self, ips: set[str], timeout: float, not_ids=()) -> dict[str, dict]:
        """Wait until a node is alive at each address (not one of ``not_ids``)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.run.reap()
            nodes = self.alive_nodes()
            if all(ip in nodes and nodes[ip]["node_id"] not in not_ids for ip in ips):
                return nodes
            time.sleep(2)
        logs = HOME / "t" / lc.HEAD_IP / "ray" / "session_latest" / "logs"
        raise StepFailed(
            f"no node alive at {sorted(ips - set(nodes))} after {timeout:.0f} s "
            "(the head's autoscaler logs below)",
            log=logs / "monitor.log",
            more=[logs / "monitor.out", logs / "monitor.err"],
        )

    def kill_a_busy_worker(self, node_uid: int):
        """Once a trial's actor is alive on a worker, SIGKILL that worker's raylet (by PID):
        (what was killed, the worker's address, its node id, when); None until then."""
        try:
            nodes = {n["node_id"]: n["node_ip"] for n in self.state("nodes")}
            actors = self.state("actors", state="ALIVE")
        except (OSError, ValueError, KeyError):
            return None
        for actor in actors:
            ip = nodes.get(actor.get("node_id"))
            if (
                actor.get("class_name", "").rsplit(".", 1)[-1] in TRIAL_ACTORS
                and ip in lc.WORKER_IPS
            ):
                return self.kill_raylet(ip, actor, node_uid)
        return None

    def kill_raylet(self, ip: str, actor: dict, node_uid: int):
        """SIGKILL the raylet of the node user at ``ip``, where ``actor`` runs (see above)."""
        raylets = [
            p.pid
            for p in processes()
            if p.uid == node_uid
            and p.comm == "raylet"
            and f"--node_ip_address={ip} " in p.cmdline + " "
        ]
        if len(raylets) != 1:
            return None
        os.kill(raylets[0], signal.SIGKILL)
        say(
            f"  SIGKILL to the raylet of worker {ip} (pid {raylets[0]}): trial actor "
            f"{actor['actor_id'][:8]} ran there"
        )
        return f"{ip}'s raylet (pid {raylets[0]})", ip, actor["node_id"], time.monotonic()
