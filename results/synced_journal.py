"""An object store's Optuna journal of a cell: a local file on the driver's machine, synced there.

For an object store ``--storage`` (s3://, gs://), each cell's journal is kept as a file on the
driver's machine (``<cache>/journals/<hash of the storage>/<cell>.journal``) and uploaded whole
to ``<storage>/optuna/<cell>.journal``, as Tune syncs its own experiment state: the cells'
controllers run in one process on the driver's node, the journal's only writer. Appends go to
the local file at once; an uploader thread sends a changed journal at most every
SYNC_EVERY_S seconds (less often when uploads are slow), and at once when Tune saves the
searcher (it pickles the study's storage with its experiment state: the study in the object
store is then never older than the Tune state that names its trials), when a cell ends
(``flush``) and at exit. Opened on another machine (a resumed sweep on a new head node), the
object store's copy is taken when the local one is missing or a strict prefix of it; a local
copy that holds it and more (written after the last upload) is kept and uploaded; one that
disagrees with it, or whose object-store copy is gone, is set aside (renamed), never deleted.

Read-only commands read the object store's copy into memory (BytesJournalBackend), or the
local file of a writer in the same process (JournalSync.live).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
from optuna.storages.journal import BaseJournalBackend, JournalFileBackend

from results import store

SYNC_EVERY_S = 5.0
"""The least time between two uploads of a cell's journal to the object store."""
SLOW_UPLOAD_FACTOR = 20
"""A journal whose upload took t seconds is uploaded again no sooner than t times this: the
uploads of large journals take at most about 5% of the time."""
TICK_S = 1.0
"""How often the uploader thread looks for changed journals."""


def cache_dir() -> Path:
    """training.files.cache_dir (results imports no training): $VAE_CACHE or
    ~/.cache/vae-sweeps."""
    return Path(os.environ.get("VAE_CACHE", Path.home() / ".cache" / "vae-sweeps"))


def local_journal(storage: str, sweep: str) -> Path:
    """Where the driver's machine keeps an object store's journal of a cell."""
    key = hashlib.sha256(storage.rstrip("/").encode()).hexdigest()[:16]
    return cache_dir() / "journals" / key / f"{sweep}.journal"


def remote_path(storage: str, sweep: str) -> tuple[pafs.FileSystem, str]:
    fs, root = store.filesystem(storage)
    return fs, f"{root}/optuna/{sweep}.journal"


def remote_bytes(storage: str, sweep: str) -> bytes | None:
    """The object store's copy of a cell's journal; None if there is none."""
    fs, path = remote_path(storage, sweep)
    try:
        with fs.open_input_stream(path) as f:
            return f.read()
    except FileNotFoundError:
        return None
    except (OSError, pa.ArrowException) as e:
        if fs.get_file_info(path).type == pafs.FileType.NotFound:
            return None
        raise store.StorageError(f"cannot read {store.uri(storage, path)}: "
                                 f"{store.one_line(e)}") from None  # fmt: skip


class BytesJournalBackend(BaseJournalBackend):
    """A journal read from bytes, read-only (what JournalFileBackend reads from a file: an
    unfinished last line is left out, a damaged line before the end is an error)."""

    def __init__(self, data: bytes) -> None:
        self._lines = data.splitlines(keepends=True)

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        lines = self._lines
        for number in range(log_number_from, len(lines)):
            line = lines[number]
            last = number == len(lines) - 1
            if not line.endswith(b"\n"):
                if last:
                    return
                raise ValueError("Invalid log format.")
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                if last:
                    return
                raise

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        raise store.StorageError("this journal was opened read-only")


class SyncedJournalBackend(BaseJournalBackend):
    """A cell's journal on this machine, synced to ``<storage>/optuna/<sweep>.journal`` in an
    object store (the module's docstring). Pickles as its storage and cell: unpickled, on this
    machine or another, it opens the journal again."""

    def __init__(self, storage: str, sweep: str) -> None:
        self._storage, self._sweep = storage, sweep
        self._sync = JournalSync.get(storage, sweep)
        self._file = JournalFileBackend(str(self._sync.local))

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        return self._file.read_logs(log_number_from)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        self._file.append_logs(logs)
        self._sync.changed()

    def flush(self) -> None:
        self._sync.flush(final=True)

    def __getstate__(self) -> dict:
        # Tune saves the searcher (and this, with its study) before it uploads its experiment
        # state: the study in the object store is then at least as new as that state. A
        # failed upload is a warning: the sweep goes on, the uploader tries again.
        self._sync.flush(final=True)
        return {"storage": self._storage, "sweep": self._sweep}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["storage"], state["sweep"])


