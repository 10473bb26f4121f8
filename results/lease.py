"""One writer per storage: the lease a sweep holds on ``<storage>/lease.json`` while it runs.

The file records the holder: host, pid, the process's start time (Linux: field 22 of
/proc/<pid>/stat, so that a pid given to another process since is not taken for the holder), the
host's boot id, the command line, when the sweep started and last refreshed it (every REFRESH_S,
by a thread), and a random id.

- ``acquire`` takes it before a sweep's first write; a second sweep is refused (``InUse``: one
  line naming the holder and how to proceed). A dead holder's lease is taken over with a line
  saying so. Same host: no such process (or the pid now names a process started at another
  time, or the host restarted). Another host: not refreshed for STALE_S seconds (the holder's
  clock against ours: hosts are assumed to agree within seconds, as NTP keeps them). A damaged
  lease file (not JSON, cut short, other content) is taken for a stale one, with a line.
- ``Lease.release`` deletes the file if it still holds this lease: on every way out of a sweep
  (end, error, KeyboardInterrupt, SIGTERM as sweeps/engine/cli.py turns it into one) and at
  interpreter exit. A SIGKILL or a machine's crash leaves it, for the rules above to take over.
- A refresh that finds the lease taken by another sweep (this one was judged dead, e.g. after
  being suspended for longer than STALE_S) says so and interrupts the main thread: the sweep
  stops as on Ctrl-C. (A takeover that lands between a refresh's read and its rewrite is
  overwritten; the taker's own refresh then stops the taker.)
- ``read`` and ``check_free`` only read: commands that only read a storage (``python -m
  results``, ``--status``, ``python sweeps/replay.py``) never take the lease nor wait for it.

Atomicity. On a local or NFS path the lease appears by ``os.link`` of a complete temporary file,
which fails if the name exists (atomic on NFS too); a dead holder's file is renamed aside, and
taken over only if what was moved is what was judged dead. Object stores (s3://, gs://) offer
no conditional put through pyarrow: the sweep writes its lease, waits SETTLE_S, reads it back
and holds the storage only if it finds its own id (the last writer wins, the others refuse).
The window left: a competitor that read "free" before our write was visible and whose own write
lands more than SETTLE_S after ours; both would start, and the first refresh of the one whose
lease was overwritten (within REFRESH_S) stops it.
"""

from __future__ import annotations

import _thread
import atexit
import contextlib
import json
import math
import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass

import pyarrow as pa
import pyarrow.fs as pafs

from results import store

NAME = "lease.json"
REFRESH_S = 15.0
"""How often the holder rewrites its lease's ``refreshed`` time."""
STALE_S = 90.0
"""A lease held from another host and not refreshed for this long is taken for a dead holder's."""
SETTLE_S = 2.0
"""On an object store: how long a sweep waits after writing its lease before reading it back."""
IO_ERRORS = (OSError, pa.ArrowException)


class InUse(store.StorageError):
    """Another live sweep holds the storage's lease; the message names it and what to do."""


@dataclass(frozen=True)
class Holder:
    """What a lease file records."""

    id: str
    host: str
    pid: int
    start: int | None  # the process's start time in clock ticks after boot (Linux), else None
    boot: str | None  # the host's boot id (Linux), else None
    command: str
    started: float  # seconds since the epoch
    refreshed: float

    @classmethod
    def mine(cls) -> Holder:
        now = time.time()
        command = " ".join(["python", *sys.argv]).replace("\n", " ")
        return cls(uuid.uuid4().hex, socket.gethostname(), os.getpid(), process_start(os.getpid()),
                   boot_id(), command, now, now)  # fmt: skip

    def encode(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode()

    def describe(self) -> str:
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.started))
        if started[:10] == time.strftime("%Y-%m-%d", time.gmtime()):
            started = started[11:]
        command = self.command if len(self.command) <= 160 else self.command[:157] + "..."
        return (f"pid {self.pid} on host {self.host}, started {started}, refreshed "
                f"{duration(time.time() - self.refreshed)} ago: {command}")  # fmt: skip


FIELDS = {"id": str, "host": str, "pid": int, "start": (int, type(None)),
          "boot": (str, type(None)), "command": str, "started": (int, float),
          "refreshed": (int, float)}  # fmt: skip


def parse(raw: bytes) -> Holder | str:
    """The holder a lease file names, or why the file is damaged."""
    try:
        record = json.loads(raw)
    except ValueError as e:
        return f"not JSON: {e}" if raw.strip() else "empty"
    if not isinstance(record, dict):
        return "not a lease record"
    for key, kind in FIELDS.items():
        value = record.get(key)
        if (not isinstance(value, kind) or isinstance(value, bool)
                or (isinstance(value, float) and not math.isfinite(value))
                or (key == "pid" and not 0 < value < 2**31)):  # fmt: skip
            return f"no valid {key!r} field"
    text = {key: " ".join(record[key].split()) for key in ("host", "command")}  # one line
    return Holder(**{**{key: record[key] for key in FIELDS}, **text})


