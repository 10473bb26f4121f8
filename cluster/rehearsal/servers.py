"""The rehearsal's servers, each started in its step and stopped by the teardown.

- sshd on port 22 of each node address: the cluster's three "machines";
- moto's S3 server (the bucket), in a thread of this process;
- PostgreSQL 15 (the Optuna study of the second sweep), ``initdb`` into the rehearsal's dir;
- an HTTP server, the mirror: the datasets (MNIST in its real format, SHA256SUMS) and the nodes'
  package index (the wheels their setup needs beyond the image: the network has no route out).

Each ``stop()`` returns what it did, or "" when there was nothing to stop.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import logging
import os
import shutil
import subprocess
import threading
import urllib.request
from pathlib import Path

from processes import free_port, kill_all, state_of, wait_port
from runner import HERE, PYTHON, REPO, Runner, StepFailed, tail

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_ROLE, PG_PASSWORD, PG_DB = "vae", "rehearsal-pw", "optuna"
S3_KEYS = {
    "AWS_ACCESS_KEY_ID": "rehearsal",
    "AWS_SECRET_ACCESS_KEY": "rehearsal-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}
SSHD_CONFIG = """\
# The rehearsal's sshd (cluster/rehearsal/rehearse.py): the cluster's three "machines".
Port 22
{listen}
HostKey {host_key}
PidFile {pid_file}
AllowUsers {user}
PermitRootLogin no
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
X11Forwarding no
PrintMotd no
MaxStartups 100:30:200
MaxSessions 100
Subsystem sftp internal-sftp
"""


class Sshd:
    """sshd on port 22 of each node address, letting in the node user alone."""

    def __init__(self, run: Runner, work: Path):
        self.run, self.dir = run, work / "sshd"
        self.process = None

    def start(self, ips, user: str) -> str:
        """Start it and wait until each address answers."""
        self.dir.mkdir()
        host_key = self.dir / "ssh_host_ed25519_key"
        self.run.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key], log="sshd")
        config = self.dir / "sshd_config"
        listen = "\n".join(f"ListenAddress {ip}" for ip in ips)
        pid_file = self.dir / "sshd.pid"
        config.write_text(
            SSHD_CONFIG.format(listen=listen, host_key=host_key, pid_file=pid_file, user=user)
        )
        Path("/run/sshd").mkdir(exist_ok=True)  # its privilege separation directory
        self.run.run(["/usr/sbin/sshd", "-t", "-f", config], log="sshd")
        argv = ["/usr/sbin/sshd", "-D", "-e", "-f", config]
        self.process, log = self.run.start_server(argv, log="sshd")
        for ip in ips:
            if not wait_port(ip, 22, 15):
                raise StepFailed(f"sshd does not answer on {ip}:22", log=log)
        return f"pid {self.process.pid} on port 22 of {', '.join(ips)}"

    def stop(self) -> str:
        if self.process is None:
            return ""
        self.run.stop_group(self.process)
        return f"pid {self.process.pid} stopped"


class S3:
    """moto's S3 server on 127.0.0.1; ``env``: the AWS_* variables that reach it."""

    def __init__(self):
        self.server = None
        self.env: dict[str, str] = {}

    def start(self, bucket: str, log: Path) -> str:
        """Start the server and create the bucket; its request errors go to ``log`` (an upload
        cut by the killed worker ends in a werkzeug traceback: expected, not the console's)."""
        from moto.server import ThreadedMotoServer

        werkzeug = logging.getLogger("werkzeug")
        werkzeug.setLevel(logging.ERROR)  # not a line per request
        werkzeug.addHandler(logging.FileHandler(log))
        werkzeug.propagate = False
        port = free_port()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.server.start()
        self.env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", **S3_KEYS}
        import boto3

        boto3.client(
            "s3",
            endpoint_url=self.env["AWS_ENDPOINT_URL"],
            aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"],
            region_name=S3_KEYS["AWS_DEFAULT_REGION"],
        ).create_bucket(Bucket=bucket)
        return f"127.0.0.1:{port}, bucket {bucket}"

    def stop(self) -> str:
        if self.server is None:
            return ""
        self.server.stop()
        return "stopped"


