"""Where a sweep's Optuna studies live on a cluster, checked before Ray starts.

- With an object store as --storage and no --study-storage, each cell's study is a journal on the
  driver's machine synced to ``<storage>/optuna/<cell>.journal`` (results.studies): against a
  local S3 server (moto), a real sweep, ``python -m results`` reading it back, and a resume on a
  "new head" (the local copy gone).
- ``--study-storage postgresql://...`` against a real PostgreSQL server (tests/postgres.py).
- Bad study storages and storages, each one ``error:`` line and exit 2 before Ray starts, with
  nothing created.
"""

from __future__ import annotations

import importlib.util
import pickle
import time

import optuna
import pyarrow.fs as pafs
import pytest
import ray

from results import check, records, store, studies, synced_journal
from results.__main__ import main as results_main
from sweeps import cli, vlae
from sweeps.cells import Budget
from tests import postgres as postgres_server
from tests import test_object_store
from tests.test_resume import DRIVER

s3 = test_object_store.s3  # the fixtures: a local S3 server (moto), a PostgreSQL server
postgres = postgres_server.postgres
needs_psycopg = pytest.mark.skipif(
    importlib.util.find_spec("psycopg") is None,
    reason="psycopg is not installed (pip install 'vae-sweeps[cluster]')",
)

CELL = vlae.CELLS[0]
BUDGET = Budget(trials=2, max_epochs=2, grace_epochs=2, reduction_factor=2, patience=2,
                eval_k=5, eval_seeds=1, fixed={"model/hidden_dim": 16})  # fmt: skip


@pytest.fixture(autouse=True)
def no_journal_writers_left():
    """This process's journal writers (results.studies) end with the test: its S3 server does."""
    yield
    synced_journal.JournalSync._all.clear()


def sweep(storage: str, *extra: str) -> int:
    argv = ["--storage", storage, "--datasets", "fashion_mnist", *extra]
    return cli.main("vlae", [CELL], {"smoke": BUDGET}, {}, argv=argv)


def listing(fs: pafs.FileSystem, folder: str) -> list[str]:
    infos = fs.get_file_info(pafs.FileSelector(folder, recursive=True, allow_not_found=True))
    return sorted(i.path for i in infos)


def quiet_study(storage, name: str = "cell") -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(study_name=name, storage=storage)


def trials_in(storage) -> int:
    """The study's trial count (load_study writes nothing; create_study would log an attempt)."""
    return len(optuna.load_study(study_name="cell", storage=storage).trials)


# --- the synced journal, without Ray ---


def test_a_journal_on_an_object_store_syncs_pickles_and_moves_to_a_new_head(
    s3, isolated_cache, monkeypatch
):
    monkeypatch.setattr(synced_journal, "SYNC_EVERY_S", 0.5)
    storage = "s3://sweeps/unit"
    backend = synced_journal.SyncedJournalBackend(storage, "cell")
    study = quiet_study(optuna.storages.JournalStorage(backend))
    study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), 0.5)
    local = synced_journal.local_journal(storage, "cell")
    assert local.is_relative_to(isolated_cache / "cache" / "journals")
    remote = "sweeps/unit/optuna/cell.journal"
    deadline = time.monotonic() + 10  # the uploader thread, rate-limited, sends it
    while time.monotonic() < deadline:
        if s3.get_file_info(remote).size == local.stat().st_size:
            break
        time.sleep(0.2)
    with s3.open_input_stream(remote) as f:
        assert f.read() == local.read_bytes()

    # Pickled (as Tune saves its searcher), it is its storage and cell; it uploads first.
    study.tell(study.ask(), 0.25)
    state = pickle.dumps(optuna.storages.JournalStorage(backend))
    assert len(state) < 2000 and b"sweeps/unit" in state
    with s3.open_input_stream(remote) as f:
        assert f.read() == local.read_bytes()

    # A new head: no local copy; unpickling takes the object store's.
    local.unlink()
    restored = pickle.loads(state)
    assert local.read_bytes().count(b"\n") > 0
    assert trials_in(restored) == 2

    # A local copy that is a strict prefix of the store's (an old head) is replaced by it...
    whole = local.read_bytes()
    local.write_bytes(whole[: whole.index(b"\n") + 1])
    synced_journal.JournalSync._all.clear()
    assert trials_in(records.study_storage(storage, "cell")) == 2
    # ... one ahead of it (written past the last upload, then the driver died) is kept and sent.
    s3_bytes = whole[: whole.rindex(b"\n", 0, len(whole) - 1) + 1]
    with s3.open_output_stream(remote) as f:
        f.write(s3_bytes)
    synced_journal.JournalSync._all.clear()
    studies.flush(storage, "cell")  # nothing open in this process: nothing to do
    ahead = records.study_storage(storage, "cell")
    assert local.read_bytes() == whole
    ahead._backend.flush()
    with s3.open_input_stream(remote) as f:
        assert f.read() == whole
    # ... and one that disagrees is set aside, never deleted.
    local.write_bytes(b'{"op_code": 0, "worker_id": "other", "study_name": "x"}\n' * 3)
    synced_journal.JournalSync._all.clear()
    assert trials_in(records.study_storage(storage, "cell")) == 2
    assert len(list(local.parent.glob("cell.journal.set-aside-*"))) == 1


