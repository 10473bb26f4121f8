"""Warm starts and space versions without Ray: a source sweep's Parquet rows seeding a real
Optuna study, the sampler learning only from trials that fit a changed space, the bad input
(sweeps.engine.warm_start, sweeps.engine.spaces, search_spaces.versions)."""

from __future__ import annotations

import dataclasses
import json

import optuna
import pandas as pd
import pytest
import ray
from hypothesis import given
from hypothesis import strategies as st
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from results import store
from results.table_scope import search_notes
from search_spaces import space_for, versions
from sweeps.engine import cli, spaces, warm_start
from sweeps.engine.preflight import Refusal
from tests import s3 as s3_server
from tests.unit.test_preflight import CELLS, TINY

CELL = CELLS[0]  # the VAE on fashion_mnist, gaussian
DRAWN = {"model/latent_dim": 32, "train/lr": 1e-3, "train/batch_size": 128,
         "train/warmup_epochs": 1.0}  # fmt: skip
optuna.logging.set_verbosity(optuna.logging.WARNING)


s3 = s3_server.s3  # the fixture: a local S3 server (moto) on 127.0.0.1


def source(root, losses: dict[str, tuple[float, dict]], cell=CELL, status="completed") -> str:
    """A finished sweep's storage: a cell record and one completed search row per trial."""
    s = str(root)
    store.write_cell_record(s, cell.name, {"cell": dataclasses.asdict(cell), "trials": len(losses),
                                           "base_config": cell.base_config(TINY)})  # fmt: skip
    for trial_id, (loss, params) in losses.items():
        config = {**cell.base_config(TINY), **params}
        store.write(s, "trials", cell.name, trial_id, [{
            "sweep": cell.name, "trial_id": trial_id, "status": status, "role": "search",
            "best_val_loss": loss, "config_json": json.dumps(config),
            "key_sources": json.dumps({**dict.fromkeys(cell.base_config(TINY), "cell"),
                                       **dict.fromkeys(params, "search")})}])  # fmt: skip
    return s


def test_a_new_study_runs_the_best_first_learns_from_the_rest_and_skips_what_does_not_fit(
    tmp_path,
):
    src = source(tmp_path / "pilot", {
        "a": (90.0, DRAWN), "b": (80.0, {**DRAWN, "model/latent_dim": 16}),
        "c": (85.0, {**DRAWN, "train/lr": 0.5}),  # outside [1e-4, 3e-3]
        "d": (95.0, {**DRAWN, "model/latent_dim": 50}), "e": (99.0, DRAWN)})  # fmt: skip
    dists = versions.distributions(space_for(CELL.family, CELL.base_config(TINY)))
    assert "model/hidden_dim" not in dists  # the budget fixes it: not drawn here
    warm = warm_start.prepare(src, warm_start.source_cell(src, CELL), dists, best=2)
    assert [w.rsplit(" ", 1)[1] for _, w in warm.queued] == ["b", "a"]  # best first
    assert [w.rsplit(" ", 1)[1] for _, _, w in warm.informing] == ["b", "a", "d", "e"]
    assert warm.skipped == ["trial c: train/lr=0.5 is outside [0.0001, 0.003, log]"]
    lines = warm.lines()
    assert "its best 2 configurations run first; 4 of its completed trials" in lines[0]
    assert "1 of its trials skipped" in lines[1] and "train/lr=0.5" in lines[1]

    study = optuna.create_study()
    for _ in range(2):  # seeded twice (a driver killed half-way, resumed): nothing more
        warm_start.seed(study, warm, dists)
    added = [t for t in study.trials if warm_start.FROM in t.user_attrs]
    assert len(added) == 4 and all(t.state == TrialState.COMPLETE for t in added)
    assert sorted(t.value for t in added) == [80.0, 90.0, 95.0, 99.0]
    first, second = study.ask(), study.ask()  # the queue comes before the sampler
    for trial in (first, second):
        for name, dist in dists.items():
            trial._suggest(name, dist)
    assert first.params == {**DRAWN, "model/latent_dim": 16} and second.params == DRAWN
    assert study.trials[first.number].user_attrs[warm_start.OF] == f"{src}: {CELL.name} trial b"


def test_a_pilot_on_an_object_store_seeds_a_study_as_a_local_one_does(s3):
    other = {**DRAWN, "train/lr": 2e-3}
    src = source("s3://sweeps/pilot", {"a": (90.0, DRAWN), "b": (80.0, other)})
    dists = versions.distributions(space_for(CELL.family, CELL.base_config(TINY)))
    warm_start.check(src, "s3://sweeps/main", [CELL], None, 1)
    warm = warm_start.prepare(src, warm_start.source_cell(src, CELL), dists, best=1)
    assert [w for _, w in warm.queued] == [f"s3://sweeps/pilot: {CELL.name} trial b"]
    assert len(warm.informing) == 2 and not warm.skipped


