"""A real PostgreSQL server for the tests, from the machine's own binaries (Debian's
``postgresql-15``: /usr/lib/postgresql/<version>/bin), in a temporary folder, on 127.0.0.1 and a
free port; stopped by ``pg_ctl stop`` (its postmaster's PID as a last resort) and removed.

    from tests.postgres import postgres  # noqa: F401  (the fixture; yields a Server)

initdb refuses to run as root: as root the server runs as the ``postgres`` system user (the
package makes it), in a folder that user owns.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROLE, PASSWORD, DATABASE = "sweeper", "s3cret-pw", "optuna"


def binaries() -> Path | None:
    """The newest PostgreSQL's bin folder with initdb, pg_ctl and psql, or None."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    for folder in reversed(found):
        if all((folder / b).is_file() for b in ("initdb", "pg_ctl", "psql")):
            return folder
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    port: int
    folder: Path

    def url(self, user: str = ROLE, password: str = PASSWORD, database: str = DATABASE) -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{database}"


@pytest.fixture(scope="module")
def postgres():
    """A running PostgreSQL server with role ROLE (password PASSWORD, scram-sha-256 over TCP)
    owning an empty database DATABASE; yields a Server (``.url()``)."""
    bin_dir = binaries()
    if bin_dir is None:
        pytest.skip("PostgreSQL's server binaries are not installed (/usr/lib/postgresql/*/bin; "
                    "Debian/Ubuntu: apt-get install postgresql)")  # fmt: skip
    as_user: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: initdb refuses root")
        try:
            import pwd

            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run initdb as")
        as_user = ["runuser", "-u", "postgres", "--"]
    folder = Path(tempfile.mkdtemp(prefix="pg", dir="/tmp"))  # short: a unix socket lives here
    if as_user:
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    data, port = folder / "data", free_port()

    def run(*cmd: str) -> None:
        subprocess.run([*as_user, *cmd], check=True, capture_output=True, timeout=120)

    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8",
            "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync")  # fmt: skip
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w",
            "-t", "60", "-o", f"-h 127.0.0.1 -p {port} -k {folder} -F", "start")  # fmt: skip
        for sql in (f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'",
                    f"CREATE DATABASE {DATABASE} OWNER {ROLE}"):  # fmt: skip
            run(str(bin_dir / "psql"), "-h", str(folder), "-p", str(port), "-U", "postgres",
                "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql)  # fmt: skip
        yield Server(port, folder)
    finally:
        if (data / "postmaster.pid").exists():  # the server runs (or a failed start left it)
            pid = int((data / "postmaster.pid").read_text().split()[0])
            try:
                run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
            except subprocess.SubprocessError:
                os.kill(pid, signal.SIGQUIT)  # the postmaster's immediate shutdown
        shutil.rmtree(folder, ignore_errors=True)