def test_reading_an_object_stores_journal_creates_nothing(s3, isolated_cache):
    storage = "s3://sweeps/read"
    assert records.study_trials(storage, "cell") is None  # no journal: no study
    writer = synced_journal.SyncedJournalBackend(storage, "cell")
    study = quiet_study(optuna.storages.JournalStorage(writer))
    study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), 1.0)
    writer.flush()
    before = listing(s3, "sweeps")
    synced_journal.JournalSync._all.clear()  # another process (a laptop): no writer here
    cache = isolated_cache / "cache" / "journals"
    import shutil

    shutil.rmtree(cache)
    trials = records.study_trials(storage, "cell")
    assert [t.value for t in trials] == [1.0]
    assert not cache.exists() and listing(s3, "sweeps") == before


def test_a_half_written_last_line_is_left_out_and_a_damaged_one_is_an_error():
    line = b'{"op_code": 0, "worker_id": "w", "study_name": "s", "directions": [1]}\n'
    backend = synced_journal.BytesJournalBackend(line + b'{"op_code": 4, "wor')
    assert len(list(backend.read_logs(0))) == 1
    with pytest.raises(ValueError):
        list(synced_journal.BytesJournalBackend(b"{oops\n" + line).read_logs(0))


# --- bad input, before Ray starts ---


def closed_port() -> int:
    return postgres_server.free_port()  # nothing listens on it once the probe socket closed


def bad_study_storages(tmp_path):
    not_a_db = tmp_path / "not-a-db.sqlite"
    not_a_db.write_bytes(b"these bytes are no SQLite database\n" * 20)
    return {
        "closed port": (f"postgresql://sweeper:pw@127.0.0.1:{closed_port()}/optuna",
                        "Connection refused): is the database server running"),
        "missing driver": ("postgresql+pg8000://sweeper:pw@127.0.0.1:5432/optuna",
                           "its database driver 'pg8000' is not installed: pip install pg8000"),
        "postgres://": ("postgres://sweeper:pw@127.0.0.1:5432/optuna",
                        "nothing here handles postgres:// (write postgresql://)"),
        "unknown scheme": ("foo://x/y", "nothing here handles foo://"),
        "not a database": (f"sqlite:///{not_a_db}", "file is not a database"),
        "no folder": (f"sqlite:///{tmp_path}/absent/folder/optuna.db",
                      "unable to open database file; cannot open or create"),
    }  # fmt: skip


CASES = ["closed port", "missing driver", "postgres://", "unknown scheme", "not a database",
         "no folder"]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_a_bad_study_storage_is_one_line_before_ray_and_creates_nothing(
    case, tiny_data_root, tmp_path, monkeypatch, capsys
):
    if case == "missing driver" and importlib.util.find_spec("pg8000") is not None:
        pytest.skip("pg8000 is installed here: no missing driver to try")
    if case == "closed port" and importlib.util.find_spec("psycopg") is None:
        pytest.skip("psycopg is not installed (pip install 'vae-sweeps[cluster]')")  # its error
    monkeypatch.setenv("VAE_DATA_ROOT", str(tiny_data_root))
    url, message = bad_study_storages(tmp_path)[case]
    not_a_db = (tmp_path / "not-a-db.sqlite").read_bytes()
    storage = tmp_path / "sweep"
    start = time.monotonic()
    assert sweep(str(storage), "--study-storage", url) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --study-storage ") and message in err[0], err
    assert ":pw@" not in err[0]  # the password is not printed
    assert time.monotonic() - start < 30
    assert not ray.is_initialized()
    assert not storage.exists() and not (tmp_path / "absent").exists()
    assert (tmp_path / "not-a-db.sqlite").read_bytes() == not_a_db


