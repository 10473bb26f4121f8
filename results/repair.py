"""What a resumed sweep (and ``python -m results check --repair``) repairs of a damaged storage,
and what it refuses, before anything else runs.

Rebuilt from the other records: a damaged Parquet part (set aside under quarantine/, its rows
written again from Tune's records and the trial's checkpoint: results.check.repair) and a
journal whose damage is its tail (kept as ``<journal>.damaged-<time>``, cut before the first
damaged line; a torn last line a crash left is cut the same way, since Optuna would append the
next operation to it). Removed: the half-written files of Tune's a kill left under their
temporary names (results.whole_files; the last whole file stands). Refused, with the file and
the fix: a damaged cell record (its target, fixed config, sampler and seed are recorded nowhere
else), a journal damaged before its end (the operations after a lost one name trials by the
order they were made, so replaying the rest would give other trials other values), Tune's
experiment state, tuner.pkl or searcher state, a trial's params.json and a checkpoint's
config.json or history.json (Tune and the rebuilt rows read them, and nothing else holds them).
"""

from __future__ import annotations

import time

import pyarrow as pa
import pyarrow.fs as pafs

from results import check, damage, records, store, studies, whole_files

TUNE_FILES = (("tuner.pkl", damage.pickled), ("searcher-state-", damage.pickled),
              ("search_gen_state-", damage.pickled))  # fmt: skip
"""Tune's files of a cell that only Tune reads (on restore), and their validators (Tune's
search_gen_state-*.json is a pickle too, whatever its name)."""


def journal_tail(storage: str, sweep: str, study_url: str | None) -> str | None:
    """Cut a cell's journal before its damaged or torn tail, keeping the original beside it as
    ``<journal>.damaged-<time>``; a line saying so, or None when there was nothing to cut. A
    journal damaged before its end is left as it is (reading it then raises Damaged)."""
    url = study_url or storage
    if studies.is_rdb(url):
        return None
    fs, root = store.filesystem(url)
    path = f"{root}/optuna/{sweep}.journal"
    data = store.read_bytes(fs, path)
    if not data:
        return None
    good, number, _ = damage.journal_lines(data)
    if number is not None and not damage.tail_damage_only(data):
        return None
    if number is None and data.endswith(b"\n"):
        return None
    kept = f"{path}.damaged-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    fs.copy_file(path, kept)
    tmp = f"{path}.{int(time.time() * 1e6)}.tmp"
    with fs.open_output_stream(tmp) as f:
        f.write(data[:good])
    fs.move(tmp, path)
    cut = data[good:].count(b"\n") + (not data.endswith(b"\n"))
    return (f"cut {store.uri(url, path)} before its damaged tail ({cut} lines; the original "
            f"kept as {store.uri(url, kept)})")  # fmt: skip


def tune_files(storage: str, sweep: str) -> None:
    """Damaged unless each file Tune reads on restore is whole."""
    fs, root = store.filesystem(storage)
    folder = f"{root}/ray/{sweep}"
    for info in fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True)):
        for prefix, validate in TUNE_FILES:
            if info.base_name.startswith(prefix) and info.type == pafs.FileType.File:
                data = store.read_bytes(fs, info.path) or b""
                validate(data, store.uri(storage, info.path), storage)


def partial_files(storage: str, sweep: str) -> str | None:
    """Remove the half-written files a kill left in a cell's Tune experiment (results.whole_files:
    their whole predecessors stand); a line saying how many, or None when there were none. An
    object store has none (Tune writes there through its own filesystem): not listed."""
    if whole_files.tune_filesystem(storage) is None:
        return None
    fs, root = store.filesystem(storage)
    selector = pafs.FileSelector(f"{root}/ray/{sweep}", allow_not_found=True, recursive=True)
    found = [i.path for i in fs.get_file_info(selector) if whole_files.is_partial(i.base_name)]
    for path in found:
        fs.delete_file(path)
    if not found:
        return None
    folder = store.uri(storage, f"{root}/ray/{sweep}")
    return (f"removed {len(found)} half-written file(s) a kill left in {folder} "
            "(their last whole versions stand)")  # fmt: skip


def refusal(storage: str, sweep: str, study_url: str | None) -> None:
    """Raise Damaged (the file, what is wrong, the fix) if a record of the cell is damaged in a
    way ``prepare`` cannot repair; writes nothing."""
    record = store.cell_record(storage, sweep)
    if record is not None:
        fs, root = store.filesystem(storage)
        file = store.uri(storage, f"{root}/{store.CELLS}/{sweep}.json")
        damage.resumable_record(record, file, storage)
    tune_files(storage, sweep)
    records.tune_trials(storage, sweep)
    url = study_url or storage
    if not studies.is_rdb(url):
        fs, root = store.filesystem(url)
        path = f"{root}/optuna/{sweep}.journal"
        data = store.read_bytes(fs, path)
        if data is not None and not damage.tail_damage_only(data):
            studies.checked_journal(url, data, store.uri(url, path))


def prepare(storage: str, sweep: str, study_url: str | None) -> list[str]:
    """Repair what the other records of a cell rebuild exactly (after ``refusal`` passed): a
    journal's damaged or torn tail, Tune's half-written files, damaged Parquet parts. Returns a
    line per repair."""
    try:
        done = [line] if (line := journal_tail(storage, sweep, study_url)) else []
        done += [line] if (line := partial_files(storage, sweep)) else []
        state = check.read_sweep(storage, sweep, study_url)
        if state.broken:
            raise state.broken[0]
        if state.damaged:
            done += check.repair(storage, state)
    except (OSError, pa.ArrowException) as e:
        why = store.one_line(e)
        raise store.StorageError(f"cannot repair cell {sweep} in {storage}: {why}") from None
    return done
