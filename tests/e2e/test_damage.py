"""Damaged records of a storage: each reader says what is wrong in one line, never a traceback.

One small sweep is run once per module (tests/e2e/test_storage_guarantees.py's fixtures); each
test damages its own copy of the storage. Generated damage (hypothesis: truncation at any byte, a
flipped byte, another file's contents, deletion) of each kind of file must leave ``results
table``, ``results check``, the sweep's ``--status``, ``sweeps/replay.py --list`` and the
preflight of ``--resume`` with an exit code of 0, 1 or 2 and no traceback; a refused resume
writes nothing, and a resume that passed leaves no damage. The issue's named cases end in their
one line, and one repairable case per file kind goes through the real ``--resume``.
"""

from __future__ import annotations

import collections
import hashlib
import io
import shutil
import sqlite3
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from results import store
from results.__main__ import main as results_main
from sweeps.engine import preflight
from sweeps.engine.replay import main as replay_main
from tests.e2e.test_storage_guarantees import CELL, TINY, ray_module, sweep, swept  # noqa: F401

pytestmark = pytest.mark.slow

C = CELL.name
KINDS = {
    "cell record": f"cells/{C}.json",
    "journal": f"optuna/{C}.journal",
    "experiment state": f"ray/{C}/experiment_state-*.json",
    "tuner.pkl": f"ray/{C}/tuner.pkl",
    "searcher state": f"ray/{C}/searcher-state-*.pkl",
    "params.json": f"ray/{C}/TrainTrial_*/params.json",
    "history.json": f"ray/{C}/TrainTrial_*/checkpoint_*/history.json",
    "config.json": f"ray/{C}/TrainTrial_*/checkpoint_*/config.json",
    "trials part": f"results/trials/{C}/*.parquet",
    "curves part": f"results/curves/{C}/*.parquet",
    "evaluations part": f"results/evaluations/{C}/*.parquet",
    "sample grid": f"samples/{C}/*.npz",
}
"""Each kind of file a finished storage holds, as a glob under it (its first match is damaged)."""
TRIED: collections.Counter = collections.Counter()
"""The damage cases tried, by file kind (printed at the end of the module: -s shows it)."""


@pytest.fixture(scope="module", autouse=True)
def tally():
    yield
    kinds = collections.Counter(kind for kind, _ in TRIED.elements())
    total, by_kind = sum(TRIED.values()), dict(sorted(kinds.items()))
    print(
        f"\ndamage cases tried: {total}; by file kind: {by_kind}; by kind and damage: "
        f"{dict(sorted(TRIED.items()))}"
    )


CHECKED = ("cell record", "experiment state", "params.json", "history.json", "config.json",
           "trials part", "curves part", "evaluations part")  # fmt: skip
"""The kinds `results check` reads: a truncated one must be a difference naming it."""


def file_of(storage: Path, kind: str) -> Path:
    """The kind's first file; a checkpoint's, of the first trial's newest checkpoint (the one
    read)."""
    found = sorted(storage.glob(KINDS[kind]))
    if "checkpoint" not in KINDS[kind]:
        return found[0]
    return [p for p in found if p.parent.parent == found[0].parent.parent][-1]


