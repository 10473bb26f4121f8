"""`make cluster`: the README's cluster path, rehearsed on this machine with real parts.

    ray up cluster/gpu.yaml                                  (here: a config made from it)
    ray submit cluster/gpu.yaml sweeps/spvae.py ... --storage s3://BUCKET/...
    python -m results table spvae --storage s3://BUCKET/...  (on the "laptop")

Everything below is started here and stopped here by PID, also on a failure, Ctrl-C or SIGTERM:

- a private network namespace (loopback only) that holds all of it: Ray's gRPC servers bind
  0.0.0.0 whatever --node-ip-address says (src/ray/rpc/grpc_server.cc), so only a namespace keeps
  them off the machine's network; no port here can collide with another Ray on the machine;
- sshd on 127.0.0.1, .2 and .3 port 22: the cluster's three "machines", one dedicated user
  (``vaenode``) whose venv reaches the project's .venv packages through a .pth file (the
  "image"); its ~/.bashrc holds the node's environment (S3 endpoint and keys, as an instance
  profile would give them);
- moto's S3 server (the bucket), PostgreSQL 15 (the Optuna study of the second sweep) and an
  HTTP server: the dataset mirror (MNIST in its real format, SHA256SUMS) and the nodes' package
  index (the wheels their setup needs beyond the image: the network has no route out);
- the cluster: ``ray up`` with the on-premises provider (a head with no trial resources, two
  workers with one "GPU" each, brought up by the head's autoscaler over SSH); ``ray submit`` of
  a node check; of the SPVAE smoke sweep onto S3 while one worker's raylet is SIGKILLed once a
  trial runs there (the autoscaler brings the node back); of a short sweep whose Optuna study
  lives in PostgreSQL;
- the laptop side: ``python -m results check / table / report`` against the bucket.

    sudo .venv/bin/python cluster/rehearsal/rehearse.py [--keep-logs DIR]

Prints each step with its time since the start, then a summary; exit 0 only if every check held.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import functools
import hashlib
import http.server
import json
import logging
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import tomllib
import urllib.request
from collections import namedtuple
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
import launcher_config as lc  # noqa: E402

PYTHON = sys.executable  # the project's .venv: the "laptop", and the nodes' packages
BIN = Path(PYTHON).parent
PG_BIN = Path("/usr/lib/postgresql/15/bin")
USER = lc.NODE_USER
HOME = Path(f"/home/{USER}")
NODE_VENV = HOME / "venv"
NODE_IPS = (lc.HEAD_IP, *lc.WORKER_IPS)
WORK_PREFIX = "vae-rehearsal-"
LOCK = Path("/run/lock/vae-sweeps-rehearsal.lock")
BUCKET = "vae-rehearsal"
S3_KEYS = {
    "AWS_ACCESS_KEY_ID": "rehearsal",
    "AWS_SECRET_ACCESS_KEY": "rehearsal-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}
PG_ROLE, PG_PASSWORD, PG_DB = "vae", "rehearsal-pw", "optuna"
TRIAL_ACTORS = {"TrainTrial", "ResourceTrainable"}  # as in tests/test_multinode.py

# The sweeps: the SPVAE paper's smoke budget on the mirror's MNIST, one family (2 cells).
SWEEP = ["--budget", "smoke", "--datasets", "mnist", "--families", "spvae_vae"]
MAIN_STORAGE = f"s3://{BUCKET}/rehearsal"  # the Optuna journals: beside it (no --study-storage)
PG_STORAGE = f"s3://{BUCKET}/rehearsal-pg"

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

Proc = namedtuple("Proc", "pid ppid uid state comm cmdline")
T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f} s] {message}", flush=True)


class Interrupted(BaseException):
    """SIGINT or SIGTERM: tear down, exit 1."""


class StepFailed(Exception):
    def __init__(self, what: str, command=None, log: Path | None = None, more=()):
        super().__init__(what)
        self.what, self.command, self.log, self.more = what, command, log, list(more)


# ---- processes, ports, the namespace --------------------------------------------------------


def processes() -> list[Proc]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            uid = os.stat(f"/proc/{entry}").st_uid
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        cmdline = raw.replace(b"\0", b" ").decode(errors="replace").strip()
        out.append(Proc(int(entry), int(ppid), uid, state, comm, cmdline))
    return out


def descendants(root: int, table: list[Proc]) -> list[Proc]:
    children: dict[int, list[Proc]] = {}
    for p in table:
        children.setdefault(p.ppid, []).append(p)
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child.pid)
    return out


def kill_all(pids, grace: float = 3.0) -> None:
    """SIGTERM each PID, then SIGKILL those still there after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        end = time.monotonic() + grace
        while time.monotonic() < end and any(state_of(pid) not in ("", "Z") for pid in pids):
            time.sleep(0.2)


def state_of(pid: int) -> str:
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2 :].split()[0]
    return ""