class JournalSync:
    """One journal file of this process and its object-store copy: reconciled when first
    opened, uploaded by the uploader thread after changes (rate-limited), on ``flush`` and at
    exit. One per local file and process (``get``)."""

    _all: dict[Path, JournalSync] = {}
    _lock = threading.Lock()
    _thread: threading.Thread | None = None

    def __init__(self, storage: str, sweep: str) -> None:
        self.storage, self.sweep = storage, sweep
        self.fs, self.remote = remote_path(storage, sweep)
        self.remote_uri = f"{self.fs.type_name}://{self.remote}"
        self.local = local_journal(storage, sweep)
        self._dirty = False
        self._upload_lock = threading.Lock()
        self._next = 0.0  # monotonic time before which the uploader leaves it alone
        self._reconcile()

    @classmethod
    def get(cls, storage: str, sweep: str) -> JournalSync:
        local = local_journal(storage, sweep)
        with cls._lock:
            sync = cls._all.get(local)
            if sync is None or not local.exists():  # a local copy deleted: open afresh
                sync = cls._all[local] = JournalSync(storage, sweep)
            if cls._thread is None:
                cls._thread = threading.Thread(target=cls._upload_loop, daemon=True,
                                               name="journal-sync")  # fmt: skip
                cls._thread.start()
                atexit.register(cls.flush_all)
            return sync

    @classmethod
    def live(cls, storage: str, sweep: str) -> JournalSync | None:
        """This process's writer of the cell's journal, if any (and its file is there)."""
        sync = cls._all.get(local_journal(storage, sweep))
        return sync if sync is not None and sync.local.exists() else None

    def _reconcile(self) -> None:
        """Take the object store's copy unless the local one holds it and more (this machine
        wrote past the last upload); a local copy that disagrees, or of a storage whose
        journal is gone (a storage deleted and made anew), is set aside, never deleted."""
        remote = remote_bytes(self.storage, self.sweep)
        local = self.local.read_bytes() if self.local.exists() else None
        self.local.parent.mkdir(parents=True, exist_ok=True)
        if local is not None and remote is not None and local.startswith(remote):
            self._dirty = len(local) > len(remote)  # ahead: upload what the store lacks
            return
        if local:
            aside = self.local.with_name(f"{self.local.name}.set-aside-{int(time.time())}")
            self.local.rename(aside)
            print(f"warning: the local copy of {self.remote_uri} differs "
                  f"from it; kept as {aside}", file=sys.stderr)  # fmt: skip
        tmp = self.local.with_name(f".{self.local.name}.{os.getpid()}.tmp")
        tmp.write_bytes(remote or b"")
        tmp.replace(self.local)

    def changed(self) -> None:
        self._dirty = True

    def flush(self, final: bool = False) -> None:
        """Upload now if changed since the last upload. ``final`` (a cell's end, exit): a
        failure is a warning naming the local file, not an exception."""
        try:
            self._upload()
        except store.StorageError as e:
            if not final:
                raise
            print(f"warning: {e}; the study is whole in {self.local}", file=sys.stderr)

    def _upload(self) -> None:
        with self._upload_lock:
            if not self._dirty:
                return
            self._dirty = False  # an append from now on marks it again
            data = self.local.read_bytes()
            data = data[: data.rfind(b"\n") + 1]  # whole lines only: one may be half-written
            start = time.monotonic()
            try:
                with self.fs.open_output_stream(self.remote) as f:  # an object appears whole
                    f.write(data)
            except (OSError, pa.ArrowException) as e:
                self._dirty = True
                raise store.StorageError(
                    f"cannot upload the Optuna journal to {self.remote_uri}: {store.one_line(e)}"
                ) from None
            took = time.monotonic() - start
            self._next = time.monotonic() + max(SYNC_EVERY_S, SLOW_UPLOAD_FACTOR * took)

    @classmethod
    def _upload_loop(cls) -> None:
        warned: set[Path] = set()
        while True:
            time.sleep(TICK_S)
            for sync in list(cls._all.values()):
                if not sync._dirty or sync._next > time.monotonic():
                    continue
                try:
                    sync._upload()
                    warned.discard(sync.local)
                except store.StorageError as e:  # tried again on the next tick
                    if sync.local not in warned:
                        print(f"warning: {e} (will retry)", file=sys.stderr)
                        warned.add(sync.local)

    @classmethod
    def flush_all(cls) -> None:
        for sync in list(cls._all.values()):
            sync.flush(final=True)