class Postgres:
    """PostgreSQL 15 on 127.0.0.1, run as the postgres user from a data dir of the rehearsal's;
    ``url``: the database of the Optuna study."""

    def __init__(self, run: Runner, work: Path):
        self.run, self.dir, self.data = run, work / "pg", work / "pg" / "data"
        self.port, self.url = 0, ""

    def start(self) -> str:
        """initdb, start it, create the study's role and database."""
        self.dir.mkdir(mode=0o700)
        shutil.chown(self.dir, "postgres", "postgres")
        pw = self.dir / "superuser-password"
        pw.write_text(PG_PASSWORD + "-admin\n")
        shutil.chown(pw, "postgres", "postgres")
        self.port = free_port()
        initdb = [PG_BIN / "initdb", "-D", self.data, "-U", "postgres", "-E", "UTF8"]
        initdb += ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pw}"]
        self.run.run([*initdb, "--no-instructions"], user="postgres", log="postgres")
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.dir}"
        )
        pg_ctl = [PG_BIN / "pg_ctl", "-D", self.data, "-l", self.dir / "server.log"]
        pg_ctl += ["-w", "-t", "60", "-o", options, "start"]
        self.run.run(pg_ctl, user="postgres", log="postgres")
        self.psql("postgres", f"CREATE ROLE {PG_ROLE} LOGIN PASSWORD '{PG_PASSWORD}'", "postgres")
        self.psql("postgres", f"CREATE DATABASE {PG_DB} OWNER {PG_ROLE}", "postgres")
        self.url = f"postgresql://{PG_ROLE}:{PG_PASSWORD}@127.0.0.1:{self.port}/{PG_DB}"
        pid = (self.data / "postmaster.pid").read_text().split()[0]
        return f"pid {pid} on 127.0.0.1:{self.port}, database {PG_DB}"

    def psql(self, db: str, sql: str, log: str) -> str:
        """Run one SQL statement as the superuser; its output's last line."""
        argv = [PG_BIN / "psql", "-h", self.dir, "-p", self.port, "-U", "postgres", "-d", db]
        argv += ["-v", "ON_ERROR_STOP=1", "-tA", "-c", sql]
        _, path = self.run.run(argv, user="postgres", log=log)
        return tail(path, 1).strip()

    def stop(self) -> str:
        """pg_ctl stop; the postmaster killed by its PID if that did not end it."""
        if not (self.data / "postmaster.pid").exists():
            return ""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        pg_ctl = [PG_BIN / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "30", "stop"]
        runuser = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*runuser, *pg_ctl], capture_output=True)
        self.run.reap()
        if state_of(pid) not in ("", "Z"):
            kill_all([pid])
            return f"pid {pid} killed (pg_ctl stop did not end it)"
        return f"pid {pid} stopped (pg_ctl stop)"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """A file server that logs each request to ``log_path``, not to stderr."""

    log_path: Path | None = None

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        if self.log_path:
            with open(self.log_path, "a") as f:
                f.write(f"{self.address_string()} {format % args}\n")


class Mirror:
    """The HTTP server the nodes download from: ``root``/wheels/ (their package index),
    ``root``/mnist/ and ``root``/SHA256SUMS (the datasets); ``url``: where it serves them."""

    def __init__(self, run: Runner, root: Path):
        self.run, self.root = run, root
        self.http = None
        self.url = ""

    def download_wheels(self, build_requires: list[str], cluster_extra: list[str]) -> str:
        """The wheels the node setup installs beyond the image (the build backend of `pip
        install -e`, the [cluster] extra), fetched while the host's network is still here."""
        wheels = self.root / "wheels"
        wheels.mkdir(parents=True)
        cache = self.root.parent / "pip-cache"
        download = [PYTHON, "-m", "pip", "download", "--only-binary=:all:", "-d", wheels]
        download += ["--cache-dir", cache]
        self.run.run([*download, "--no-deps", *build_requires, "wheel"], log="wheelhouse")
        self.run.run([*download, *cluster_extra], log="wheelhouse")
        shutil.rmtree(cache, ignore_errors=True)
        return ", ".join(sorted(w.name.split("-")[0] for w in wheels.glob("*.whl")))

    def start(self, request_log: Path) -> str:
        """Write the datasets and their SHA256SUMS, then serve ``root`` on 127.0.0.1."""
        # Small real-format MNIST files (see mirror_files.py), then their SHA256SUMS.
        self.run.run(
            [PYTHON, HERE / "mirror_files.py", self.root],
            log="mirror",
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        files = sorted(f for f in (self.root / "mnist").iterdir())
        sums = [f"{hashlib.sha256(f.read_bytes()).hexdigest()}  mnist/{f.name}" for f in files]
        (self.root / "SHA256SUMS").write_text("\n".join(sums) + "\n")
        QuietHandler.log_path = request_log
        handler = functools.partial(QuietHandler, directory=str(self.root))
        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        with urllib.request.urlopen(f"{self.url}/SHA256SUMS", timeout=5) as r:
            assert b"mnist/train-images-idx3-ubyte.gz" in r.read()
        return f"{self.url}: mnist/ ({len(files)} files), SHA256SUMS, wheels/"

    def stop(self) -> str:
        if self.http is None:
            return ""
        self.http.shutdown()
        self.http.server_close()
        return "stopped"
