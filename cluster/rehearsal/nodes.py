"""The node user: the cluster's "image", and the processes that run on its three nodes.

One dedicated user (``vaenode``) is every node: sshd lets it in at 127.0.0.1, .2 and .3, and the
three nodes share its home (like an NFS home). Its venv reaches the project's .venv packages
through a .pth file (the image); its ~/.bashrc holds the node's environment (S3 endpoint and
keys, as an instance profile would give them). Its processes are found by its uid.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import launcher_config as lc
from processes import kill_all, processes
from runner import BIN, Runner, StepFailed

USER = lc.NODE_USER
HOME = Path(f"/home/{USER}")
NODE_VENV = HOME / "venv"


def base_python() -> str:
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


def check_packages_readable() -> None:
    """The nodes' venv reaches the .venv's packages: another user must be able to read them."""
    ray_init = Path(sysconfig.get_paths()["purelib"]) / "ray" / "__init__.py"
    if subprocess.run(["runuser", "-u", "nobody", "--", "test", "-r", ray_init]).returncode:
        raise StepFailed(
            f"another user cannot read {ray_init}: the nodes' venv reaches "
            "the .venv's packages, so every folder above them must be "
            "readable (o+rx)"
        )


class NodeUser:
    """The node user, its files and its processes; ``uid`` is None while we have none."""

    def __init__(self, run: Runner):
        self.run = run
        self.uid: int | None = None

    def create(self, python: str, key: Path) -> str:
        """Add the user, let ``key`` in over SSH, give it the image (a venv of ``python``)."""
        comment = "vae-sweeps rehearsal"
        self.run.run(["useradd", "-m", "-s", "/bin/bash", "-c", comment, USER], log="node-user")
        # No password, but not locked: sshd (UsePAM no) refuses a locked ("!") account.
        self.run.run(["usermod", "-p", "*", USER], log="node-user")
        self.uid = pwd.getpwnam(USER).pw_uid
        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", ""]
        self.run.run([*keygen, "-C", "rehearsal-launcher", "-f", key], log="node-user")
        ssh = HOME / ".ssh"
        ssh.mkdir(mode=0o700)
        (ssh / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
        reached = self.make_image(python)
        self.run.run(["chown", "-R", f"{USER}:{USER}", HOME], log="node-user")
        return f"{USER}, venv {NODE_VENV} reaching {reached}"

    def make_image(self, python: str) -> str:
        """The image: a venv whose site-packages reach the project's .venv packages, with the
        .venv's `ray` command; what it reaches."""
        self.run.run([python, "-m", "venv", NODE_VENV], user=USER, log="node-user")
        (site,) = NODE_VENV.glob("lib/python3*/site-packages")
        ours = sysconfig.get_paths()
        reach = dict.fromkeys([ours["purelib"], ours["platlib"]])
        (site / "project-venv.pth").write_text("\n".join(reach) + "\n")
        ray_cli = (BIN / "ray").read_text().splitlines()  # the image's `ray` command
        (NODE_VENV / "bin" / "ray").write_text(
            "\n".join([f"#!{NODE_VENV}/bin/python", *ray_cli[1:]]) + "\n"
        )
        (NODE_VENV / "bin" / "ray").chmod(0o755)
        return ours["purelib"]

    def write_shell_init(self, bashrc: str) -> None:
        """The user's ~/.bashrc: the node's environment (launcher_config.node_bashrc)."""
        (HOME / ".bashrc").write_text(bashrc)
        shutil.chown(HOME / ".bashrc", USER, USER)

    def end_processes(self) -> int:
        """End every process of the node user (Ray on all three nodes, their sshd sessions) by
        PID, until none is left (the autoscaler may still be starting one)."""
        ended: set[int] = set()
        for _ in range(5):
            alive = [p.pid for p in processes() if p.uid == self.uid and p.state != "Z"]
            if not alive:
                self.run.reap(settle=3)
                return len(ended)
            ended.update(alive)
            kill_all(alive)
            self.run.reap()
        raise RuntimeError(f"processes of {USER} still alive after 5 rounds")

    def keep_logs(self, logs: Path) -> str:
        """The Ray logs worth reading after a failure (the autoscaler's, each raylet's), copied
        to ``logs``/nodes/<node address>/."""
        kept = 0
        for f in HOME.glob("t/*/ray/session_*/logs/*"):
            if re.match(r"(monitor|raylet|gcs_server)[.\d]*\.(log|out|err)$", f.name):
                to = logs / "nodes" / f.parts[len(HOME.parts) + 1] / f.name
                to.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, to)
                kept += 1
        return f"{kept} Ray logs copied" if kept else ""

    def remove(self, cluster_name: str) -> str:
        """Remove the user and its home, and the launchers' ssh control sockets of this cluster
        (the node user's: the head's autoscaler; root's: `ray up` and `ray submit`)."""
        self.run.run(["userdel", "-r", USER], log="teardown", check=False, timeout=60)
        with contextlib.suppress(KeyError):
            pwd.getpwnam(USER)
            raise RuntimeError(f"userdel did not remove {USER}")
        for user in (USER, "root"):
            base = Path("/tmp") / f"ray_ssh_{hashlib.sha256(user.encode()).hexdigest()[:10]}"
            cluster = base / hashlib.sha256(cluster_name.encode()).hexdigest()[:10]
            shutil.rmtree(base if user == USER else cluster, ignore_errors=True)
            with contextlib.suppress(OSError):
                base.rmdir()  # only when empty: root's other launchers may use it
        return f"{USER} and {HOME} removed"

    def remove_stale(self) -> str:
        """The node user a rehearsal killed by SIGKILL left: its processes ended, the user
        removed; what was done ("" when there was no such user)."""
        with contextlib.suppress(KeyError):
            self.uid = pwd.getpwnam(USER).pw_uid
            note = f"{self.end_processes()} processes of a stale {USER} ended"
            self.run.run(["userdel", "-r", USER], log="preflight", check=False)
            self.uid = None
            return note
        return ""
