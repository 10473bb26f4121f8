"""The rehearsal's processes and sockets, found by PID and by address, never by name.

The process table is read from /proc, the listening sockets from ``ss``; processes are ended by
PID and reaped by us (we are a subreaper); everything runs in a private network namespace, so
every socket in it is ours and a port there cannot collide with another process's.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import re
import signal
import socket
import struct
import subprocess
import time
from collections import namedtuple
from pathlib import Path

Proc = namedtuple("Proc", "pid ppid uid state comm cmdline")


def processes() -> list[Proc]:
    """Every process on the machine (one that ends while we read it is left out)."""
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
        # comm may hold spaces and parentheses: it ends at the last ")".
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        cmdline = raw.replace(b"\0", b" ").decode(errors="replace").strip()
        out.append(Proc(int(entry), int(ppid), uid, state, comm, cmdline))
    return out


def descendants(root: int, table: list[Proc]) -> list[Proc]:
    """The children of ``root`` in ``table``, their children, and so on."""
    children: dict[int, list[Proc]] = {}
    for p in table:
        children.setdefault(p.ppid, []).append(p)
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child.pid)
    return out


def state_of(pid: int) -> str:
    """The process's state letter ("Z": a zombie), or "" when there is no such process."""
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2 :].split()[0]
    return ""


def kill_all(pids, grace: float = 3.0) -> None:
    """SIGTERM each PID, then SIGKILL those still there after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        end = time.monotonic() + grace
        while time.monotonic() < end and any(state_of(pid) not in ("", "Z") for pid in pids):
            time.sleep(0.2)


def reap_orphans(waited: set[int], settle: float = 0.0) -> None:
    """Reap the zombies among our children that no Popen waits for (``waited``: the PIDs some
    Popen does wait for); with ``settle``, go on for up to that many seconds while some are left."""
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


def become_subreaper() -> None:
    """Orphaned descendants (Ray's daemons once `ray start` exits, PostgreSQL's postmaster, ssh
    control masters) become our children: found, ended and reaped by PID."""
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


# ---- sockets and the network namespace ------------------------------------------------------


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


class Ports:
    """Every socket that listened during the run, by (address, port): all of them are ours,
    since the namespace is."""

    def __init__(self):
        self.seen: dict[tuple[str, int], str] = {}

    def note(self) -> None:
        """Remember every socket listening now."""
        for key, names in listeners().items():
            self.seen.setdefault(key, names)

    def check_closed(self) -> str:
        """Raise if a socket still listens (nothing may, once the teardown is done)."""
        still = listeners()
        if still:
            raise RuntimeError(f"still listening: {sorted(still.items())}")
        return f"all {len(self.seen)} closed"

    def by_address(self) -> dict[str, list[str]]:
        """{address: ["PORT NAMES", ...]}, the ports in increasing order."""
        out: dict[str, list[str]] = {}
        for (address, port), names in sorted(self.seen.items(), key=lambda kv: kv[0][1]):
            out.setdefault(address, []).append(f"{port} {names}")
        return out


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, timeout: float) -> bool:
    """Whether something accepts connections at host:port within ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return True
        time.sleep(0.2)
    return False


class NoNamespace(Exception):
    """The kernel refused a new network namespace (the message says why)."""


def enter_private_network() -> None:
    """Move this process (still single-threaded) into a new network namespace, loopback up:
    everything started afterwards inherits it, 127.0.0.0/8 is ours alone, and nothing in it is
    reachable from the machine's network or can collide with another process's port."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x40000000) != 0:  # CLONE_NEWNET
        err = ctypes.get_errno()
        raise NoNamespace(
            f"no private network namespace: unshare: {os.strerror(err)} (the "
            "rehearsal needs root with CAP_SYS_ADMIN)"
        )
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH14s", b"lo", 0, b"\0" * 14)
        flags = struct.unpack("16sH14s", fcntl.ioctl(s, siocgifflags, request))[1]
        fcntl.ioctl(s, siocsifflags, struct.pack("16sH14s", b"lo", flags | iff_up, b"\0" * 14))
