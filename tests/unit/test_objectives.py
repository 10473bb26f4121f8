"""--objectives (sweeps.engine.objectives): a multi-objective study is told a list of values per
COMPLETE trial, PRUNED trials without Trial.report (their per-epoch val_loss kept as user
attributes), the sampler chosen by the trial count; bad --objectives are one error line."""

from __future__ import annotations

import json

import optuna
import pytest

from sweeps.engine import objectives
from sweeps.engine.preflight import Refusal, check_objective_costs, check_objectives
from sweeps.engine.searcher import OBJECTIVE, PruneAwareOptunaSearch
from sweeps.engine.trial import METRIC
from sweeps.engine.tuner import MODE


def one_float(trial):
    trial.suggest_float("x", 0.0, 1.0)


def journal(path):
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


def searcher(storage, names, gpus=0.0) -> PruneAwareOptunaSearch:
    return PruneAwareOptunaSearch(space=one_float, metric=METRIC, mode=MODE, study_name="s",
                                  storage=storage, experiment="/runs/exp", objectives=names,
                                  gpus=gpus)  # fmt: skip


def result(epoch, val, finished=False, **extra):
    return {"epoch": epoch, METRIC: val, "finished": finished, "best_val_loss": val,
            "n_parameters": 1234, "time_total_s": 7200.0 * epoch / 4, **extra}  # fmt: skip


def test_a_multi_objective_study_is_told_values_and_pruned_trials_without_report(tmp_path):
    path = tmp_path / "s.journal"
    names = ("val_loss", "params", "gpu_hours", "epoch_seconds")
    s = searcher(journal(path), names, gpus=0.5)
    s.suggest("done")
    s.suggest("cut")
    for epoch, val in ((1, 3.0), (2, 2.0), (3, 1.5), (4, 1.0)):
        s.on_trial_result("done", result(epoch, val))
    s.on_trial_complete("done", result(4, 1.0, finished=True))
    s.on_trial_result("cut", result(1, 5.0))
    s.on_trial_complete("cut", result(2, 4.0))  # ASHA stopped it: not finished
    study = optuna.load_study(study_name="s", storage=journal(path))  # as a reader sees it
    assert study.directions == [optuna.study.StudyDirection.MINIMIZE] * 4
    assert study.metric_names == [OBJECTIVE, "n_parameters", "gpu_hours", "epoch_seconds"]
    assert study.user_attrs[objectives.PRUNING] == objectives.PRUNING_NOTE
    done, cut = study.trials
    # 4 epochs in 2 hours of wall time on half a GPU: 1 GPU-hour, 1800 s an epoch
    assert done.state == optuna.trial.TrialState.COMPLETE
    assert done.values == [1.0, 1234.0, 1.0, 1800.0]
    assert cut.state == optuna.trial.TrialState.PRUNED and cut.values is None
    assert cut.intermediate_values == {}  # no Trial.report: Optuna has none for several values
    kept = {k: v for k, v in cut.user_attrs.items() if k.startswith(objectives.INTERMEDIATE)}
    assert kept == {f"{objectives.INTERMEDIATE}1": 5.0, f"{objectives.INTERMEDIATE}2": 4.0}
    assert [t.number for t in study.best_trials] == [0]


def test_one_objective_is_as_before_a_single_value_and_reported_epochs(tmp_path):
    path = tmp_path / "s.journal"
    s = searcher(journal(path), ("val_loss",))
    s.suggest("a")
    s.on_trial_result("a", result(1, 2.0))
    s.on_trial_complete("a", result(2, 1.0, finished=True))
    study = optuna.load_study(study_name="s", storage=journal(path))
    assert study.metric_names == [OBJECTIVE] and study.best_value == 1.0
    assert study.trials[0].intermediate_values == {1: 2.0, 2: 1.0}
    assert objectives.PRUNING not in study.user_attrs


def test_a_completed_row_gives_the_values_a_rerun_that_failed_is_told(tmp_path):
    """A trial that finished, reran after a driver restart and failed stays COMPLETE with the
    values its row records (sweeps.engine.searcher.end_state)."""
    row = {"best_val_loss": 2.5, "n_parameters": 10, "gpu_seconds": 1800.0,
           "wall_seconds": 300.0, "epochs": 3}  # fmt: skip
    assert objectives.values(("val_loss", "params", "gpu_hours", "epoch_seconds"), row) == [
        2.5, 10.0, 0.5, 100.0]  # fmt: skip
    assert objectives.result_row(result(4, 1.0), gpus=0.0)["gpu_seconds"] == 0.0  # CPU: 0


@pytest.mark.parametrize("trials, kind", [(1, "TPESampler"), (999, "TPESampler"),
                                          (1000, "NSGAIISampler")])  # fmt: skip
def test_several_objectives_sample_with_tpe_below_the_threshold_and_nsga_ii_from_it(trials, kind):
    # TPE is search_spaces.versions.FittingTPESampler: TPE seeing the trials that fit the space
    assert isinstance(objectives.sampler(("val_loss", "params"), trials, 0),
                      getattr(optuna.samplers, kind))  # fmt: skip
    assert isinstance(objectives.sampler(("val_loss",), 5000, 0), optuna.samplers.TPESampler)


