"""The Parquet store and the regenerated tables."""

from __future__ import annotations

import io
import math
import os

import pandas as pd
import pytest

from results import store
from results.__main__ import main as results_main
from results.papers import PAPERS
from results.reference import paper_numbers
from results.selection import winners
from results.tables import build_table, numbers, render


def trial_row(trial_id, best_val, status="completed", sweep="vlae-vae-fashion_mnist-gaussian"):
    return {
        "sweep": sweep,
        "paper": "vlae",
        "family": "vae",
        "dataset": "fashion_mnist",
        "likelihood": "gaussian",
        "variant": "-",
        "trial_id": trial_id,
        "status": status,
        "reason": "",
        "best_val_loss": best_val,
        "config/train/lr": 1e-3,
    }


def test_parquet_round_trip_keeps_types_and_values(tmp_path):
    rows = [trial_row("a", -10.0), trial_row("b", -12.5, status="pruned")]
    store.write(str(tmp_path), "trials", "sweep1", "part", rows)
    back = store.load(str(tmp_path), "trials")
    assert back["trial_id"].tolist() == ["a", "b"]
    assert back["best_val_loss"].tolist() == [-10.0, -12.5]
    assert (back["schema_version"] == store.SCHEMA_VERSION).all()
    assert back["config/train/lr"].dtype == float


def test_rewriting_a_part_replaces_it_and_leaves_no_temporary_files(tmp_path):
    store.write(str(tmp_path), "trials", "s", "t1", [trial_row("t1", -1.0, status="pruned")])
    store.write(str(tmp_path), "trials", "s", "t1", [trial_row("t1", -2.0)])
    store.write(str(tmp_path), "trials", "s", "t2", [trial_row("t2", -3.0)])
    back = store.load(str(tmp_path), "trials").set_index("trial_id")
    assert back.loc["t1", "status"] == "completed" and len(back) == 2
    files = os.listdir(tmp_path / "results" / "trials" / "s")
    assert sorted(files) == ["t1.parquet", "t2.parquet"]


def test_the_cells_of_a_storage_are_its_records_not_the_locks_beside_them(tmp_path):
    """Optuna's journal holds <cell>.journal.lock while it writes, and a driver killed holding
    it leaves it behind: `results check` beside a running sweep once counted it as a cell."""
    from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

    (tmp_path / "optuna").mkdir()
    journal = str(tmp_path / "optuna" / "c1.journal")
    JournalFileBackend(journal).append_logs([{"op_code": 0, "study_name": "c1"}])
    JournalFileSymlinkLock(journal).acquire()  # never released: its holder was killed
    (tmp_path / "optuna" / "c1.journal.lock0a1b.renamed").write_text("")
    (tmp_path / "ray" / "c1").mkdir(parents=True)
    (tmp_path / "ray" / "stray.txt").write_text("not a cell")
    store.write(str(tmp_path), "trials", "c2", "t1", [trial_row("t1", -1.0, sweep="c2")])
    store.write_cell_record(str(tmp_path), "c3", {"cell": {}})
    assert store.sweeps(str(tmp_path)) == ["c1", "c2", "c3"]


def test_load_of_a_missing_table_is_empty(tmp_path):
    assert store.load(str(tmp_path), "curves").empty


def test_unwritable_storage_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(store.StorageError, match="not writable.*--storage"):
        store.check_writable(str(blocker / "sub"))
    with pytest.raises(store.StorageError, match="cannot write"):
        store.write(str(blocker / "sub"), "trials", "s", "p", [trial_row("a", 1.0)])


def test_corrupt_parquet_is_named(tmp_path):
    store.write(str(tmp_path), "trials", "s", "p", [trial_row("a", 1.0)])
    (tmp_path / "results" / "trials" / "s" / "p.parquet").write_bytes(b"garbage")
    with pytest.raises(store.StorageError, match=r"damaged Parquet part .*p\.parquet.*--repair"):
        store.load(str(tmp_path), "trials")