def duration(seconds: float) -> str:
    return f"{max(0.0, seconds):.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def process_start(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time after boot, in clock ticks); None where there is
    no /proc or no such process. A zombie (ended, not yet reaped) counts as no process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            after_name = f.read().rsplit(b")", 1)[1].split()  # the name may hold spaces
    except (OSError, IndexError):
        return None
    if after_name[0] == b"Z":  # field 3: the state
        return None
    return int(after_name[19])  # field 22: fields after the name start at field 3


def boot_id() -> str | None:
    with contextlib.suppress(OSError), open("/proc/sys/kernel/random/boot_id") as f:
        return f.read().strip()
    return None


def running(pid: int) -> bool:
    """Whether a live (not zombie) process with this pid runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    return not os.path.exists("/proc/self/stat") or process_start(pid) is not None


def why_dead(holder: Holder) -> str | None:
    """Why the holder is taken for dead, or None if it may still run."""
    if holder.host == socket.gethostname():
        if holder.boot and boot_id() and holder.boot != boot_id():
            return "is no longer running (this host has restarted since)"
        if not running(holder.pid):
            return f"is no longer running (no process {holder.pid} on this host)"
        start = process_start(holder.pid)
        if holder.start is not None and start is not None and start != holder.start:
            return (f"is no longer running (pid {holder.pid} now belongs to another process, "
                    "started at another time)")  # fmt: skip
        return None
    age = time.time() - holder.refreshed
    if age > STALE_S:
        return (f"has not refreshed its lease for {duration(age)} (a lease held from another "
                f"host is taken for stale after {STALE_S:.0f} s)")  # fmt: skip
    return None


def refusal(storage: str, holder: Holder) -> str:
    return (
        f"storage {storage} is in use by a sweep ({holder.describe()}): wait for it to "
        f"end, stop it (kill {holder.pid} on {holder.host}), or choose another --storage"
    )


class Place:
    """The lease file of one storage, on a local path or an object store."""

    def __init__(self, storage: str):
        self.storage = storage
        self.fs, self.root = store.filesystem(storage)
        self.local = self.fs.type_name == "local"
        self.path = f"{self.root}/{NAME}"
        self.shown = store.uri(storage, self.path)

    def read(self) -> bytes | None:
        """The lease file's bytes, or None if there is none."""
        if self.local:
            try:
                with open(self.path, "rb") as f:
                    return f.read()
            except FileNotFoundError:
                return None
        if self.fs.get_file_info(self.path).type == pafs.FileType.NotFound:
            return None
        try:
            with self.fs.open_input_stream(self.path) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def _temporary(self, holder: Holder) -> str:
        tmp = f"{self.root}/.lease.{holder.id}.tmp"
        with open(tmp, "wb") as f:
            f.write(holder.encode())
            f.flush()
            os.fsync(f.fileno())
        return tmp

    def create(self, holder: Holder, settle_s: float) -> bool:
        """Write this holder's lease where there is none; False if another sweep's is there."""
        if not self.local:
            self.put(holder)
            time.sleep(settle_s)
            return self.read() == holder.encode()
        os.makedirs(self.root, exist_ok=True)
        tmp = self._temporary(holder)
        try:
            os.link(tmp, self.path)
        except FileExistsError:
            return False
        except OSError:  # NFS may report a failure for a link it made: the link count tells
            if os.stat(tmp).st_nlink != 2:
                raise
        finally:
            os.unlink(tmp)
        return True

    def put(self, holder: Holder) -> None:
        """Write (or overwrite) the lease file with this holder's record, whole or not at all."""
        if self.local:
            os.replace(self._temporary(holder), self.path)
            return
        with self.fs.open_output_stream(self.path) as f:  # an object put: whole or nothing
            f.write(holder.encode())

    def set_aside(self, judged: bytes, mine: str) -> bool:
        """Remove the lease file if it still holds ``judged``; False if it changed meanwhile."""
        if not self.local:  # ``create`` overwrites it
            return self.read() in (None, judged)
        aside = f"{self.root}/.lease.{mine}.aside"
        try:
            os.rename(self.path, aside)  # atomic: of several takers, one moves it
        except FileNotFoundError:
            return True
        with open(aside, "rb") as f:
            moved = f.read()
        if moved != judged:  # a live lease written since: put it back
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.path)
        os.unlink(aside)
        return moved == judged

    def delete_if(self, mine: bytes) -> None:
        """Delete the lease file if it holds exactly ``mine``."""
        if self.local:
            self.set_aside(mine, uuid.uuid4().hex)
        elif self.read() == mine:
            self.fs.delete_file(self.path)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def read(storage: str) -> Holder | str | None:
    """The storage's lease holder, why its lease file is damaged, or None (read-only)."""
    raw = Place(storage).read()
    return None if raw is None else parse(raw)