def snapshot(storage: Path) -> dict[str, str]:
    return {
        str(p.relative_to(storage)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(storage.rglob("*"))
        if p.is_file()
    }


def run(command, argv: list[str]) -> tuple[int, str, str]:
    """A command in this process: (exit code, stdout, stderr); any exception but SystemExit
    escapes and fails the test, and so does a code other than 0, 1, 2 or a printed traceback."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = command(argv)
        except SystemExit as e:
            code = e.code
    text = out.getvalue() + err.getvalue()
    assert code in (0, 1, 2) and "Traceback" not in text, (argv, code, text)
    if code == 2:
        assert err.getvalue().strip().splitlines()[-1].startswith("error: "), text
    return code, out.getvalue(), err.getvalue()


def sweep_main(argv: list[str]) -> int:
    return sweep(*argv)


def readers(storage: Path) -> dict[str, tuple[int, str, str]]:
    s = str(storage)
    return {
        "table": run(results_main, ["table", "vlae", "--storage", s]),
        "check": run(results_main, ["check", "--storage", s]),
        "status": run(sweep_main, [s, "--status"]),
        "replay": run(replay_main, ["--storage", s, "--list"]),
    }


def resume_preflight(storage: Path) -> str | None:
    """The --resume preflight and repairs (no Ray): None when they passed, else the line."""
    out = io.StringIO()
    try:
        with redirect_stdout(out):
            old = preflight.check_storage(str(storage), [CELL], TINY, "resume", None)
            preflight.repair_storage(str(storage), old, None)
    except (preflight.Refusal, store.StorageError) as e:
        assert "\n" not in str(e), str(e)
        return str(e)
    return None


def damage(path: Path, how: str, at: int, xor: int, other: Path) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: at % max(len(data), 1)])
    elif how == "flip":
        i = at % len(data)
        path.write_bytes(data[:i] + bytes([data[i] ^ xor]) + data[i + 1 :])
    elif how == "other":
        path.write_bytes(other.read_bytes())
    else:
        path.unlink()


@pytest.mark.parametrize("kind", sorted(KINDS))
@settings(derandomize=True, deadline=None, max_examples=10,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(
    how=st.sampled_from(["truncate", "flip", "other", "delete"]),
    at=st.integers(0, 2**20),
    xor=st.integers(1, 255),
    other_kind=st.sampled_from(sorted(KINDS)),
)
def test_generated_damage_never_ends_in_a_traceback(swept, kind, how, at, xor, other_kind):  # noqa: F811
    TRIED[kind, how] += 1
    folder = Path(tempfile.mkdtemp(prefix="damage"))
    try:
        storage = folder / "s"
        shutil.copytree(swept, storage)
        path = file_of(storage, kind)
        damage(path, how, at, xor, file_of(storage, other_kind))
        got = readers(storage)
        if how == "truncate" and kind in CHECKED:
            assert got["check"][0] == 1 and str(path) in got["check"][1], got["check"]
        before = snapshot(storage)
        refused = resume_preflight(storage)
        if refused is not None:
            assert snapshot(storage) == before, refused  # a refused resume writes nothing
        else:  # what it repaired is whole again
            _, out, _ = run(results_main, ["check", "--storage", str(storage)])
            assert "is damaged" not in out and "damaged " not in out, out
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def storage(swept, tmp_path):  # noqa: F811
    copy = tmp_path / "s"
    shutil.copytree(swept, copy)
    return copy


def rows(storage: Path, table: str = "trials") -> pd.DataFrame:
    df = store.load(str(storage), table).drop(columns=["written_at", "checkpoint_path"],
                                              errors="ignore")  # fmt: skip
    return df[sorted(df.columns)].sort_values("trial_id").reset_index(drop=True)


def test_a_garbage_line_in_a_journal_is_named_and_resume_cuts_it(storage, capsys):
    journal = file_of(storage, "journal")
    good = journal.read_bytes()
    journal.write_bytes(good + b"garbage\n")
    got = readers(storage)
    assert got["table"][0] == 0 and f"{journal} is damaged (line" in got["table"][2]
    assert got["check"][0] == 1 and f"{journal} is damaged (line" in got["check"][1]
    assert got["status"][0] == 2 and str(journal) in got["status"][2]
    assert sweep(str(storage), "--resume") == 0
    assert f"repaired: cut {journal} before its damaged tail" in capsys.readouterr().out
    assert journal.read_bytes() == good
    assert [p.read_bytes() for p in journal.parent.glob("*.damaged-*")] == [good + b"garbage\n"]
    assert readers(storage)["check"][1].endswith("1 cells, 0 differences, 0 trials not finished\n")


def test_a_journal_damaged_before_its_end_is_refused_and_left_as_it_is(storage):
    journal = file_of(storage, "journal")
    lines = journal.read_bytes().split(b"\n")
    journal.write_bytes(b"\n".join([*lines[:4], b"x" + lines[4], *lines[5:]]))
    before = snapshot(storage)
    line = resume_preflight(storage)
    assert f"{journal} is damaged (line 5 of" in line and "cannot be dropped" in line
    assert snapshot(storage) == before


@pytest.mark.parametrize("text", [b"{bad", b"[1, 2]", b'{"trials": "four"}'])
def test_a_damaged_cell_record_is_a_difference_and_refuses_resume(storage, text):
    record = file_of(storage, "cell record")
    record.write_bytes(text)
    got = readers(storage)
    assert f"{record} is damaged" in got["check"][1] and "0 differences" not in got["check"][1]
    before = snapshot(storage)
    assert sweep(str(storage), "--resume") == 2
    assert snapshot(storage) == before


def test_a_truncated_experiment_state_is_named_and_refuses_resume(storage):
    state = file_of(storage, "experiment state")
    state.write_bytes(state.read_bytes()[:100])
    got = readers(storage)
    assert f"{state} is damaged (not JSON" in got["check"][1]
    assert f"--resume: {state} is damaged (not JSON" in resume_preflight(storage)


def test_a_part_of_another_tables_schema_is_damage_and_resume_rebuilds_it(storage, capsys):
    before = rows(storage)
    part = file_of(storage, "trials part")
    part.write_bytes(file_of(storage, "curves part").read_bytes())
    got = readers(storage)
    assert (
        got["table"][0] == 2
        and f"damaged Parquet part {part} (not a trials part" in (got["table"][2])
    )
    assert f"damaged trials part {part}: not a trials part" in got["check"][1]
    assert sweep(str(storage), "--resume") == 0
    assert "repaired: set aside" in capsys.readouterr().out
    pd.testing.assert_frame_equal(rows(storage), before)
    assert readers(storage)["check"][1].endswith("1 cells, 0 differences, 0 trials not finished\n")


def test_a_tables_path_that_is_a_file_is_one_line(storage):
    shutil.rmtree(storage / "tables")
    (storage / "tables").write_text("")
    code, _, err = run(results_main, ["table", "vlae", "--storage", str(storage)])
    assert code == 2 and err == (
        f"error: {storage}/tables is a file, not the folder vlae.md is written to: move it away "
        "(nothing in the storage reads it) and run the command again\n"
    )


def old_optuna_database(path: Path) -> None:
    """An SQLite database whose Optuna schema is of an old version (its alembic_version)."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        db.execute("INSERT INTO alembic_version VALUES ('v1.3.0.a')")
        db.execute("CREATE TABLE studies (study_id INTEGER PRIMARY KEY, study_name VARCHAR)")


@pytest.mark.parametrize("case", ["old schema", "a folder"])
def test_a_study_storage_of_an_old_schema_or_a_folder_is_one_line(case, ray_module, tmp_path):  # noqa: F811
    db = tmp_path / "optuna.db"
    old_optuna_database(db) if case == "old schema" else db.mkdir()
    storage = tmp_path / "sweep"
    code, _, err = run(sweep_main, [str(storage), "--study-storage", f"sqlite:///{db}"])
    want = "optuna storage upgrade" if case == "old schema" else "is a folder, not a database"
    assert code == 2 and len(err.strip().splitlines()) == 1 and want in err, err
    assert not storage.exists()
