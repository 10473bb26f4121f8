"""The Parquet store: tables ``trials``, ``curves`` and ``evaluations`` under ``<storage>/results``.

Layout: ``<storage>/results/<table>/<sweep>/<part>.parquet``. A part is written to a temporary name
and renamed into place, so a reader never sees half a file and a crash loses nothing already
written. Parts are keyed (a trial's rows are one part named after the trial), so re-writing a trial
replaces its part instead of duplicating rows. ``storage`` is a local path or a pyarrow filesystem
URI (s3://, gs://, file://).
"""

from __future__ import annotations

import json
import re
import time
import uuid

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from results import migrate
from results.crash_points import crash_point
from results.errors import StorageError
from results.migrate import SCHEMA_VERSION

TABLES = ("trials", "curves", "evaluations")
# Rows that describe the same thing; when a part was re-written, the newest row wins.
KEYS = {
    "trials": ["trial_id"],
    "curves": ["trial_id", "epoch"],
    "evaluations": ["trial_id", "seed"],
}


def filesystem(storage: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, root path) for a local path or URI."""
    if "://" not in storage:
        import os

        storage = os.path.abspath(os.path.expanduser(storage))
    try:
        return pafs.FileSystem.from_uri(storage)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as e:
        why = one_line(e)
        if "Unrecognized filesystem type" in why or "Unable to load libjvm" in why:
            scheme = storage.split("://", 1)[0]
            why = (f"no filesystem for {scheme}:// here (a local or NFS path, file://, s3:// or "
                   "gs://; hdfs:// needs Java and Hadoop's libhdfs)")  # fmt: skip
        raise StorageError(f"cannot open storage {storage!r}: {why}") from None


def one_line(e: BaseException, limit: int = 400) -> str:
    """An error's message as one line (pyarrow's and the AWS SDK's span several), cut to
    ``limit`` characters."""
    text = " ".join(part.strip() for part in str(e).splitlines() if part.strip())
    text = text or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def uri(storage: str, path: str) -> str:
    """A path of the storage's filesystem as a person would type it: a local path as it is,
    an object's key with its scheme (``s3://bucket/...``)."""
    fs, _ = filesystem(storage)
    kind = fs.type_name
    return path if kind == "local" or "://" in path else f"{kind}://{path}"


PROBE_TIMEOUT_S = 5.0
"""How long the storage check waits to connect to an object store, with no retry: a wrong
endpoint is one line at once, not a minute of the SDK's retries."""


def fail_fast(fs: pafs.FileSystem) -> pafs.FileSystem:
    """The same object-store filesystem (credentials, endpoint, region) with one attempt per
    request and short timeouts; a local filesystem as it is."""
    from datetime import timedelta

    rebuild = getattr(fs, "__reduce__", None)
    if isinstance(fs, pafs.S3FileSystem):
        _, (kwargs,) = rebuild()
        return pafs.S3FileSystem(**{
            **kwargs, "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=1),
            "connect_timeout": PROBE_TIMEOUT_S, "request_timeout": 4 * PROBE_TIMEOUT_S,
        })  # fmt: skip
    if type(fs).__name__ == "GcsFileSystem":
        _, (kwargs,) = rebuild()
        return type(fs)(**{**kwargs, "retry_time_limit": timedelta(seconds=PROBE_TIMEOUT_S)})
    return fs


def check_reachable(storage: str) -> None:
    """Open the storage and ask it about its root (read-only, no retry): a scheme nothing
    handles, an endpoint that refuses or credentials it rejects are one StorageError line."""
    fs, root = filesystem(storage)
    try:
        fail_fast(fs).get_file_info(root)
    except (OSError, pa.ArrowException) as e:
        hint = (" (check AWS_ENDPOINT_URL, the credentials and the network)"
                if fs.type_name == "s3" else "")  # fmt: skip
        raise StorageError(f"cannot reach storage {storage!r}: {one_line(e)}{hint}") from None


def relative(storage: str, path: str) -> str:
    """A path under the storage (a local path or scheme://bucket/path) relative to its root, so
    that a row naming it still reads after the storage moved; a path outside it as it is."""
    _, root = filesystem(storage)
    inner = path.split("://", 1)[-1]
    return inner[len(root) :].lstrip("/") if inner.startswith(root.rstrip("/") + "/") else path