def test_winner_is_chosen_by_validation_never_by_test(tmp_path):
    s = str(tmp_path)
    for tid, val, status in [
        ("good_val", -20.0, "completed"),
        ("good_test", -15.0, "completed"),
        ("pruned_better", -30.0, "pruned"),
    ]:
        store.write(
            s, "trials", "vlae-vae-fashion_mnist-gaussian", tid, [trial_row(tid, val, status)]
        )
    evals = [("good_val", 0, 100.0), ("good_val", 1, 102.0), ("good_test", 0, 500.0)]
    for tid, seed, ll in evals:
        store.write(
            s,
            "evaluations",
            "vlae-vae-fashion_mnist-gaussian",
            f"{tid}-{seed}",
            [{"trial_id": tid, "seed": seed, "test_log_likelihood": ll, "k": 100}],
        )
    assert winners(store.load(s, "trials"), "vlae")["trial_id"].tolist() == ["good_val"]
    df, notes = build_table(s, PAPERS["vlae"])
    vae = df[(df["Model"] == "VAE") & (df["Variant"] == "-")].iloc[0]
    assert vae["FashionMNIST: ours"] == "101.00 (n=1, k=100)"  # one training seed
    assert vae["FashionMNIST LL IS s.d."] == "1.41 (2 IS seeds)"  # over importance sampling
    assert vae["MNIST (binarized): paper"] == "-85.37 †"  # poster value, marked as a reference
    assert any("poster" in n for n in notes)


def test_table_renders_in_every_format_and_the_command_writes_files(tmp_path, capsys):
    store.write(
        str(tmp_path), "trials", "vlae-vae-fashion_mnist-gaussian", "x", [trial_row("x", -1.0)]
    )
    df, notes = build_table(str(tmp_path), PAPERS["vlae"])
    long = numbers(str(tmp_path), PAPERS["vlae"])
    md, tex = (render(df, notes, "T", f) for f in ("md", "latex"))
    csv = render(long, notes, "T", "csv")
    assert md.startswith("### T") and "| VAE | - | project | not evaluated |" in md
    assert r"\begin{tabular}" in tex and r"-85.37 \textsuperscript{\dag}" in tex and "†" not in tex
    assert pd.read_csv(io.StringIO(csv)).shape == long.shape
    assert results_main(["table", "vlae", "--storage", str(tmp_path), "--format", "csv"]) == 0
    for ext in ("md", "tex", "csv"):
        assert (tmp_path / "tables" / f"vlae.{ext}").is_file()
    # the printed CSV's header: the wide table's "Model,Variant,..." until results/__main__.py
    # renders numbers(...) for csv, then "model,variant,dataset,..."
    assert "model,variant," in capsys.readouterr().out.lower()


def test_unknown_paper_is_a_clear_error(tmp_path, capsys):
    assert results_main(["table", "nope", "--storage", str(tmp_path)]) == 2
    assert "unknown paper 'nope'" in capsys.readouterr().err


def test_reference_numbers_carry_source_and_confidence():
    ref = paper_numbers()
    assert {"paper", "model", "value", "source", "confidence"} <= set(ref.columns)
    assert set(ref["confidence"]) <= {"confirmed", "recalled"}
    assert ref["source"].notna().all()


def test_a_trial_lost_before_its_first_result_has_unknown_times(tmp_path):
    """Tune's record of a trial whose node died before it reported has last_result_time -inf:
    its row says the end time is unknown (it once ended the cell in OutOfBoundsDatetime)."""
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    from results import rows

    meta = _TrainingRunMetadata()
    meta.start_time = 1_800_000_000.0
    times = rows.tune_times(vars(meta))
    assert times[0] == 1_800_000_000.0 and math.isnan(times[1])
    cell = {**trial_row("x", 0.0), "protocol": "project", "sweep": "s"}
    cell = {k: cell.get(k, "-") for k in rows.CELL_FIELDS}
    row = rows.trial_row(
        cell, "lost", {"train/seed": 0}, {}, [], error="node lost", retries=0,
        checkpoint_path="", gpus=1.0, provenance={}, times=times,
    )  # fmt: skip
    assert row["start_time"] == pd.Timestamp(1_800_000_000, unit="s", tz="UTC")
    assert pd.isna(row["end_time"])
    store.write(str(tmp_path), "trials", "s", "lost", [row])
    back = store.load(str(tmp_path), "trials")
    assert back["status"].tolist() == [row["status"]] and pd.isna(back["end_time"].iloc[0])


@pytest.mark.parametrize("argv", [["tabel", "vlae"], ["table"],
                                  ["table", "vlae", "--format", "pdf"]])  # fmt: skip
def test_a_command_or_flag_argparse_refuses_is_one_error_line(capsys, argv):
    with pytest.raises(SystemExit) as e:
        results_main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "usage" not in err
    assert "--help)" in err