def test_the_matching_cell_is_found_or_its_difference_named(tmp_path):
    other = dataclasses.replace(CELL, likelihood="bernoulli")
    src = source(tmp_path / "pilot", {"a": (90.0, DRAWN)}, cell=other)
    with pytest.raises(Refusal, match="its vae cells differ: likelihood bernoulli"):
        warm_start.source_cell(src, CELL)
    mnist = dataclasses.replace(CELL, dataset="mnist")
    src2 = source(tmp_path / "mnist-pilot", {"a": (90.0, DRAWN)}, cell=mnist)
    assert warm_start.source_cell(src2, CELL, dataset="mnist") == mnist.name
    with pytest.raises(Refusal, match="or --warm-start-dataset D"):
        warm_start.source_cell(src2, CELL)


@pytest.mark.parametrize("make, extra, message", [
    (None, [], "--warm-start: no sweep under"),
    ("other likelihood", [], "holds no cell of family vae, likelihood gaussian"),
    ("other family", [], f"; it holds {CELLS[1].name}: choose --families"),
    ("pruned only", [], "has no completed trial yet"),
    ("pilot", ["--warm-start-best", "0"], "--warm-start-best 0: give 1 or more"),
    ("damaged part", [], "damaged Parquet part"),
])  # fmt: skip
def test_bad_warm_starts_are_one_error_line_before_ray_and_write_nothing(
    make, extra, message, tiny_data_root, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("VAE_DATA_ROOT", str(tiny_data_root))
    pilot = tmp_path / "pilot"
    if make == "other likelihood":
        source(pilot, {"a": (90.0, DRAWN)}, cell=dataclasses.replace(CELL, likelihood="bernoulli"))
    elif make == "other family":
        source(pilot, {"a": (90.0, DRAWN)}, cell=CELLS[1])
    elif make == "pruned only":
        source(pilot, {"a": (90.0, DRAWN)}, status="pruned")
    elif make in ("pilot", "damaged part"):
        source(pilot, {"a": (90.0, DRAWN)})
    if make == "damaged part":
        next((pilot / "results" / "trials").rglob("*.parquet")).write_bytes(b"PAR1 not parquet")
    storage = tmp_path / "sweep"
    argv = ["--storage", str(storage), "--families", "vae", "--warm-start", str(pilot), *extra]
    assert cli.main("vlae", CELLS, {"smoke": TINY}, {}, argv=argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not ray.is_initialized() and not storage.exists()


@pytest.mark.parametrize("argv, message", [
    (["--warm-start-dataset", "fashion_mnist"], "go with --warm-start STORAGE"),
    (["--warm-start", "{storage}"], "names the sweep's own --storage"),
])  # fmt: skip
def test_warm_start_companions_alone_and_the_storage_itself_are_refused(
    argv, message, tiny_data_root, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("VAE_DATA_ROOT", str(tiny_data_root))
    storage = tmp_path / "sweep"
    argv = ["--storage", str(storage), *(a.format(storage=storage) for a in argv)]
    assert cli.main("vlae", CELLS, {"smoke": TINY}, {}, argv=argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_a_grid_replay_is_not_warm_started(tmp_path):
    from sweeps.engine.flags import parse_args

    settings = parse_args(["--warm-start", str(tmp_path), "--sampler", "grid"], "vlae", CELLS,
                          {"smoke": TINY}, {})  # fmt: skip
    with pytest.raises(Refusal, match="--sampler grid replays the authors' grid whole"):
        cli.check_warm_start(settings, CELLS)


@given(low=st.floats(-1e3, 1e3), width=st.floats(1e-3, 1e3), value=st.floats(-3e3, 3e3))
def test_a_value_fits_a_range_exactly_when_it_lies_inside(low, width, value):
    dist = FloatDistribution(low, low + width)
    assert (versions.misfits({"x": value}, {"x": dist}) == []) == (low <= value <= low + width)


def test_what_one_study_can_and_cannot_hold_of_a_changed_space():
    old = {"a": FloatDistribution(0, 1), "b": CategoricalDistribution([16, 32]),
           "c": IntDistribution(1, 4), "d": FloatDistribution(1e-4, 1, log=True)}  # fmt: skip
    new = {"a": FloatDistribution(0, 2), "b": CategoricalDistribution([16, 32, 64]),
           "d": FloatDistribution(1e-4, 1), "e": IntDistribution(1, 3)}  # fmt: skip
    said, refused = versions.changes(old, new)
    assert said == ["a: [0, 1] -> [0, 2]", "b: choices [16, 32] -> choices [16, 32, 64]",
                    "c removed", "d: [0.0001, 1, log] -> [0.0001, 1]", "e added"]  # fmt: skip
    assert refused == [said[1], said[3]]
    assert versions.from_json(versions.to_json(new)) == new


def test_a_narrowed_space_continues_the_study_learning_only_from_the_trials_that_fit():
    study = optuna.create_study(sampler=versions.FittingTPESampler(seed=0, n_startup_trials=2))
    study.optimize(lambda t: (t.suggest_float("x", 0, 10) - 9) ** 2, n_trials=10)
    narrow = {"x": FloatDistribution(0, 5)}
    inside = [t for t in study.trials if t.params["x"] <= 5]
    seen = versions._Fitting(study, narrow)._get_trials(states=(TrialState.COMPLETE,))
    assert [t.number for t in seen] == [t.number for t in inside]
    again = optuna.load_study(study_name=study.study_name, storage=study._storage,
                              sampler=versions.FittingTPESampler(seed=1, space=narrow))  # fmt: skip
    again.optimize(lambda t: (t.suggest_float("x", 0, 5) - 9) ** 2, n_trials=3)
    assert all(0 <= t.params["x"] <= 5 for t in again.trials[10:])


def test_each_version_of_a_space_is_kept_with_the_trial_it_began_at(tmp_path):
    study = optuna.create_study()
    study.optimize(lambda t: t.suggest_float("x", 0, 10), n_trials=3)
    v1 = {"x": FloatDistribution(0, 10)}
    kept = spaces.history(None, study.trials, v1)
    assert kept == [{"version": 1, "distributions": versions.to_json(v1), "from_trial": 0}]
    assert spaces.history({"space_versions": kept}, study.trials, v1) == kept  # unchanged
    wider = {"x": FloatDistribution(0, 20)}
    both = spaces.history({"space_versions": kept}, study.trials, wider)
    assert [v["from_trial"] for v in both] == [0, 3] and both[1]["version"] == 2
    assert spaces.changed(both) == ["x: [0, 10] -> [0, 20]"]
    # a record from before space versions: version 1 is what the study drew from
    older = spaces.history({}, study.trials, wider)
    assert [versions.from_json(v["distributions"]) for v in older] == [v1, wider]

    s = str(tmp_path)
    warm = {"storage": "s3://b/pilot", "cell": "c", "best": 3, "dataset": "mnist"}
    store.write_cell_record(s, CELL.name, {"cell": dataclasses.asdict(CELL), "trials": 3,
                                           "base_config": {}, "space_versions": both,
                                           "warm_start": warm})  # fmt: skip
    notes = search_notes(s, pd.DataFrame({"who": ["ours"], "source": [CELL.name]}))
    assert "under 2 versions of its space (v1 from Optuna trial 0, v2 from Optuna" in notes[0]
    assert "warm-started from s3://b/pilot: c (another dataset: mnist)" in notes[1]


def test_check_finds_a_trial_whose_space_version_or_warm_start_its_records_contradict():
    from results import check

    study = optuna.create_study()
    for i in range(4):
        attrs = {"tune_trial_id": f"t{i}", "space_version": 1 + (i >= 2),
                 **({warm_start.OF: "p: c trial a"} if i == 0 else {})}  # fmt: skip
        study.add_trial(optuna.trial.create_trial(
            params={"x": float(i)}, distributions={"x": FloatDistribution(0, 10)}, value=1.0,
            user_attrs=attrs))  # fmt: skip
    kept = [{"version": 1, "distributions": {}, "from_trial": 0},
            {"version": 2, "distributions": {}, "from_trial": 3}]  # trial 2 was drawn under v2
    rows_ = pd.DataFrame({"trial_id": [f"t{i}" for i in range(4)], "role": "search",
                          "warm_start": ["p: c trial a", "", "", "p: c trial b"]})  # fmt: skip
    empty = pd.DataFrame()
    state = check.SweepState(CELL.name, None, study.trials,
                             {"trials": rows_, "curves": empty, "evaluations": empty}, {}, [],
                             {"space_versions": kept})  # fmt: skip
    said = [d.what for d in check._searched(CELL.name, state, rows_.set_index("trial_id"))]
    assert said == ["Optuna trial 2 was drawn under space version 2, the cell record says 1",
                    "row says warm_start 'p: c trial b', Optuna ''"]  # fmt: skip
