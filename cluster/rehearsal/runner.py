"""Running the rehearsal's commands and timing its steps.

Each command runs in a session of its own (a Ctrl-C reaches the rehearsal alone, which ends the
command), its output appended to ``logs/<name>.log``; a failure is a StepFailed that names the
command and its log. Each step prints one line with its time since the start.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from processes import descendants, kill_all, processes, reap_orphans

# Where the commands come from: this folder, the repository, the .venv that runs the rehearsal.
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PYTHON = sys.executable  # the project's .venv: the "laptop", and the nodes' packages
BIN = Path(PYTHON).parent
T0 = time.monotonic()


def say(message: str) -> None:
    """Print a line with the seconds since the rehearsal started."""
    print(f"[{time.monotonic() - T0:6.1f} s] {message}", flush=True)


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log (carriage returns dropped), or why it cannot be read."""
    try:
        text = path.read_text(errors="replace").replace("\r", "")
    except OSError as e:
        return f"(cannot read {path}: {e})"
    return "\n".join(text.splitlines()[-lines:])


class Interrupted(BaseException):
    """SIGINT or SIGTERM: tear down, exit 1."""


class StepFailed(Exception):
    """A check that did not hold: what, and the command and logs that show why."""

    def __init__(self, what: str, command=None, log: Path | None = None, more=()):
        super().__init__(what)
        self.what, self.command, self.log, self.more = what, command, log, list(more)


class StepLog:
    """The steps done so far: (name, seconds, detail) each, and the one under way."""

    def __init__(self):
        self.done: list[tuple[str, float, str]] = []
        self.current = ""

    @contextlib.contextmanager
    def step(self, name: str):
        """Time the body; it sets ``detail`` of what it yields, printed with the step's time."""
        start, note = time.monotonic(), {"detail": ""}
        self.current = name
        yield note
        took = time.monotonic() - start
        self.done.append((name, took, note["detail"]))
        say(f"{name}: {note['detail']} ({took:.1f} s)")


class Runner:
    """The commands the rehearsal starts: in flight (a teardown ends them) or servers (whose
    owners end them), each with its log under ``logs``."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.inflight: set[subprocess.Popen] = set()
        self.servers: set[subprocess.Popen] = set()

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

    def start_server(self, argv, *, log: str) -> tuple[subprocess.Popen, Path]:
        """Start a server: not in flight, its owner stops it in the teardown."""
        p, path = self.start(argv, log=log)
        self.inflight.discard(p)
        self.servers.add(p)
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
        """Reap the zombies among our children that no Popen of ours waits for (inherited
        orphans); with ``settle``, go on for up to that many seconds while some are left."""
        reap_orphans({p.pid for p in self.inflight | self.servers}, settle)

    def end_leftovers(self) -> str:
        """Whatever else of ours is still here (the launcher's ssh control masters)."""
        left = [p for p in descendants(os.getpid(), processes()) if p.state != "Z"]
        kill_all([p.pid for p in left])
        self.reap()
        return f"{len(left)} ended ({', '.join(sorted({p.comm for p in left}))})" if left else ""