def listeners() -> dict[tuple[str, int], str]:
    """{(address, port): process names} of every listening TCP socket in this namespace."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 4:
            address, _, port = fields[3].rpartition(":")
            names = ",".join(sorted(set(re.findall(r'\("([^"]+)"', line))))
            found[(address.strip("[]").removeprefix("::ffff:"), int(port))] = names
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return True
        time.sleep(0.2)
    return False


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").replace("\r", "")
    except OSError as e:
        return f"(cannot read {path}: {e})"
    return "\n".join(text.splitlines()[-lines:])


def enter_private_network() -> None:
    """Move this process (still single-threaded) into a new network namespace, loopback up:
    everything started afterwards inherits it, 127.0.0.0/8 is ours alone, and nothing in it is
    reachable from the machine's network or can collide with another process's port."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x40000000) != 0:  # CLONE_NEWNET
        err = ctypes.get_errno()
        raise StepFailed(
            f"no private network namespace: unshare: {os.strerror(err)} (the "
            "rehearsal needs root with CAP_SYS_ADMIN)"
        )
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH14s", b"lo", 0, b"\0" * 14)
        flags = struct.unpack("16sH14s", fcntl.ioctl(s, siocgifflags, request))[1]
        fcntl.ioctl(s, siocsifflags, struct.pack("16sH14s", b"lo", flags | iff_up, b"\0" * 14))


def become_subreaper() -> None:
    """Orphaned descendants (Ray's daemons once `ray start` exits, PostgreSQL's postmaster, ssh
    control masters) become our children: found, ended and reaped by PID."""
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    log_path: Path | None = None

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        if self.log_path:
            with open(self.log_path, "a") as f:
                f.write(f"{self.address_string()} {format % args}\n")


# ---- the rehearsal --------------------------------------------------------------------------