def check_free(storage: str) -> None:
    """Raise InUse if a live sweep holds the storage (read-only: waits for nothing)."""
    try:
        holder = read(storage)
    except IO_ERRORS as e:
        why = store.one_line(e)
        raise store.StorageError(f"cannot read the lease of {storage}: {why}") from None
    if isinstance(holder, Holder) and why_dead(holder) is None:
        raise InUse(refusal(storage, holder))


def acquire(storage: str, *, say=_stderr, on_lost=None, settle_s: float = SETTLE_S,
            refresh_s: float = REFRESH_S) -> Lease:  # fmt: skip
    """Take the storage's lease (the first write of a sweep) and keep it refreshed; raise InUse
    if a live sweep holds it. ``say`` prints the takeover of a dead holder's lease; ``on_lost``
    (default: interrupt the main thread) runs if another sweep takes the lease meanwhile."""
    place = Place(storage)
    mine = Holder.mine()
    try:
        for _ in range(5):  # a new look each time another sweep changed the file meanwhile
            raw = place.read()
            note = None
            if raw is not None:
                held = parse(raw)
                if isinstance(held, Holder):
                    why = why_dead(held)
                    if why is None:
                        raise InUse(refusal(storage, held))
                    note = (f"note: storage {storage}: the sweep that held it ({held.describe()}) "
                            f"{why}; taking over its lease")  # fmt: skip
                else:
                    note = (
                        f"note: storage {storage}: its lease file {place.shown} is "
                        f"damaged ({held}); taking it for stale and taking over"
                    )
                if not place.set_aside(raw, mine.id):
                    continue
            if place.create(mine, settle_s):
                if note:
                    say(note)
                return Lease(place, mine, say, on_lost, refresh_s)
    except IO_ERRORS as e:
        raise store.StorageError(
            f"storage {storage!r} is not writable ({store.one_line(e)}): cannot write its lease "
            f"{place.shown}; choose another --storage"
        ) from None
    raise InUse(f"storage {storage}: its lease file {place.shown} keeps changing (several sweeps "
                "start there at once?): start one sweep at a time")  # fmt: skip


class Lease:
    """A held lease: refreshed by a thread until ``release``."""

    def __init__(self, place: Place, holder: Holder, say, on_lost, refresh_s: float):
        self.place, self.holder, self.say = place, holder, say
        self.on_lost = on_lost or _thread.interrupt_main
        self.refresh_s = refresh_s
        self.stop = threading.Event()
        self.written = holder.encode()
        self.thread = threading.Thread(target=self._keep, name="storage-lease", daemon=True)
        self.thread.start()
        atexit.register(self.release)

    def refresh(self) -> bytes | None:
        """Rewrite the lease with the time now; if another sweep holds it meanwhile, what its
        lease file holds instead (nothing is written then)."""
        raw = self.place.read()
        if raw is None and not self.place.create(self.holder, 0.0):  # removed by hand, and
            return self.place.read() or b""  # another sweep took it since
        if raw is not None and raw != self.written:
            return raw
        holder = Holder(**{**asdict(self.holder), "refreshed": time.time()})
        self.place.put(holder)
        self.holder, self.written = holder, holder.encode()
        return None

    def _keep(self) -> None:
        failing = False
        while not self.stop.wait(self.refresh_s):
            try:
                if (found := self.refresh()) is None:
                    failing = False
                    continue
            except IO_ERRORS as e:  # a storage that does not answer for a while: try again
                if not failing:
                    self.say(
                        f"warning: cannot refresh the lease {self.place.shown}: "
                        f"{store.one_line(e)}; trying again in {self.refresh_s:.0f} s"
                    )
                failing = True
                continue
            if self.stop.is_set():
                return
            held = parse(found)
            who = held.describe() if isinstance(held, Holder) else f"its file now {held}"
            self.say(f"error: storage {self.place.storage}: this sweep's lease was taken over "
                     f"({who}); stopping so that one sweep at a time writes there")  # fmt: skip
            self.on_lost()
            return

    def release(self) -> None:
        """Stop refreshing and delete the lease file if it still holds this lease (only in the
        process that took it: a forked child's exit leaves it)."""
        if self.stop.is_set():
            return
        self.stop.set()
        atexit.unregister(self.release)
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout=60)  # a refresh under way ends first
        if os.getpid() != self.holder.pid:
            return
        try:
            self.place.delete_if(self.written)
        except IO_ERRORS as e:
            self.say(f"warning: cannot remove the lease {self.place.shown} ({store.one_line(e)}); "
                     "the next sweep takes it over once it is stale")  # fmt: skip
