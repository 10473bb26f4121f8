"""The Parquet store: tables ``trials``, ``curves`` and ``evaluations`` under ``<storage>/results``.

Layout: ``<storage>/results/<table>/<sweep>/<part>.parquet``. A part is written to a temporary name
and renamed into place, so a reader never sees half a file and a crash loses nothing already
written. Parts are keyed (a trial's rows are one part named after the trial), so re-writing a trial
replaces its part instead of duplicating rows. ``storage`` is a local path or a pyarrow filesystem
URI (s3://, gs://, file://).
"""

from __future__ import annotations

import re
import time
import uuid

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

SCHEMA_VERSION = 1
TABLES = ("trials", "curves", "evaluations")
# Rows that describe the same thing; when a part was re-written, the newest row wins.
KEYS = {
    "trials": ["trial_id"],
    "curves": ["trial_id", "epoch"],
    "evaluations": ["trial_id", "seed"],
}


class StorageError(RuntimeError):
    """The storage location cannot be used; the message names it and what to do."""


def filesystem(storage: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, root path) for a local path or URI."""
    if "://" not in storage:
        import os

        storage = os.path.abspath(os.path.expanduser(storage))
    try:
        return pafs.FileSystem.from_uri(storage)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as e:
        raise StorageError(f"cannot open storage {storage!r}: {e}") from None


def _safe(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.=+-]+", name):
        raise ValueError(f"not a safe file name for a sweep or part: {name!r}")
    return name


def check_writable(storage: str) -> None:
    """Create and delete a probe file under the storage root, or raise StorageError saying why."""
    fs, root = filesystem(storage)
    probe = f"{root}/results/.probe-{uuid.uuid4().hex}"
    try:
        fs.create_dir(f"{root}/results", recursive=True)
        with fs.open_output_stream(probe) as f:
            f.write(b"ok")
        fs.delete_file(probe)
    except (OSError, pa.ArrowException) as e:
        raise StorageError(
            f"storage {storage!r} is not writable ({e}); choose another --storage"
        ) from None


def write(storage: str, table: str, sweep: str, part: str, rows: pd.DataFrame | list[dict]) -> str:
    """Atomically write (or replace) one part of a table; returns its path."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; tables: {TABLES}")
    df = pd.DataFrame(rows) if not isinstance(rows, pd.DataFrame) else rows.copy()
    df["schema_version"] = SCHEMA_VERSION
    df["written_at"] = time.time()
    fs, root = filesystem(storage)
    folder = f"{root}/results/{table}/{_safe(sweep)}"
    path = f"{folder}/{_safe(part)}.parquet"
    tmp = f"{folder}/.{_safe(part)}.{uuid.uuid4().hex}.tmp"
    try:
        fs.create_dir(folder, recursive=True)
        with fs.open_output_stream(tmp) as f:
            pq.write_table(pa.Table.from_pandas(df, preserve_index=False), f)
        fs.move(tmp, path)  # a rename on local and NFS filesystems; object puts are atomic anyway
    except (OSError, pa.ArrowException) as e:
        raise StorageError(f"cannot write {path}: {e}") from None
    return path


def load(storage: str, table: str, sweep: str | None = None) -> pd.DataFrame:
    """All rows of a table (optionally of one sweep), newest row per key; empty if none yet."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; tables: {TABLES}")
    fs, root = filesystem(storage)
    base = f"{root}/results/{table}" + (f"/{_safe(sweep)}" if sweep else "")
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    paths = sorted(
        i.path for i in infos if i.path.endswith(".parquet") and not i.base_name.startswith(".")
    )
    if not paths:
        return pd.DataFrame()
    frames = []
    for p in paths:
        try:
            frames.append(pq.read_table(p, filesystem=fs).to_pandas())
        except (OSError, pa.ArrowException) as e:
            raise StorageError(f"corrupt Parquet file {p} ({e}); delete it and re-run") from None
    df = pd.concat(frames, ignore_index=True)
    return (
        df.sort_values("written_at", kind="stable")
        .drop_duplicates(KEYS[table], keep="last")
        .reset_index(drop=True)
    )