class Rehearsal:
    def __init__(self, args):
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX))
        self.work.chmod(0o711)  # postgres (its data dir is under here) must traverse it
        self.logs = self.work / "logs"
        self.logs.mkdir()
        self.steps: list[tuple[str, float, str]] = []
        self.current = ""
        self.inflight: set[subprocess.Popen] = set()
        self.sshd: subprocess.Popen | None = None
        self.moto = self.http = None
        self.pg_data: Path | None = None
        self.ports: dict[tuple[str, int], str] = {}
        self.node_uid: int | None = None
        self.cluster_name = ""
        self.storages: list[tuple[str, list[str]]] = []  # (storage, extra args of `check`)

    # -- running things --

    @contextlib.contextmanager
    def step(self, name: str):
        start, note = time.monotonic(), {"detail": ""}
        self.current = name
        yield note
        took = time.monotonic() - start
        self.steps.append((name, took, note["detail"]))
        say(f"{name}: {note['detail']} ({took:.1f} s)")

    def run(self, argv, *, log: str, timeout: float = 300, check=True, user=None, **kw):
        """Run a command to its end, its output appended to logs/<log>.log; a failure (or a
        timeout) is a StepFailed naming the command and the log."""
        argv = [str(a) for a in argv]
        if user:
            argv = ["runuser", "-u", user, "--", *argv]
        p, path = self.start(argv, log=log, **kw)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop_group(p)
            raise StepFailed(f"no end after {timeout:.0f} s", argv, path) from None
        except BaseException:
            self.stop_group(p)
            raise
        self.inflight.discard(p)
        if check and p.returncode != 0:
            raise StepFailed(f"exit code {p.returncode}", argv, path)
        return p.returncode, path

    def start(self, argv, *, log: str, **kw) -> tuple[subprocess.Popen, Path]:
        """Start a command in its own session (a Ctrl-C reaches us alone, we end it)."""
        argv = [str(a) for a in argv]
        path = self.logs / f"{log}.log"
        with open(path, "ab") as f:
            f.write(f"$ {shlex.join(argv)}\n".encode())
            f.flush()
            p = subprocess.Popen(
                argv,
                stdout=f,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                **kw,
            )
        self.inflight.add(p)
        return p, path

    def stop_group(self, p: subprocess.Popen, grace: float = 5) -> None:
        """End a process we started, with its process group, by its PID."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(grace)
                break
        self.inflight.discard(p)

    def reap(self, settle: float = 0.0) -> None:
        """Reap the zombies among our children that no Popen waits for (inherited orphans);
        with ``settle``, go on for up to that many seconds while some are left."""
        waited = {p.pid for p in self.inflight} | ({self.sshd.pid} if self.sshd else set())
        end = time.monotonic() + settle
        while True:
            zombies = [
                p.pid
                for p in processes()
                if p.ppid == os.getpid() and p.state == "Z" and p.pid not in waited
            ]
            for pid in zombies:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
            if not zombies or time.monotonic() > end:
                return
            time.sleep(0.2)

    def note_ports(self) -> None:
        """Remember every listening socket (all of them are ours: the namespace is)."""
        for key, names in listeners().items():
            self.ports.setdefault(key, names)

    # -- the host: checks, leftovers of a killed run, the nodes' wheels, the namespace --

    def preflight(self):
        with self.step("preflight") as s:
            if os.geteuid() != 0:
                raise StepFailed("run as root: it adds a user and starts sshd and PostgreSQL")
            tools = [
                "/usr/sbin/sshd",
                "rsync",
                "ssh",
                "ssh-keygen",
                "flock",
                "runuser",
                "useradd",
                "userdel",
                "ss",
                str(PG_BIN / "initdb"),
            ]
            missing = [tool for tool in tools if not shutil.which(tool)]
            if missing:
                raise StepFailed(f"missing: {', '.join(missing)} (`make cluster` installs them)")
            self.base_python = self.node_base_python()
            ray_init = Path(sysconfig.get_paths()["purelib"]) / "ray" / "__init__.py"
            if subprocess.run(["runuser", "-u", "nobody", "--", "test", "-r", ray_init]).returncode:
                raise StepFailed(
                    f"another user cannot read {ray_init}: the nodes' venv reaches "
                    "the .venv's packages, so every folder above them must be "
                    "readable (o+rx)"
                )
            pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
            self.build_requires = pyproject["build-system"]["requires"]
            self.cluster_extra = pyproject["project"]["optional-dependencies"].get("cluster")
            if not self.cluster_extra:
                raise StepFailed("pyproject.toml has no [cluster] extra (PostgreSQL's driver)")
            stale = self.clean_stale_runs()
            s["detail"] = f"node python {self.base_python}" + (f"; {stale}" if stale else "")

    def node_base_python(self) -> str:
        """A python of the .venv's version that another user can run (the .venv's own base may
        live under /root)."""
        want = f"{sys.version_info.major}.{sys.version_info.minor}"
        probe = "import sys, venv; print('%d.%d' % sys.version_info[:2])"
        for candidate in (
            getattr(sys, "_base_executable", ""),
            f"/usr/bin/python{want}",
            shutil.which(f"python{want}") or "",
        ):
            if candidate:
                real = os.path.realpath(candidate)
                out = subprocess.run(
                    ["runuser", "-u", "nobody", "--", real, "-c", probe],
                    capture_output=True,
                    text=True,
                )
                if out.returncode == 0 and out.stdout.strip() == want:
                    return real
        raise StepFailed(
            f"no python{want} that an ordinary user can run (apt install python{want}-venv)"
        )

    def clean_stale_runs(self) -> str:
        """What a rehearsal killed by SIGKILL left (we hold the lock: no other one runs): its
        node user's processes and user, the servers started from its dir (by PID), its dir."""
        notes = []
        with contextlib.suppress(KeyError):
            self.node_uid = pwd.getpwnam(USER).pw_uid
            notes.append(f"{self.end_node_processes()} processes of a stale {USER} ended")
            self.run(["userdel", "-r", USER], log="preflight", check=False)
            self.node_uid = None
        for old in Path(tempfile.gettempdir()).glob(f"{WORK_PREFIX}*"):
            if old == self.work:
                continue
            pids = [p.pid for p in processes() if str(old) in p.cmdline]
            kill_all(pids)
            self.reap()
            shutil.rmtree(old, ignore_errors=True)
            notes.append(f"{old} removed ({len(pids)} processes ended)")
        return "; ".join(notes)

    def wheelhouse(self):
        """The wheels the node setup installs beyond the image (the build backend of `pip
        install -e`, the [cluster] extra), fetched while the host's network is still here."""
        self.mirror = self.work / "mirror"
        wheels = self.mirror / "wheels"
        wheels.mkdir(parents=True)
        download = [
            PYTHON,
            "-m",
            "pip",
            "download",
            "--only-binary=:all:",
            "-d",
            wheels,
            "--cache-dir",
            self.work / "pip-cache",
        ]
        with self.step("wheelhouse") as s:
            self.run([*download, "--no-deps", *self.build_requires, "wheel"], log="wheelhouse")
            self.run([*download, *self.cluster_extra], log="wheelhouse")
            shutil.rmtree(self.work / "pip-cache", ignore_errors=True)
            s["detail"] = ", ".join(sorted(w.name.split("-")[0] for w in wheels.glob("*.whl")))

    def network(self):
        with self.step("network") as s:
            enter_private_network()
            s["detail"] = "a private network namespace: loopback only, no route out"

    # -- the node user: the "image" --

    def node_user(self):
        with self.step("node user") as s:
            self.run(
                ["useradd", "-m", "-s", "/bin/bash", "-c", "vae-sweeps rehearsal", USER],
                log="node-user",
            )
            # No password, but not locked: sshd (UsePAM no) refuses a locked ("!") account.
            self.run(["usermod", "-p", "*", USER], log="node-user")
            self.node_uid = pwd.getpwnam(USER).pw_uid
            self.key = self.work / "id_ed25519"
            self.run(
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "rehearsal-launcher",
                    "-f",
                    self.key,
                ],
                log="node-user",
            )
            ssh = HOME / ".ssh"
            ssh.mkdir(mode=0o700)
            (ssh / "authorized_keys").write_text(self.key.with_suffix(".pub").read_text())
            # The image: a venv whose site-packages reach the project's .venv packages.
            self.run([self.base_python, "-m", "venv", NODE_VENV], user=USER, log="node-user")
            (site,) = NODE_VENV.glob("lib/python3*/site-packages")
            ours = sysconfig.get_paths()
            reach = dict.fromkeys([ours["purelib"], ours["platlib"]])
            (site / "project-venv.pth").write_text("\n".join(reach) + "\n")
            ray_cli = (BIN / "ray").read_text().splitlines()  # the image's `ray` command
            (NODE_VENV / "bin" / "ray").write_text(
                "\n".join([f"#!{NODE_VENV}/bin/python", *ray_cli[1:]]) + "\n"
            )
            (NODE_VENV / "bin" / "ray").chmod(0o755)
            self.run(["chown", "-R", f"{USER}:{USER}", HOME], log="node-user")
            s["detail"] = f"{USER}, venv {NODE_VENV} reaching {ours['purelib']}"

    # -- the servers --

    def servers(self):
        with self.step("sshd") as s:
            d = self.work / "sshd"
            d.mkdir()
            host_key = d / "ssh_host_ed25519_key"
            self.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key], log="sshd")
            config = d / "sshd_config"
            listen = "\n".join(f"ListenAddress {ip}" for ip in NODE_IPS)
            config.write_text(
                SSHD_CONFIG.format(
                    listen=listen, host_key=host_key, pid_file=d / "sshd.pid", user=USER
                )
            )
            Path("/run/sshd").mkdir(exist_ok=True)  # its privilege separation directory
            self.run(["/usr/sbin/sshd", "-t", "-f", config], log="sshd")
            self.sshd, log = self.start(["/usr/sbin/sshd", "-D", "-e", "-f", config], log="sshd")
            self.inflight.discard(self.sshd)  # a server: the teardown ends it
            for ip in NODE_IPS:
                if not wait_port(ip, 22, 15):
                    raise StepFailed(f"sshd does not answer on {ip}:22", log=log)
            s["detail"] = f"pid {self.sshd.pid} on port 22 of {', '.join(NODE_IPS)}"

        with self.step("S3 (moto)") as s:
            from moto.server import ThreadedMotoServer

            logging.getLogger("werkzeug").setLevel(logging.ERROR)  # not a line per request
            port = free_port()
            self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
            self.moto.start()
            self.s3_env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", **S3_KEYS}
            import boto3

            boto3.client(
                "s3",
                endpoint_url=self.s3_env["AWS_ENDPOINT_URL"],
                aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"],
                region_name=S3_KEYS["AWS_DEFAULT_REGION"],
            ).create_bucket(Bucket=BUCKET)
            s["detail"] = f"127.0.0.1:{port}, bucket {BUCKET}"

        with self.step("PostgreSQL") as s:
            pg = self.work / "pg"
            pg.mkdir(mode=0o700)
            shutil.chown(pg, "postgres", "postgres")
            pw = pg / "superuser-password"
            pw.write_text(PG_PASSWORD + "-admin\n")
            shutil.chown(pw, "postgres", "postgres")
            self.pg_data, self.pg_dir, self.pg_port = pg / "data", pg, free_port()
            self.run(
                [
                    PG_BIN / "initdb",
                    "-D",
                    self.pg_data,
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    f"--pwfile={pw}",
                    "--no-instructions",
                ],
                user="postgres",
                log="postgres",
            )
            options = (
                f"-c listen_addresses=127.0.0.1 -c port={self.pg_port} "
                f"-c unix_socket_directories={pg}"
            )
            self.run(
                [
                    PG_BIN / "pg_ctl",
                    "-D",
                    self.pg_data,
                    "-l",
                    pg / "server.log",
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    options,
                    "start",
                ],
                user="postgres",
                log="postgres",
            )
            for sql in (
                f"CREATE ROLE {PG_ROLE} LOGIN PASSWORD '{PG_PASSWORD}'",
                f"CREATE DATABASE {PG_DB} OWNER {PG_ROLE}",
            ):
                self.psql("postgres", sql, log="postgres")
            self.pg_url = f"postgresql://{PG_ROLE}:{PG_PASSWORD}@127.0.0.1:{self.pg_port}/{PG_DB}"
            pid = (self.pg_data / "postmaster.pid").read_text().split()[0]
            s["detail"] = f"pid {pid} on 127.0.0.1:{self.pg_port}, database {PG_DB}"

        with self.step("mirror") as s:
            # Small real-format MNIST files (see mirror_files.py), then their SHA256SUMS.
            self.run(
                [PYTHON, HERE / "mirror_files.py", self.mirror],
                log="mirror",
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
            files = sorted(f for f in (self.mirror / "mnist").iterdir())
            sums = [f"{hashlib.sha256(f.read_bytes()).hexdigest()}  mnist/{f.name}" for f in files]
            (self.mirror / "SHA256SUMS").write_text("\n".join(sums) + "\n")
            QuietHandler.log_path = self.logs / "http.log"
            handler = functools.partial(QuietHandler, directory=str(self.mirror))
            self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
            threading.Thread(target=self.http.serve_forever, daemon=True).start()
            self.mirror_url = f"http://127.0.0.1:{self.http.server_address[1]}"
            with urllib.request.urlopen(f"{self.mirror_url}/SHA256SUMS", timeout=5) as r:
                assert b"mnist/train-images-idx3-ubyte.gz" in r.read()
            s["detail"] = f"{self.mirror_url}: mnist/ ({len(files)} files), SHA256SUMS, wheels/"

    def psql(self, db: str, sql: str, log: str) -> str:
        argv = [
            PG_BIN / "psql",
            "-h",
            self.pg_dir,
            "-p",
            self.pg_port,
            "-U",
            "postgres",
            "-d",
            db,
            "-v",
            "ON_ERROR_STOP=1",
            "-tA",
            "-c",
            sql,
        ]
        _, path = self.run(argv, user="postgres", log=log)
        return tail(path, 1).strip()

    # -- the launcher config and the nodes' shell init --

    def launcher_config(self):
        with self.step("launcher config") as s:
            self.params = lc.Params(ssh_private_key=str(self.key), mirror_url=self.mirror_url)
            cfg, notes = lc.rehearsal_config(lc.load_gpu_yaml(), self.params)
            self.cluster_name = cfg["cluster_name"]
            self.config = self.work / "cluster.yaml"
            self.config.write_text(lc.render(cfg, notes))
            shutil.copyfile(self.config, self.logs / "cluster.yaml")
            bashrc = lc.node_bashrc(
                self.params, str(NODE_VENV), self.s3_env, f"{self.mirror_url}/wheels/"
            )
            (HOME / ".bashrc").write_text(bashrc)
            shutil.chown(HOME / ".bashrc", USER, USER)
            self.note_ports()
            s["detail"] = f"{self.config.name} from gpu.yaml, {len(notes)} substitutions:"
        for note in notes:
            say(f"  - {note}")
        say("  - launcher environment: RAY_UP_enable_autoscaler_v2=0 (see launcher_env)")

    def launcher_env(self) -> dict:
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

    # -- the cluster --

    def state(self, kind: str, **filters) -> list[dict]:
        """Ray's state API on the head's dashboard (127.0.0.1 in our namespace)."""
        query = "limit=10000&detail=false"
        for key, value in filters.items():
            query += f"&filter_keys={key}&filter_predicates=%3D&filter_values={value}"
        url = f"http://127.0.0.1:{self.params.dashboard_port}/api/v0/{kind}?{query}"
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())["data"]["result"]["result"]

    def alive_nodes(self) -> dict[str, dict]:
        with contextlib.suppress(OSError, ValueError, KeyError):
            return {n["node_ip"]: n for n in self.state("nodes") if n["state"] == "ALIVE"}
        return {}

    def ray_up(self):
        with self.step("ray up") as s:
            self.run(
                [BIN / "ray", "up", "-y", "--no-config-cache", self.config],
                log="ray-up",
                cwd=REPO,
                env=self.launcher_env(),
                timeout=480,
            )
            s["detail"] = "the head set up and started over SSH"
        with self.step("workers") as s:
            nodes = self.wait_nodes(set(NODE_IPS), 480)
            self.note_ports()
            shapes = []
            for ip, n in sorted(nodes.items()):
                have = {k: v for k, v in n["resources_total"].items() if k in ("CPU", "GPU")}
                shapes.append(f"{ip} {have or '(no CPU, no GPU)'}")
            s["detail"] = f"the head and {len(nodes) - 1} workers alive: {', '.join(shapes)}"

    def wait_nodes(self, ips: set[str], timeout: float, not_ids=()) -> dict[str, dict]:
        """Wait until a node is alive at each address (not one of ``not_ids``)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.reap()
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

    def submit(self, script, *args, log: str, timeout: float):
        argv = [BIN / "ray", "submit", self.config, script, *args]
        return self.run(argv, log=log, cwd=REPO, env=self.launcher_env(), timeout=timeout)

    def node_check(self):
        with self.step("ray submit: node check") as s:
            _, log = self.submit(HERE / "node_check.py", log="node-check", timeout=180)
            found = re.search(r"^NODES (.*)$", log.read_text().replace("\r", ""), re.M)
            if not found:
                raise StepFailed("no NODES line in its output", log=log)
            report = json.loads(found.group(1))
            if report["problems"]:
                raise StepFailed(json.dumps(report["problems"]), log=log)
            s["detail"] = (
                f"driver on {report['driver']}; tasks on "
                f"{' and '.join(report['workers'])} see S3 and MNIST"
            )

    # -- the sweeps --

    def sweep(self):
        with self.step("ray submit: sweep, a worker killed") as s:
            argv = [
                BIN / "ray",
                "submit",
                self.config,
                REPO / "sweeps" / "spvae.py",
                *SWEEP,
                "--storage",
                MAIN_STORAGE,
                "--winner-seeds",
                "1",
            ]
            p, log = self.start(argv, log="sweep", cwd=REPO, env=self.launcher_env())
            self.killed, end, noted = None, time.monotonic() + 600, 0.0
            try:
                while p.poll() is None:
                    if time.monotonic() > end:
                        raise StepFailed("no end after 600 s", argv, log)
                    self.reap()
                    if time.monotonic() - noted > 5:
                        self.note_ports()
                        noted = time.monotonic()
                    self.killed = self.killed or self.kill_a_busy_worker()
                    time.sleep(1)
            except BaseException:
                self.stop_group(p)
                raise
            self.inflight.discard(p)
            if p.returncode != 0:
                raise StepFailed(f"exit code {p.returncode}", argv, log)
            if self.killed is None:
                raise StepFailed("the sweep ended before a trial ran on a worker", argv, log)
            trials = self.trial_rows(MAIN_STORAGE, log)
            retried = [t for t, row in trials.items() if row.get("retries")]
            if not retried:
                raise StepFailed(f"no trial retried after the SIGKILL of {self.killed}", log=log)
            self.storages.append((MAIN_STORAGE, []))
            s["detail"] = (
                f"{len(trials)} trials, each with a row, {len(retried)} retried "
                f"({', '.join(retried)}) after the SIGKILL of {self.killed[0]}"
            )

    def kill_a_busy_worker(self):
        """Once a trial's actor is alive on a worker, SIGKILL that worker's raylet (by PID)."""
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
                raylets = [
                    p.pid
                    for p in processes()
                    if p.uid == self.node_uid
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
        return None

    def lost_worker_back(self):
        """The head's autoscaler notices the lost node and starts Ray there again."""
        with self.step("lost worker back") as s:
            _, ip, old_id, when = self.killed
            nodes = self.wait_nodes(set(NODE_IPS), 240, not_ids={old_id})
            s["detail"] = (
                f"{ip} alive again as node {nodes[ip]['node_id'][:8]}, "
                f"{time.monotonic() - when:.0f} s after the kill"
            )

    def trial_rows(self, storage: str, log: Path) -> dict[str, dict]:
        """Every trial's row in the bucket, each completed or pruned."""
        import pyarrow.fs as pafs
        import pyarrow.parquet as pq

        fs = pafs.S3FileSystem(
            endpoint_override=self.s3_env["AWS_ENDPOINT_URL"],
            access_key=S3_KEYS["AWS_ACCESS_KEY_ID"],
            secret_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"],
            region=S3_KEYS["AWS_DEFAULT_REGION"],
        )
        root = storage.removeprefix("s3://") + "/results/trials"
        parts = [
            f.path
            for f in fs.get_file_info(pafs.FileSelector(root, recursive=True))
            if f.path.endswith(".parquet")
        ]
        trials = {
            row["trial_id"]: row
            for part in parts
            for row in pq.read_table(part, filesystem=fs).to_pylist()
        }
        bad = {
            t: r.get("status")
            for t, r in trials.items()
            if r.get("status") not in ("completed", "pruned")
        }
        if not trials or bad:
            raise StepFailed(
                f"trial rows under {storage}: {len(trials)}; not ended well: {bad}", log=log
            )
        return trials

    def pg_sweep(self):
        with self.step("ray submit: sweep, study in PostgreSQL") as s:
            _, log = self.submit(
                REPO / "sweeps" / "spvae.py",
                *SWEEP,
                "--trials",
                "1",
                "--storage",
                PG_STORAGE,
                "--study-storage",
                self.pg_url,
                "--winner-seeds",
                "1",
                log="sweep-pg",
                timeout=420,
            )
            self.note_ports()
            trials = self.trial_rows(PG_STORAGE, log)
            studies = self.psql(PG_DB, "SELECT count(*) FROM studies", log="postgres")
            stored = self.psql(PG_DB, "SELECT count(*) FROM trials", log="postgres")
            if int(stored) != len(trials):
                raise StepFailed(
                    f"PostgreSQL holds {stored} Optuna trials for {len(trials)} rows", log=log
                )
            self.storages.append((PG_STORAGE, ["--study-storage", self.pg_url]))
            s["detail"] = (
                f"{len(trials)} trials, each with a row; PostgreSQL holds their "
                f"{studies} studies and {stored} Optuna trials"
            )

    # -- the laptop side: this process, the AWS_* variables pointing at the bucket --

    def laptop(self):
        env = {**os.environ, **self.s3_env}
        results = [PYTHON, "-m", "results"]
        for storage, extra in self.storages:
            with self.step(f"laptop: results check {storage}") as s:
                _, log = self.run(
                    [*results, "check", "--storage", storage, *extra],
                    log="laptop-check",
                    env=env,
                    cwd=self.work,
                    timeout=180,
                )
                last = tail(log, 1).strip()
                if not re.search(r"\b0 differences, 0 trials not finished\b", last):
                    raise StepFailed(f"`results check` said: {last}", log=log)
                s["detail"] = last
        with self.step("laptop: results table") as s:
            _, log = self.run(
                [*results, "table", "spvae", "--storage", MAIN_STORAGE],
                log="laptop-table",
                env=env,
                cwd=self.work,
                timeout=180,
            )
            text = log.read_text()
            ours = [
                line
                for line in text.splitlines()
                if line.startswith("| VAE |") and "| project |" in line
            ]
            if len(ours) != 2 or "WARNING" in text:
                raise StepFailed(
                    "not a row of ours per cell, or a warning under the table", log=log
                )
            s["detail"] = f"{len(ours)} rows of ours, e.g. {' '.join(ours[0].split()[:14])} ..."
        with self.step("laptop: results report") as s:
            _, log = self.run(
                [*results, "report", "spvae", "--storage", MAIN_STORAGE],
                log="laptop-report",
                env=env,
                cwd=self.work,
                timeout=300,
            )
            last = tail(log, 1).strip()
            if not last.startswith(f"wrote {MAIN_STORAGE}/"):
                raise StepFailed(f"`results report` said: {last}", log=log)
            s["detail"] = last

    # -- teardown --

    def end_node_processes(self) -> int:
        """End every process of the node user (Ray on all three nodes, their sshd sessions) by
        PID, until none is left (the autoscaler may still be starting one)."""
        ended: set[int] = set()
        for _ in range(5):
            alive = [p.pid for p in processes() if p.uid == self.node_uid and p.state != "Z"]
            if not alive:
                self.reap(settle=3)
                return len(ended)
            ended.update(alive)
            kill_all(alive)
            self.reap()
        raise RuntimeError(f"processes of {USER} still alive after 5 rounds")

    def keep_node_logs(self) -> str:
        """The Ray logs worth reading after a failure (the autoscaler's, each raylet's)."""
        kept = 0
        for f in HOME.glob("t/*/ray/session_*/logs/*"):
            if re.match(r"(monitor|raylet|gcs_server)[.\d]*\.(log|out|err)$", f.name):
                to = self.logs / "nodes" / f.parts[len(HOME.parts) + 1] / f.name
                to.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, to)
                kept += 1
        return f"{kept} Ray logs copied" if kept else ""

    def teardown(self) -> list[str]:
        problems = []

        def attempt(what, fn):
            try:
                if result := fn():
                    say(f"  {what}: {result}")
            except Exception as e:  # go on: every other part must still be stopped
                problems.append(f"{what}: {e}")
                say(f"  {what}: FAILED: {e}")

        start = time.monotonic()
        for p in list(self.inflight):
            attempt(f"command {p.pid}", lambda p=p: self.stop_group(p) or "stopped")
        if self.node_uid is not None:
            attempt("node logs", self.keep_node_logs)
            attempt(f"processes of {USER}", lambda: f"{self.end_node_processes()} ended")
        if self.sshd:
            attempt("sshd", lambda: self.stop_group(self.sshd) or f"pid {self.sshd.pid} stopped")
        if self.pg_data and (self.pg_data / "postmaster.pid").exists():
            attempt("PostgreSQL", self.stop_postgres)
        if self.moto:
            attempt("moto", lambda: self.moto.stop() or "stopped")
        if self.http:
            attempt(
                "HTTP mirror",
                lambda: (self.http.shutdown(), self.http.server_close()) and "stopped",
            )
        attempt("other processes of ours", self.end_descendants)
        attempt("ports", self.check_ports_closed)
        if self.node_uid is not None:
            attempt("node user", self.remove_node_user)
        attempt("temp dir", self.remove_work)
        self.reap(settle=3)
        self.steps.append(("teardown", time.monotonic() - start, "; ".join(problems) or "clean"))
        return problems

    def end_descendants(self) -> str:
        """Whatever else of ours is still here (the launcher's ssh control masters)."""
        left = [p for p in descendants(os.getpid(), processes()) if p.state != "Z"]
        kill_all([p.pid for p in left])
        self.reap()
        return f"{len(left)} ended ({', '.join(sorted({p.comm for p in left}))})" if left else ""

    def stop_postgres(self) -> str:
        pid = int((self.pg_data / "postmaster.pid").read_text().split()[0])
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                PG_BIN / "pg_ctl",
                "-D",
                self.pg_data,
                "-m",
                "fast",
                "-w",
                "-t",
                "30",
                "stop",
            ],
            capture_output=True,
        )
        self.reap()
        if state_of(pid) not in ("", "Z"):
            kill_all([pid])
            return f"pid {pid} killed (pg_ctl stop did not end it)"
        return f"pid {pid} stopped (pg_ctl stop)"

    def check_ports_closed(self) -> str:
        self.reap()
        still = listeners()  # the namespace is ours: nothing may listen in it any more
        if still:
            raise RuntimeError(f"still listening: {sorted(still.items())}")
        return f"all {len(self.ports)} closed"

    def remove_node_user(self) -> str:
        self.run(["userdel", "-r", USER], log="teardown", check=False, timeout=60)
        with contextlib.suppress(KeyError):
            pwd.getpwnam(USER)
            raise RuntimeError(f"userdel did not remove {USER}")
        for user in (USER, "root"):  # the launchers' ssh control sockets of this cluster
            base = Path("/tmp") / f"ray_ssh_{hashlib.sha256(user.encode()).hexdigest()[:10]}"
            cluster = base / hashlib.sha256(self.cluster_name.encode()).hexdigest()[:10]
            shutil.rmtree(base if user == USER else cluster, ignore_errors=True)
            with contextlib.suppress(OSError):
                base.rmdir()  # only when empty: root's other launchers may use it
        return f"{USER} and {HOME} removed"

    def remove_work(self) -> str:
        if self.args.keep_logs:
            shutil.copytree(self.logs, self.args.keep_logs, dirs_exist_ok=True)
        shutil.rmtree(self.work)
        kept = f" (logs kept in {self.args.keep_logs})" if self.args.keep_logs else ""
        return f"{self.work} removed{kept}"

    # -- the whole --

    def rehearse(self):
        self.preflight()
        self.wheelhouse()
        self.network()  # from here on: loopback only
        self.node_user()
        self.servers()
        self.launcher_config()
        self.ray_up()
        self.node_check()
        self.sweep()
        self.lost_worker_back()
        self.pg_sweep()
        self.laptop()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keep-logs", type=Path, default=None, help="copy the logs here at the end")
    args = p.parse_args(argv)

    LOCK.parent.mkdir(parents=True, exist_ok=True)
    lock = open(LOCK, "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print(f"error: another rehearsal holds {LOCK}", file=sys.stderr)
        return 2

    def interrupted(signum, frame):
        raise Interrupted(signal.Signals(signum).name)

    def later(signum, frame):
        say(f"{signal.Signals(signum).name} during the teardown: the teardown goes on")

    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    become_subreaper()
    r = Rehearsal(args)
    failure = None
    try:
        r.rehearse()
    except StepFailed as e:
        failure = e
    except Interrupted as e:
        failure = StepFailed(f"interrupted ({e})")
    except Exception as e:  # a bug of ours: still tear down
        import traceback

        traceback.print_exc()
        failure = StepFailed(f"{type(e).__name__}: {e}")
    finally:
        signal.signal(signal.SIGINT, later)
        signal.signal(signal.SIGTERM, later)
        if failure is not None:
            report_failure(r, failure)
        say("teardown")
        problems = r.teardown()
    summary(r, failure, problems)
    return 0 if failure is None and not problems else 1


def report_failure(r: Rehearsal, e: StepFailed) -> None:
    say(f"FAILED at step '{r.current}': {e.what}")
    if e.command:
        print(f"  command: {shlex.join(str(a) for a in e.command)}")
    for log in ([e.log] if e.log else []) + e.more:
        print(f"  --- {log} (its last 40 lines) ---")
        print("\n".join("  | " + line for line in tail(log).splitlines()), flush=True)


def summary(r: Rehearsal, failure, problems) -> None:
    print("\nSummary")
    for name, took, detail in r.steps:
        print(f"  {took:6.1f} s  {name}: {detail}")
    by_address: dict[str, list[str]] = {}
    for (address, port), names in sorted(r.ports.items(), key=lambda kv: kv[0][1]):
        by_address.setdefault(address, []).append(f"{port} {names}")
    print(
        f"  ports used: {len(r.ports)}, all in the private namespace (0.0.0.0 and * there reach"
        " its loopback alone), each closed by the teardown unless said above"
    )
    for address, ports in sorted(by_address.items()):
        print(f"    {address}: {', '.join(ports)}")
    total = time.monotonic() - T0
    if failure is None and not problems:
        print(f"  REHEARSAL PASSED in {total:.1f} s")
    else:
        why = "; ".join(([failure.what] if failure else []) + problems)
        print(f"  REHEARSAL FAILED in {total:.1f} s: {why}")


if __name__ == "__main__":
    sys.exit(main())
