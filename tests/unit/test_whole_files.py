"""Tune's files written through results.whole_files: a kill during a write leaves the last whole
file (and a partial one the resume removes), never a torn one; the filesystem travels to Tune's
workers (pickled) and copies folders as pyarrow's own does."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from results import damage, repair, whole_files
from results.crash_points import ENV

REPO = Path(__file__).resolve().parents[2]


def test_a_uri_keeps_tunes_own_filesystem():
    assert whole_files.tune_filesystem("s3://bucket/sweep") is None
    assert whole_files.tune_filesystem("/tmp/sweep") is not None


def test_it_pickles_to_an_equal_filesystem():
    fs = whole_files.tune_filesystem("/tmp/x")
    assert pickle.loads(pickle.dumps(fs)) == fs


@settings(max_examples=20, deadline=None)
@given(files=st.dictionaries(st.from_regex(r"(sub\.d/)?[a-z]{1,8}", fullmatch=True),
                             st.binary(max_size=3000), min_size=1, max_size=6))  # fmt: skip
def test_a_folder_copied_through_it_is_the_same_and_leaves_nothing_partial(tmp_path_factory, files):
    root = tmp_path_factory.mktemp("copy")
    src, dst = root / "src", root / "dst"
    for name, data in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    dst.mkdir()  # Tune creates the folder first, as pyarrow's copy_files needs
    fs = whole_files.tune_filesystem(str(dst))
    for _ in range(2):  # the second copy replaces each file
        pafs.copy_files(str(src), str(dst), destination_filesystem=fs)
    for name, data in files.items():
        assert (dst / name).read_bytes() == data
    assert not [p for p in dst.rglob("*") if whole_files.is_partial(p.name)]


WRITER = """
import sys
from results.whole_files import tune_filesystem
path = sys.argv[1]
fs = tune_filesystem(path)
with fs.open_output_stream(path) as f:
    f.write(b"new" * 1000)
"""


def test_a_kill_while_tune_writes_its_searcher_state_leaves_the_last_whole_one(tmp_path):
    cell = tmp_path / "ray" / "cell"
    cell.mkdir(parents=True)
    state = cell / "searcher-state-2026-12-07_08-00-00.pkl"
    old = pickle.dumps({"trials": [1, 2]})
    state.write_bytes(old)
    env = {**os.environ, ENV: "tune_file_half:1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", WRITER, str(state)], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == -9, done.stderr
    assert "crash point tune_file_half:1" in done.stderr
    assert state.read_bytes() == old  # the whole one stands
    damage.pickled(state.read_bytes(), str(state), str(tmp_path))
    partial = [p for p in cell.iterdir() if whole_files.is_partial(p.name)]
    assert len(partial) == 1 and partial[0].read_bytes() == b"new" * 1000

    line = repair.partial_files(str(tmp_path), "cell")
    assert line is not None and "removed 1 half-written file" in line
    assert sorted(p.name for p in cell.iterdir()) == [state.name]
    assert repair.partial_files(str(tmp_path), "cell") is None


def test_a_file_not_of_tunes_state_is_written_without_a_kill_point(tmp_path):
    target = tmp_path / "checkpoint.pt"
    env = {**os.environ, ENV: "tune_file_half:1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", WRITER, str(target)], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert target.read_bytes() == b"new" * 1000


def test_a_write_that_fails_leaves_the_old_file_and_no_partial(tmp_path):
    target = tmp_path / "experiment_state-x.json"
    target.write_bytes(b"{}")
    f = whole_files._WholeFile(str(target))
    f.write(b"half")
    f._file.close()  # the next write fails, as on a full disk
    with pytest.raises(ValueError):
        f.write(b"more")
    f.close()
    assert target.read_bytes() == b"{}"
    assert not [p for p in tmp_path.iterdir() if whole_files.is_partial(p.name)]