def locate(storage: str, path: str) -> str:
    """The full location of a path a row stores (``relative``): under the storage if it is
    relative; as it is if it is absolute (a path outside the storage, or one in a row written
    before paths were relative: results.migrate)."""
    if not path or "://" in path or path.startswith("/"):
        return path
    fs, root = filesystem(storage)
    return f"{root}/{path}" if fs.type_name == "local" else f"{fs.type_name}://{root}/{path}"


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
            f"storage {storage!r} is not writable ({one_line(e)}); choose another --storage"
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
    crash_point(f"{table}_part")  # a kill point of the crash-consistency test (crash_points)
    return path


def write_text(storage: str, target: str, text: str) -> None:
    """Write a text file under the storage (a table under <storage>/tables/) atomically; a
    folder in its path that is a file, or cannot be written, is one StorageError line."""
    fs, _ = filesystem(storage)
    folder = target.rsplit("/", 1)[0]
    shown = uri(storage, folder)
    try:
        info = fs.get_file_info(folder)
        if info.type not in (pafs.FileType.Directory, pafs.FileType.NotFound):
            raise StorageError(
                f"{shown} is a file, not the folder {target.rsplit('/', 1)[1]} is written to: "
                "move it away (nothing in the storage reads it) and run the command again"
            )
        fs.create_dir(folder, recursive=True)
        tmp = f"{folder}/.{target.rsplit('/', 1)[1]}.{uuid.uuid4().hex}.tmp"
        with fs.open_output_stream(tmp) as out:
            out.write(text.encode())
        fs.move(tmp, target)
    except (OSError, pa.ArrowException) as e:
        raise StorageError(
            f"cannot write into {shown} ({one_line(e)}): make it a writable "
            "folder, or copy the storage somewhere writable and run the command there"
        ) from None


def part_paths(storage: str, table: str, sweep: str | None = None) -> list[str]:
    """The Parquet parts of a table (optionally of one sweep), in a stable order."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; tables: {TABLES}")
    fs, root = filesystem(storage)
    base = f"{root}/results/{table}" + (f"/{_safe(sweep)}" if sweep else "")
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    return sorted(
        i.path for i in infos if i.path.endswith(".parquet") and not i.base_name.startswith(".")
    )


def read_parts(storage: str, paths: list[str]) -> tuple[list[pd.DataFrame], dict[str, str]]:
    """(frames of the sound parts, each in the current format: results.migrate, {damaged part:
    why}). A part is damaged when it does not read, or its columns or rows are not those of its
    table (results.damage): a readable part of another table counts as damaged, never as rows."""
    from results import damage

    fs, _ = filesystem(storage)
    frames, damaged = [], {}
    for p in paths:
        table = part_table(p)
        try:
            t = pq.read_table(p, filesystem=fs)
            t.validate(full=True)  # e.g. a flipped byte that left a string no UTF-8
            why = damage.part_schema(t.schema, table) if table else None
            frame = t.to_pandas() if why is None else None
        except (OSError, pa.ArrowException, ValueError, TypeError) as e:
            why, frame = one_line(e, 200), None  # pyarrow's own decoding errors included
        if why is None and table:
            why = damage.part_values(frame, table)
        if why is None:
            frames.append(migrate.part(frame, table) if table else frame)
        else:
            damaged[p] = why
    return frames, damaged


def part_table(path: str) -> str | None:
    """The table of a part's path ``.../results/<table>/<cell>/<part>.parquet``."""
    parts = path.split("/")
    if len(parts) >= 4 and parts[-4] == "results" and parts[-3] in TABLES:
        return parts[-3]
    return None


def newest(frames: list[pd.DataFrame], table: str) -> pd.DataFrame:
    """The rows of several parts, the newest row per key (a re-written part replaces its rows)."""
    if not frames:
        return pd.DataFrame()
    df = pd.concat(frames, ignore_index=True)
    return (
        df.sort_values("written_at", kind="stable")
        .drop_duplicates(KEYS[table], keep="last")
        .reset_index(drop=True)
    )


