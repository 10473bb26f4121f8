"""One writer per storage (results.lease): a sweep's lease on ``<storage>/lease.json``.

Unit, with real processes and files: acquire, refuse, release; a holder that died (SIGKILL), a
pid that now names another process, another host's fresh and stale leases, damaged lease files
(listed and generated), a lease taken away from its holder, every way a holder ends (end, error,
SIGTERM: released; SIGKILL: left, then taken over), sweeps racing for one storage; the same on
s3:// against a local S3 server (moto, in this process). Two real sweeps racing for a storage:
tests/e2e/test_lease_journeys.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from results import lease, store
from tests import s3 as s3_server

s3 = s3_server.s3  # the fixture: a local S3 server (moto) on 127.0.0.1
REPO = Path(__file__).resolve().parents[2]
HOST = socket.gethostname()
FAST = {"settle_s": 0.1, "refresh_s": 3600.0}  # no refresh unless a test asks for it


def holder(**fields) -> lease.Holder:
    """A lease record; by default a live one of this host (this test's own process)."""
    now = time.time()
    mine = {"id": "f" * 32, "host": HOST, "pid": os.getpid(), "start": lease.process_start(
        os.getpid()), "boot": lease.boot_id(), "command": "python sweeps/vlae.py --storage x",
        "started": now - 60, "refreshed": now}  # fmt: skip
    return lease.Holder(**{**mine, **fields})


def put(storage: str, content: bytes) -> None:
    fs, root = store.filesystem(storage)
    fs.create_dir(root, recursive=True)
    with fs.open_output_stream(f"{root}/{lease.NAME}") as f:
        f.write(content)


def take(storage: str) -> tuple[lease.Lease, list[str]]:
    lines: list[str] = []
    return lease.acquire(storage, say=lines.append, **FAST), lines


def lease_bytes(storage: str) -> bytes | None:
    return lease.Place(storage).read()


def sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path) -> str:
    """An empty storage: a local folder, or a prefix of a bucket on a local S3 server."""
    if request.param == "local":
        return str(tmp_path / "sweep")
    request.getfixturevalue("s3")
    return "s3://sweeps/lease-test"


def test_acquire_refuse_release(storage):
    held, lines = take(storage)
    record = json.loads(lease_bytes(storage))
    assert (record["host"], record["pid"]) == (HOST, os.getpid()) and not lines
    assert record["start"] == lease.process_start(os.getpid())
    with pytest.raises(lease.InUse) as refused:
        take(storage)
    with pytest.raises(lease.InUse):
        lease.check_free(storage)
    line = str(refused.value)
    assert "\n" not in line and f"is in use by a sweep (pid {os.getpid()} on host {HOST}" in line
    assert f"kill {os.getpid()} on {HOST}" in line and "choose another --storage" in line
    assert lease_bytes(storage) == held.written  # the refused one wrote nothing
    held.release()
    assert lease_bytes(storage) is None
    lease.check_free(storage)
    again, _ = take(storage)
    again.release()


def test_a_dead_holder_is_taken_over(storage):
    proc = sleeper()
    put(storage, holder(pid=proc.pid, start=lease.process_start(proc.pid)).encode())
    with pytest.raises(lease.InUse):  # alive: refused
        take(storage)
    proc.kill()
    proc.wait()
    held, lines = take(storage)
    assert lines == [line for line in lines if line.startswith("note: ")] and len(lines) == 1
    assert f"is no longer running (no process {proc.pid} on this host); taking over" in lines[0]
    assert json.loads(lease_bytes(storage))["id"] == held.holder.id
    held.release()


def test_a_reused_pid_is_taken_over(storage):
    proc = sleeper()  # alive, but started at another time than the lease records
    try:
        put(storage, holder(pid=proc.pid, start=lease.process_start(proc.pid) - 1).encode())
        held, lines = take(storage)
        assert f"pid {proc.pid} now belongs to another process" in lines[0]
        held.release()
    finally:
        proc.kill()
        proc.wait()


def test_another_hosts_lease_is_stale_only_after_stale_s(storage):
    other = holder(host="another-host", pid=4242)
    put(storage, other.encode())
    with pytest.raises(lease.InUse, match="pid 4242 on host another-host"):
        take(storage)
    put(storage, holder(host="another-host", pid=4242,
                        refreshed=time.time() - lease.STALE_S - 30).encode())  # fmt: skip
    held, lines = take(storage)
    assert "has not refreshed its lease for 2 min" in lines[0]
    assert f"taken for stale after {lease.STALE_S:.0f} s" in lines[0]
    held.release()


DAMAGED = {
    "empty": b"",
    "not JSON": b"garbage\x00\xff",
    "cut short": holder().encode()[:40],
    "a list": b"[1, 2]",
    "no pid": json.dumps(
        {k: v for k, v in json.loads(holder().encode()).items() if k != "pid"}
    ).encode(),
    "pid 0": holder(pid=0).encode(),
    "pid too large": holder(pid=10**30).encode(),
    "refreshed NaN": holder(host="x").encode().replace(b'"refreshed": ', b'"refreshed": NaN, "_":'),
}