@needs_psycopg
def test_wrong_credentials_or_an_unknown_database_are_one_line(
    postgres, tiny_data_root, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("VAE_DATA_ROOT", str(tiny_data_root))
    storage = tmp_path / "sweep"
    for url, message in [
        (postgres.url(password="wrong"), 'password authentication failed for user "sweeper"'),
        (postgres.url(database="nope"), 'database "nope" does not exist'),
    ]:
        assert sweep(str(storage), "--study-storage", url) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: --study-storage ") and message in err[0]
        assert "wrong" not in err[0]
        assert not ray.is_initialized() and not storage.exists()
    assert "check the user and password" in sweep_error(storage, postgres.url(password="x"))
    assert "createdb nope" in sweep_error(storage, postgres.url(database="nope"))


def sweep_error(storage, url: str) -> str:
    import io
    from contextlib import redirect_stderr

    err = io.StringIO()
    with redirect_stderr(err):
        assert sweep(str(storage), "--study-storage", url) == 2
    return err.getvalue()


@needs_psycopg
def test_a_postgresql_study_storage_that_works_passes_the_check(postgres):
    from sweeps import preflight

    assert preflight.check_study_storage(postgres.url()) == postgres.url()
    import sqlalchemy

    engine = sqlalchemy.create_engine(postgres.url())
    try:  # the check made Optuna's schema
        assert "trials" in sqlalchemy.inspect(engine).get_table_names()
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "storage,message",
    [
        ("foo://bucket/x", "cannot open storage 'foo://bucket/x': no filesystem for foo://"),
        ("s3://sweeps/x", "cannot reach storage 's3://sweeps/x': "),
    ],
)
def test_a_storage_nothing_handles_or_that_refuses_is_one_line_at_once(
    storage, message, tiny_data_root, monkeypatch, capsys
):
    monkeypatch.setenv("VAE_DATA_ROOT", str(tiny_data_root))
    for key, value in {  # an S3 endpoint where nothing listens
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed_port()}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    start = time.monotonic()
    assert sweep(storage) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert time.monotonic() - start < 10  # no minute of the SDK's retries
    assert not ray.is_initialized()
    # and the read-only commands say the same, not "no sweep"
    assert results_main(["check", "--storage", storage]) == 2
    assert message.split(":")[0] in capsys.readouterr().err


# --- real sweeps (Ray) ---


@pytest.mark.slow
def test_a_sweep_on_s3_keeps_its_study_as_a_synced_journal(s3, ray_local, capsys):
    storage = "s3://sweeps/journal"
    assert sweep(storage) == 0
    out = capsys.readouterr()
    assert "warning:" not in out.err, out.err
    remote = f"sweeps/journal/optuna/{CELL.name}.journal"
    assert s3.get_file_info(remote).type == pafs.FileType.File
    local = synced_journal.local_journal(storage, CELL.name)
    with s3.open_input_stream(remote) as f:
        assert f.read() == local.read_bytes()  # the last write went up when the cell ended
    trials = store.load(storage, "trials")
    synced_journal.JournalSync._all.clear()  # read as another machine would: from the object store
    study = records.study_trials(storage, CELL.name)
    assert sorted(t.user_attrs["tune_trial_id"] for t in study) == sorted(trials["trial_id"])
    assert all(t.state.is_finished() for t in study)

    assert results_main(["check", "--storage", storage]) == 0
    assert "1 cells, 0 differences, 0 trials not finished" in capsys.readouterr().out
    assert results_main(["table", "vlae", "--storage", storage]) == 0
    assert "| VAE | - | project | " in capsys.readouterr().out
    assert results_main(["report", "vlae", "--storage", storage]) == 0
    assert "wrote s3://sweeps/journal/report/vlae.html" in capsys.readouterr().out
    assert s3.get_file_info("sweeps/journal/report/vlae.html").type == pafs.FileType.File
    assert results_main(["plot", "vlae", "--storage", storage]) == 0
    assert "wrote s3://sweeps/journal/plots/vlae/" in capsys.readouterr().out
    assert results_main(["compare", "vlae", "--storage", storage]) == 0
    capsys.readouterr()

    # A new head node: no local copy of the journal. The sweep is whole: nothing to resume.
    import shutil

    shutil.rmtree(local.parent)
    assert sweep(storage, "--resume") == 0
    out = capsys.readouterr()
    assert "nothing to resume" in out.out and "warning:" not in out.err, out.err
    assert results_main(["check", "--storage", storage]) == 0
    assert "0 differences" in capsys.readouterr().out


