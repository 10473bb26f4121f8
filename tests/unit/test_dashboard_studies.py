"""results.dashboard: a sweep's journals, one per cell, shown as one read-only Optuna storage,
served by optuna-dashboard's own app over real HTTP (python -m results dashboard)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from results import store
from results.__main__ import main as results_main
from results.dashboard import OBJECTIVE, ReadOnly, SweepStudies

REPO = Path(__file__).resolve().parents[2]
CELLS = {"vlae-vae-mnist-bernoulli": 3, "vlae-vlae-mnist-bernoulli-t2": 2}


def journal(root: Path, cell: str) -> JournalStorage:
    (root / "optuna").mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(root / "optuna" / f"{cell}.journal")))


def fill(root: Path, cell: str, n: int) -> optuna.Study:
    study = optuna.create_study(study_name=cell, storage=journal(root, cell))
    for i in range(n):
        trial = study.ask()
        trial.suggest_float("train/lr", 1e-4, 1e-2, log=True)
        trial.report(100.0 - i, 1)
        study.tell(trial, 90.0 - i)
    return study


@pytest.fixture
def sweep(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for cell, n in CELLS.items():
        fill(tmp_path, cell, n)
    return tmp_path


def test_every_cell_is_a_study_with_its_own_trials_and_named_objective(sweep):
    view = SweepStudies(str(sweep))
    studies = view.get_all_studies()
    assert sorted(s.study_name for s in studies) == sorted(CELLS)
    for s in studies:
        trials = view.get_all_trials(s._study_id)
        assert len(trials) == CELLS[s.study_name]
        assert s.system_attrs["study:metric_names"] == [OBJECTIVE]
        for t in trials:  # a trial id here finds the same trial again, in its own cell
            again = view.get_trial(t._trial_id)
            assert (again.number, again.value, again.params) == (t.number, t.value, t.params)
        assert len({t._trial_id for t in trials}) == len(trials)
        assert view.get_study_id_from_name(s.study_name) == s._study_id
    ids = [t._trial_id for s in studies for t in view.get_all_trials(s._study_id)]
    assert len(set(ids)) == len(ids)  # two journals' trial 0 are two trials here


def test_a_cell_that_starts_later_appears_and_the_ids_seen_stay(sweep):
    view = SweepStudies(str(sweep))
    before = {s.study_name: s._study_id for s in view.get_all_studies()}
    fill(sweep, "vlae-iaf-mnist-bernoulli-t1", 1)
    after = {s.study_name: s._study_id for s in view.get_all_studies()}
    assert after.items() >= before.items() and len(after) == 3
    # a trial added to a running cell shows at once (the journal is read again)
    cell = "vlae-vae-mnist-bernoulli"
    optuna.load_study(study_name=cell, storage=journal(sweep, cell)).enqueue_trial({})
    assert len(view.get_all_trials(after[cell])) == CELLS[cell] + 1


def test_it_writes_nothing(sweep):
    view = SweepStudies(str(sweep))
    sid = view.get_all_studies()[0]._study_id
    before = {p.name: p.read_bytes() for p in (sweep / "optuna").iterdir()}
    with pytest.raises(ReadOnly, match="read-only"):
        view.set_study_system_attr(sid, "dashboard:note", "x")
    with pytest.raises(ReadOnly):
        view.create_new_trial(sid)
    assert {p.name: p.read_bytes() for p in (sweep / "optuna").iterdir()} == before


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def test_optuna_dashboard_lists_every_cell_over_http(sweep):
    from optuna_dashboard import wsgi

    server = make_server("127.0.0.1", 0, wsgi(SweepStudies(str(sweep))), handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        listed = json.load(urllib.request.urlopen(f"{base}/api/studies", timeout=30))
        names = {s["study_name"]: s["study_id"] for s in listed["study_summaries"]}
        assert sorted(names) == sorted(CELLS)
        for cell, n in CELLS.items():
            one = json.load(urllib.request.urlopen(f"{base}/api/studies/{names[cell]}",
                                                   timeout=30))  # fmt: skip
            assert one["name"] == cell and len(one["trials"]) == n
            assert one["objective_names"] == [OBJECTIVE]
    finally:
        server.shutdown()
        server.server_close()


def test_the_command_serves_the_storage_and_refuses_bad_input(sweep, tmp_path, capsys):
    assert results_main(["dashboard", "--storage", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no sweep under") and err.count("\n") == 1
    assert not (tmp_path / "none").exists()
    store.write_cell_record(str(tmp_path / "empty"), "c", {"cell": {}})
    assert results_main(["dashboard", "--storage", str(tmp_path / "empty")]) == 2
    assert "no Optuna study under" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert results_main(["dashboard", "--storage", str(sweep), "--port", str(port)]) == 2
        assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "results", "dashboard", "--storage", str(sweep),
                             "--port", str(port)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert f"2 cells' studies of {sweep} at http://127.0.0.1:{port}/" in line
        deadline = time.time() + 60
        while True:
            try:
                listed = json.load(urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/studies", timeout=10))  # fmt: skip
                break
            except OSError:
                assert time.time() < deadline and proc.poll() is None, proc.stderr.read()
                time.sleep(0.2)
        assert len(listed["study_summaries"]) == 2
    finally:
        proc.terminate()
        proc.wait(timeout=30)
