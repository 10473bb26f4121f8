"""Where a sweep's Optuna studies live on a cluster, checked without Ray.

- With an object store as --storage and no --study-storage, each cell's study is a journal on the
  driver's machine synced to ``<storage>/optuna/<cell>.journal`` (results.studies): against a
  local S3 server (moto), written, pickled, read back on a "new head" (the local copy gone).
- Bad study storages and storages, each one ``error:`` line and exit 2 before Ray starts, with
  nothing created.

Against a real PostgreSQL server, and real sweeps on Ray (S3, PostgreSQL, a killed driver):
tests/e2e/test_study_storage_journeys.py.
"""

from __future__ import annotations

import importlib.util
import pickle
import time

import optuna
import pyarrow.fs as pafs
import pytest
import ray

from results import records, studies, synced_journal
from results.__main__ import main as results_main
from sweeps import vlae
from sweeps.cells import Budget
from sweeps.engine import cli
from tests import postgres as postgres_server
from tests import s3 as s3_server

s3 = s3_server.s3  # the fixture: a local S3 server (moto) on 127.0.0.1

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