def load(storage: str, table: str, sweep: str | None = None) -> pd.DataFrame:
    """All rows of a table (optionally of one sweep), newest row per key; empty if none yet.

    A damaged part is a StorageError: a table built without it could pick another winner.
    """
    frames, damaged = read_parts(storage, part_paths(storage, table, sweep))
    if damaged:
        path, why = next(iter(damaged.items()))
        more = f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""
        raise StorageError(
            f"damaged Parquet part {path}{more} ({why}); nothing is deleted: `python -m results "
            f"check --storage {storage} --repair` sets it aside and rebuilds its rows from Tune's "
            "records and the trial's checkpoint"
        )
    df = newest(frames, table)
    if table == "evaluations" and not df.empty:
        # the NLL the hierarchical papers print, derived on load (never stored twice)
        return df.assign(test_nll=-df["test_log_likelihood"])
    return df


def exists(storage: str) -> bool:
    """Whether the storage holds anything a sweep writes (read-only: creates nothing)."""
    check_reachable(storage)  # not "no sweep" when it did not answer: that, at once
    fs, root = filesystem(storage)
    try:
        infos = fs.get_file_info([f"{root}/{d}" for d in ("results", "ray", "optuna", CELLS)])
    except (OSError, pa.ArrowException) as e:
        raise StorageError(f"cannot read storage {storage!r}: {one_line(e)}") from None
    return any(i.type == pafs.FileType.Directory for i in infos)


def sweeps(storage: str) -> list[str]:
    """Every cell (sweep) that left anything in the storage: records, Tune, Optuna, Parquet."""
    fs, root = filesystem(storage)
    names: set[str] = set()
    # (folder, the ending of a cell's entry there); anything else is not a cell: a temporary
    # file, a damaged journal kept by results.repair, or the lock Optuna's journal holds while
    # it writes (<cell>.journal.lock, left behind by a driver killed while holding it).
    folders = [(f"{root}/ray", ""), (f"{root}/optuna", ".journal"), (f"{root}/{CELLS}", ".json")]
    folders += [(f"{root}/results/{t}", "") for t in TABLES]
    for folder, ending in folders:
        for i in fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True)):
            name = i.base_name
            if name.startswith(".") or ".damaged-" in name:
                continue
            if ending and name.endswith(ending) and i.type == pafs.FileType.File:
                names.add(name.removesuffix(ending))
            elif not ending and i.type == pafs.FileType.Directory:
                names.add(name)
    return sorted(names)


CELLS = "cells"
"""``<storage>/cells/<cell>.json``: what each cell was started with (the cell, its fixed config,
its trial target, sampler and seed, the provenance), written by the sweep, read by --resume,
--status and ``python -m results check``."""


def write_cell_record(storage: str, sweep: str, record: dict) -> None:
    fs, root = filesystem(storage)
    fs.create_dir(f"{root}/{CELLS}", recursive=True)
    path = f"{root}/{CELLS}/{_safe(sweep)}.json"
    tmp = f"{root}/{CELLS}/.{_safe(sweep)}.{uuid.uuid4().hex}.tmp"
    with fs.open_output_stream(tmp) as f:
        f.write(json.dumps(record, indent=1, sort_keys=True, default=str).encode())
    fs.move(tmp, path)
    crash_point("cell_record")


def cell_record(storage: str, sweep: str) -> dict | None:
    """A cell's record, or None if the cell was never started here (read-only). A record that
    is there but is not what sweeps.engine.cell.run_cell writes is results.damage.Damaged, never
    None: None would let a resumed cell go on with another target."""
    from results import damage

    fs, root = filesystem(storage)
    path = f"{root}/{CELLS}/{_safe(sweep)}.json"
    data = read_bytes(fs, path)
    if data is None:
        return None
    return migrate.cell_record(damage.cell_record(data, uri(storage, path), storage))


def read_bytes(fs: pafs.FileSystem, path: str) -> bytes | None:
    """A file's bytes; None when there is no file there (a folder in its place: b"")."""
    try:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            return None
        if info.type != pafs.FileType.File:
            return b""
        with fs.open_input_stream(path) as f:
            return f.read()
    except (OSError, pa.ArrowException) as e:
        raise StorageError(f"cannot read {path}: {one_line(e)}") from None


def quarantine(storage: str, path: str) -> str:
    """Move a damaged file under <storage>/quarantine/ (same relative path): set aside, never
    deleted, so a person can still look at it."""
    fs, root = filesystem(storage)
    target = f"{root}/quarantine/{path.removeprefix(root).lstrip('/')}.{int(time.time())}"
    fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
    fs.move(path, target)
    return target