@pytest.mark.slow
@needs_psycopg
def test_a_sweep_with_a_postgresql_study_storage(postgres, ray_local, tmp_path, capsys):
    storage, url = str(tmp_path / "sweep"), postgres.url()
    assert sweep(storage, "--study-storage", url) == 0
    assert not (tmp_path / "sweep" / "optuna").exists()  # the study is in the database
    study = optuna.load_study(study_name=CELL.name, storage=url)
    trials = store.load(storage, "trials")
    assert sorted(t.user_attrs["tune_trial_id"] for t in study.trials) == sorted(trials["trial_id"])
    capsys.readouterr()
    assert results_main(["check", "--storage", storage, "--study-storage", url]) == 0
    assert "1 cells, 0 differences" in capsys.readouterr().out


KILLED_DRIVER = DRIVER.replace("trials=4", "trials=3")
"""tests/test_resume.py's driver (two cells in flight), 3 trials a cell."""


@pytest.mark.slow
def test_a_driver_killed_on_s3_resumes_on_a_new_head(s3, tmp_path):
    """Two cells in flight (their studies written by the CellControllers actor), the driver
    SIGKILLed once a trial has ended, the local journals deleted (another head node): --resume
    takes the journals from the object store and ends with every trial once in Tune, Optuna
    and Parquet."""
    import os
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from tests.conftest import kill_process_group, make_mnist_like

    data = make_mnist_like(tmp_path / "data", "torchvision", n_train=3000, n_test=50)
    ray_tmp = tempfile.mkdtemp(prefix="rs", dir="/tmp")
    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "VAE_DATA_ROOT": str(data), "VAE_CACHE": str(tmp_path / "cache"),
           "RAY_TMPDIR": ray_tmp, "PYTHONPATH": repo}  # fmt: skip
    (tmp_path / "driver.py").write_text(KILLED_DRIVER)
    storage = "s3://sweeps/killed"
    cmd = [sys.executable, str(tmp_path / "driver.py"), "--storage", storage,
           "--datasets", "fashion_mnist", "--max-concurrent", "2"]  # fmt: skip
    driver = second = None
    try:
        with open(tmp_path / "first.log", "w") as log:
            driver = subprocess.Popen(
                cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            deadline = time.time() + 600
            while time.time() < deadline and driver.poll() is None:
                if len(store.load(storage, "trials")) >= 1:
                    break
                time.sleep(0.5)
            assert driver.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            kill_process_group(driver.pid)
            driver.wait()
        before = store.load(storage, "trials")
        assert 1 <= len(before) < 6
        shutil.rmtree(tmp_path / "cache" / "journals")  # a new head: no local journal
        second = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True,
                                timeout=600, start_new_session=True)  # fmt: skip
        (tmp_path / "second.log").write_text(second.stdout + second.stderr)
        assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]
        warnings = [line for line in second.stderr.splitlines() if "warning:" in line]
        assert not [w for w in warnings if "journal" in w or "Optuna" in w], warnings
    finally:
        for p in (driver, second):
            if isinstance(p, subprocess.Popen):
                kill_process_group(p.pid)
        shutil.rmtree(ray_tmp, ignore_errors=True)

    # Every Tune trial has one Optuna trial in the journal, finished, agreeing with its row. (A
    # trial may end in ERROR: Tune's state saved before the kill can name a checkpoint that the
    # trial deleted since, num_to_keep; Tune's race, not the study's.)
    trials = store.load(storage, "trials")
    for name in trials["sweep"].unique():
        mine = trials[trials["sweep"] == name]
        tune_trials = records.tune_trials(storage, name, seeds=False)
        assert set(tune_trials) == set(mine["trial_id"]) and len(mine) == 3
        assert all(t.ended for t in tune_trials.values())
        ran = [t for t in records.study_trials(storage, name) if "duplicate_of" not in t.user_attrs]
        assert sorted(t.user_attrs["tune_trial_id"] for t in ran) == sorted(mine["trial_id"])
        assert all(t.state.is_finished() for t in ran)
    assert set(before["trial_id"]) <= set(trials["trial_id"])
    differences = [d.line() for s in check.check(storage).values() for d in check.differences(s)]
    assert not [d for d in differences if "Optuna" in d], differences
