"""A sweep submitted as a Ray job is visible through the dashboard's REST API, behind token auth."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from results import store
from tests.conftest import kill_process_group
from tests.e2e.test_multinode import TRIAL_ACTORS

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, token: str | None = None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, {}


def state_rows(body: dict) -> list[dict]:
    """The rows of a state API answer ({"data": {"result": {"result": [...]}}})."""
    return body["data"]["result"]["result"]


def test_a_sweep_job_seen_through_the_token_protected_dashboard(tmp_path, tiny_data_root):
    home, storage = tmp_path / "home", tmp_path / "sweep"
    home.mkdir()
    ray_tmp = tempfile.mkdtemp(prefix="rd", dir="/tmp")  # short: unix socket paths are limited
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "RAY_ADDRESS"))}
    env.update(HOME=str(home), VAE_DATA_ROOT=str(tiny_data_root), VAE_CACHE=str(tmp_path / "c"))

    groups = []  # every Ray process started here is in one of these, killed at the end

    def ray(*args, check=True, **extra_env):
        p = subprocess.Popen([RAY, *args], env={**env, **extra_env}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
        groups.append(p.pid)
        out, err = p.communicate()
        done = subprocess.CompletedProcess(p.args, p.returncode, out, err)
        assert done.returncode == 0 or not check, f"ray {args[0]}: {done.stdout}{done.stderr}"
        return done

    # docs/monitoring.md's way to get the token: generate it once, print it whenever it is needed.
    token = ray("get-auth-token", "--generate").stdout.strip()
    assert token and (home / ".ray" / "auth_token").read_text().strip() == token
    assert ray("get-auth-token").stdout.strip() == token

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        ray("start", "--head", f"--port={free_port()}", f"--dashboard-port={port}",
            "--dashboard-host=127.0.0.1", "--include-dashboard=true", "--num-cpus=2",
            f"--dashboard-agent-listen-port={free_port()}",
            "--num-gpus=0", f"--temp-dir={ray_tmp}", "--disable-usage-stats")  # fmt: skip
        deadline = time.time() + 60
        while get(f"{url}/api/jobs/", token)[0] != 200 and time.time() < deadline:
            time.sleep(0.5)
        assert get(f"{url}/api/jobs/")[0] == 401  # no token: refused
        assert get(f"{url}/api/jobs/", token)[0] == 200

        # The sweep as users submit it to a running cluster (README: `ray job submit`); a
        # client sends the token in ~/.ray/auth_token once RAY_AUTH_MODE=token says to.
        sweep = [sys.executable, "sweeps/vlae.py", "--budget", "smoke", "--trials", "2",
                 "--families", "vae", "--storage", str(storage)]  # fmt: skip
        for _ in range(60):  # until the node's agent takes jobs ("No available agent")
            submitted = ray("job", "submit", "--address", url, "--no-wait",
                            "--submission-id", "sweep-1", "--working-dir", str(REPO), "--",
                            *sweep, check=False, RAY_AUTH_MODE="token")  # fmt: skip
            if submitted.returncode == 0 or "No available agent" not in submitted.stderr:
                break
            time.sleep(1)
        assert submitted.returncode == 0, submitted.stderr

        statuses, trial_actors, nodes = set(), set(), []
        deadline = time.time() + 300
        while time.time() < deadline:
            code, job = get(f"{url}/api/jobs/sweep-1", token)
            assert code == 200, job
            statuses.add(job["status"])
            if job["status"] in ("SUCCEEDED", "FAILED", "STOPPED"):
                break
            code, actors = get(
                f"{url}/api/v0/actors?filter_keys=state&filter_predicates=%3D"
                "&filter_values=ALIVE&detail=false",
                token,
            )
            if code == 200:
                trial_actors |= {
                    a["actor_id"]
                    for a in state_rows(actors)
                    if a["class_name"].rsplit(".", 1)[-1] in TRIAL_ACTORS
                }
            code, body = get(f"{url}/api/v0/nodes", token)
            if code == 200:
                nodes = state_rows(body)
            time.sleep(0.3)
        logs = ray("job", "logs", "--address", url, "sweep-1", check=False, RAY_AUTH_MODE="token")
        logs = logs.stdout + logs.stderr
        assert job["status"] == "SUCCEEDED", logs[-3000:]
        assert "RUNNING" in statuses
        assert len(trial_actors) >= 1  # the trials, alive while the sweep ran
        assert [n["state"] for n in nodes] == ["ALIVE"] and nodes[0]["is_head_node"]
        assert get(f"{url}/api/v0/actors", None)[0] == 401
        assert len(store.load(str(storage), "trials")) == 2
    finally:
        for pgid in groups:
            kill_process_group(pgid)
        shutil.rmtree(ray_tmp, ignore_errors=True)