@pytest.mark.parametrize("damage", DAMAGED)
def test_a_damaged_lease_is_taken_for_stale(storage, damage):
    put(storage, DAMAGED[damage])
    lease.check_free(storage)  # not a live holder
    held, lines = take(storage)
    assert len(lines) == 1 and "is damaged (" in lines[0] and "taking over" in lines[0]
    assert json.loads(lease_bytes(storage))["id"] == held.holder.id
    held.release()
    assert lease_bytes(storage) is None


@settings(derandomize=True, deadline=None, max_examples=40)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_lease_file_content_is_refused_or_taken_over_never_a_traceback(content):
    with tempfile.TemporaryDirectory(prefix="lease") as folder:
        put(folder, content)
        lease.acquire(folder, say=lambda _: None, **FAST).release()
        assert lease_bytes(folder) is None


VALUE = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
RECORD = st.fixed_dictionaries(
    {
        **{key: VALUE for key in lease.FIELDS},
        "host": st.sampled_from([HOST, "another-host", "two\nlines"]) | VALUE,
        "pid": st.integers(min_value=-2, max_value=2**40) | VALUE,
        "refreshed": st.sampled_from([time.time(), 0.0]) | VALUE,
    },
)


@settings(derandomize=True, deadline=None, max_examples=60)
@given(RECORD)
def test_any_lease_record_is_refused_in_one_line_or_taken_over(record):
    with tempfile.TemporaryDirectory(prefix="lease") as folder:
        put(folder, json.dumps(record).encode())
        try:
            lease.acquire(folder, say=lambda line: None, **FAST).release()
        except lease.InUse as e:
            assert "\n" not in str(e) and "is in use by a sweep" in str(e)


def test_a_lease_taken_away_stops_its_holder_and_is_not_deleted(tmp_path):
    storage = str(tmp_path / "sweep")
    lost = threading.Event()
    lines: list[str] = []
    # The thread's first refresh comes after 1 s; the test acts well before it.
    held = lease.acquire(storage, say=lines.append, on_lost=lost.set, refresh_s=1.0)
    first = json.loads(lease_bytes(storage))["refreshed"]
    assert held.refresh() is None and json.loads(lease_bytes(storage))["refreshed"] > first
    thief = holder(id="e" * 32, host="another-host", pid=4242)
    put(storage, thief.encode())
    assert lost.wait(60)
    assert "this sweep's lease was taken over (pid 4242 on host another-host" in lines[-1]
    held.release()
    assert lease_bytes(storage) == thief.encode()  # only its own lease is ever deleted


HOLDER = """
import signal, sys
from results import lease

def interrupt(signum, frame):  # as sweeps/engine/cli.py does: SIGTERM stops the sweep as Ctrl-C
    raise KeyboardInterrupt

signal.signal(signal.SIGTERM, interrupt)
held = lease.acquire(sys.argv[1], refresh_s=0.2)
print("held", flush=True)
sys.stdin.readline()
if sys.argv[2] == "error":
    raise RuntimeError("a bug")
"""
"""A process that holds a lease until a line on stdin (then ends, or fails) or a signal."""


@pytest.mark.parametrize("end", ["end", "error", "SIGTERM", "SIGKILL"])
def test_a_holder_releases_on_every_way_out_but_sigkill(tmp_path, end):
    storage = str(tmp_path / "sweep")
    (tmp_path / "holder.py").write_text(HOLDER)
    proc = subprocess.Popen([sys.executable, str(tmp_path / "holder.py"), storage, end],
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout.readline() == "held\n", proc.communicate()
    first = json.loads(lease_bytes(storage))
    assert first["pid"] == proc.pid
    if end == "SIGTERM":  # its thread refreshes it meanwhile
        deadline = time.time() + 60
        while json.loads(lease_bytes(storage))["refreshed"] == first["refreshed"]:
            assert time.time() < deadline
            time.sleep(0.05)
    if end in ("SIGTERM", "SIGKILL"):
        proc.send_signal(getattr(signal, end))
    _, err = proc.communicate("go\n", timeout=60)
    # an uncaught KeyboardInterrupt ends Python as SIGINT would
    assert proc.returncode == {"end": 0, "error": 1, "SIGTERM": -2, "SIGKILL": -9}[end], err
    if end != "SIGKILL":
        assert lease_bytes(storage) is None
        return
    assert json.loads(lease_bytes(storage))["pid"] == proc.pid
    held, lines = take(storage)
    assert f"no process {proc.pid} on this host" in lines[0]
    held.release()


@pytest.mark.parametrize("where", ["local", "s3"])
def test_of_sweeps_racing_for_a_storage_exactly_one_holds_it(request, tmp_path, where):
    storage = str(tmp_path / "sweep")
    if where == "s3":
        request.getfixturevalue("s3")
        storage = "s3://sweeps/race"
    start = threading.Barrier(6)
    won, refused = [], []

    def race():
        start.wait()
        try:
            won.append(lease.acquire(storage, say=print, refresh_s=3600))
        except lease.InUse as e:
            refused.append(str(e))

    threads = [threading.Thread(target=race) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(refused) == 5
    assert json.loads(lease_bytes(storage))["id"] == won[0].holder.id
    won[0].release()