@pytest.mark.parametrize("names, match", [
    (("params", "val_loss"), "the first must be val_loss"),
    (("val_loss", "params", "params"), "params given twice"),
])  # fmt: skip
def test_bad_objectives_are_refused(names, match):
    with pytest.raises(Refusal, match=match):
        check_objectives(names, None)


def test_gpu_hours_is_refused_where_trials_hold_no_gpu():
    with pytest.raises(Refusal, match="hold no GPU.*epoch_seconds"):
        check_objectives(("val_loss", "gpu_hours"), 0.0)
    check_objectives(("val_loss", "gpu_hours"), None)  # the cluster decides: checked at start
    with pytest.raises(Refusal, match="hold no GPU"):
        check_objective_costs(("val_loss", "gpu_hours"), {"cpu": 1.0, "gpu": 0.0})
    check_objective_costs(("val_loss", "gpu_hours"), {"cpu": 1.0, "gpu": 0.25})


def sweep(argv, capsys) -> tuple[int, str]:
    from sweeps import spvae

    code = spvae.main(spvae.PAPER, spvae.CELLS, spvae.BUDGETS, spvae.DEFAULT_DATASETS, argv=argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("argv, match", [
    (["--objectives", "val_loss", "flops"], "argument --objectives: invalid choice: 'flops'"),
    (["--objectives", "params"], "the first must be val_loss"),
    (["--objectives", "val_loss", "params", "params"], "params given twice"),
    (["--objectives", "val_loss", "gpu_hours", "--gpus-per-trial", "0"], "hold no GPU"),
])  # fmt: skip
def test_the_sweep_refuses_bad_objectives_in_one_line_before_anything(tmp_path, capsys, argv,
                                                                       match):  # fmt: skip
    storage = tmp_path / "s"
    try:
        code, err = sweep(["--storage", str(storage), "--dry-run", *argv], capsys)
    except SystemExit as e:  # argparse's refusal (OneLineParser)
        code, err = e.code, capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: ") and match in err
    assert not storage.exists()


def test_a_cell_continued_with_other_objectives_is_refused(tmp_path):
    from results import store
    from sweeps.engine.preflight import check_storage
    from sweeps.spvae import BUDGETS, CELLS

    cell, budget = CELLS[0], BUDGETS["smoke"]
    s = str(tmp_path)
    record = {"cell": {}, "base_config": cell.base_config(budget), "trials": 2,
              "objectives": ["val_loss"]}  # fmt: skip
    store.write_cell_record(s, cell.name, record)
    assert check_storage(s, [cell], budget, "resume", None, ("val_loss",)) == [cell]
    with pytest.raises(Refusal, match=r"started with --objectives val_loss, this run has "
                                      r"--objectives val_loss params: continue it with"):
        check_storage(s, [cell], budget, "add", None, ("val_loss", "params"))
    del record["objectives"]  # a cell recorded before --objectives: val_loss alone
    store.write_cell_record(s, cell.name, record)
    with pytest.raises(Refusal, match="started with --objectives val_loss,"):
        check_storage(s, [cell], budget, "resume", None, ("val_loss", "params"))
    assert json.loads((tmp_path / "cells" / f"{cell.name}.json").read_text())["cell"] == {}


def test_check_and_importances_read_a_multi_objective_study_by_its_val_loss(tmp_path):
    """`results check` compares a row's best_val_loss with the study's first value, and the
    importances are val_loss's: FrozenTrial.value does not exist when there are several."""
    from results import check, records, store
    from results.rows import trial_row

    s, sweep = str(tmp_path), "vlae-vae-fashion_mnist-gaussian"
    (tmp_path / "optuna").mkdir()
    cell = {"sweep": sweep, "paper": "vlae", "family": "vae", "dataset": "fashion_mnist",
            "likelihood": "gaussian", "variant": "-", "protocol": "project"}  # fmt: skip
    study = optuna.create_study(study_name=sweep, storage=journal(tmp_path / "optuna" /
                                f"{sweep}.journal"), directions=["minimize"] * 2)  # fmt: skip
    dist = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    for i, x in enumerate((0.1, 0.5, 0.9)):
        loss = 10.0 - 5 * x
        last = {"epoch": 2, "time_total_s": 4.0, "finished": True, "best_val_loss": loss,
                "n_parameters": 100 * (i + 1)}  # fmt: skip
        row = trial_row(cell, f"t{i}", {"x": x}, last, [], error=None, retries=0,
                        checkpoint_path="", gpus=0.0, provenance={})  # fmt: skip
        store.write(s, "trials", sweep, f"t{i}", [row])
        study.add_trial(optuna.trial.create_trial(
            values=[loss, 100.0 * (i + 1)], params={"x": x}, distributions=dist,
            user_attrs={"tune_trial_id": f"t{i}"}))  # fmt: skip
    found = [d.line() for d in check.differences(check.read_sweep(s, sweep))]
    assert not [line for line in found if "Optuna" in line], found
    imp = records.importances(s, sweep)
    assert isinstance(imp, records.Importances) and imp.completed == 3
