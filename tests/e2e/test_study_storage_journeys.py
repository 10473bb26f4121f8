"""A sweep's Optuna study outside the storage's own journal, end to end: against a real
PostgreSQL server (tests/postgres.py), wrong credentials and an unknown database are one line and
a working one passes the check; real sweeps on Ray with the study as a synced journal on a local
S3 server (moto) and in PostgreSQL; a driver killed on S3 resumed on a new head. The synced
journal without Ray and bad study storages: tests/unit/test_study_storage.py."""

from __future__ import annotations

import importlib.util
import time

import optuna
import pyarrow.fs as pafs
import pytest
import ray

from results import check, records, store, synced_journal
from results.__main__ import main as results_main
from tests import postgres as postgres_server
from tests import s3 as s3_server
from tests.e2e.test_resume_journeys import DRIVER
from tests.unit.test_study_storage import (  # noqa: F401 - the fixture is autouse here too
    CELL,
    no_journal_writers_left,
    sweep,
)

s3 = s3_server.s3  # the fixtures: a local S3 server (moto), a PostgreSQL server
postgres = postgres_server.postgres
needs_psycopg = pytest.mark.skipif(
    importlib.util.find_spec("psycopg") is None,
    reason="psycopg is not installed (pip install 'vae-sweeps[cluster]')",
)


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
    from sweeps.engine import preflight

    assert preflight.check_study_storage(postgres.url()) == postgres.url()
    import sqlalchemy

    engine = sqlalchemy.create_engine(postgres.url())
    try:  # the check made Optuna's schema
        assert "trials" in sqlalchemy.inspect(engine).get_table_names()
    finally:
        engine.dispose()


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
"""tests/e2e/test_resume_journeys.py's driver (two cells in flight), 3 trials a cell."""


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
    repo = str(Path(__file__).resolve().parents[2])
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
        # not a repeated draw, nor one no Tune trial ran (tune_record.close_orphans)
        skipped = {"duplicate_of", "abandoned"}
        ran = [t for t in records.study_trials(storage, name) if not skipped & set(t.user_attrs)]
        assert sorted(t.user_attrs["tune_trial_id"] for t in ran) == sorted(mine["trial_id"])
        assert all(t.state.is_finished() for t in ran)
    assert set(before["trial_id"]) <= set(trials["trial_id"])
    differences = [d.line() for s in check.check(storage).values() for d in check.differences(s)]
    assert not [d for d in differences if "Optuna" in d], differences
