"""Older storages (results.migrate): parts and cell records written before a column or key
existed read in the current format through store.load, store.read_parts and store.cell_record,
and a current part reads as it was written."""

from __future__ import annotations

import json
import math
import time

import hypothesis.strategies as st
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings

from results import check, migrate, rows, store
from sweeps.engine.replay import differences

SWEEP = "vlae-vae-fashion_mnist-gaussian"
CELL = {"sweep": SWEEP, "paper": "vlae", "family": "vae", "dataset": "fashion_mnist",
        "likelihood": "gaussian", "variant": "-", "protocol": "authors"}  # fmt: skip
ADDED = migrate.ADDED_TO_VERSION_1


def current_trial(trial_id: str = "t1", **kw) -> dict:
    """A trials row as the sweep writes it now."""
    last = {"epoch": 3, "finished": True, "best_val_loss": 1.5, "best_epoch": 2}
    history = [{"epoch": e, "val_loss": 2.0 - e / 4} for e in (1, 2, 3)]
    return rows.trial_row(CELL, trial_id, {"train/seed": 0, "train/lr": 1e-3}, last, history,
                          error=None, retries=0, checkpoint_path="ray/x/ckpt", gpus=0.0,
                          provenance={"git": "abc"}, **kw)  # fmt: skip


def write_by_hand(storage: str, table: str, part: str, records: list[dict], version=1) -> None:
    """A part as an older store.write left it: the rows, schema_version and written_at, written
    with pyarrow alone (no results.store)."""
    frame = pd.DataFrame(records).assign(schema_version=version, written_at=time.time())
    folder = f"{storage}/results/{table}/{SWEEP}"
    pa.fs.LocalFileSystem().create_dir(folder, recursive=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), f"{folder}/{part}.parquet")


def test_trials_written_before_protocol_role_and_seed_of_read_with_their_defaults(tmp_path):
    s = str(tmp_path)
    old = {k: v for k, v in current_trial("old").items() if k not in ADDED["trials"]}
    write_by_hand(s, "trials", "old", [old])
    store.write(s, "trials", SWEEP, "new", [current_trial("new", role=rows.SEED, seed_of="old")])
    back = store.load(s, "trials").set_index("trial_id")
    assert back.loc["old", ["protocol", "role", "seed_of"]].tolist() == ["project", "search", ""]
    assert back.loc["new", ["protocol", "role", "seed_of"]].tolist() == ["authors", "seed", "old"]
    # the readers that skip store.load (check, replay) see the same rows
    frames, damaged = store.read_parts(s, store.part_paths(s, "trials"))
    assert not damaged and all(f["protocol"].notna().all() for f in frames)
    state = check.read_sweep(s, SWEEP)
    assert set(state.tables["trials"]["role"]) == {"search", "seed"}


def test_evaluations_written_before_the_posterior_columns_read_as_not_measured(tmp_path):
    s = str(tmp_path)
    old = {"sweep": SWEEP, "trial_id": "t", "seed": 0, "test_log_likelihood": -90.0, "k": 100}
    write_by_hand(s, "evaluations", "t-seed0", [old])
    out = {"test_log_likelihood": -80.0, "k": 100, "test_bpd": 0.5, "active_units": 0.6,
           "active_units_per_batch": 0.7, "latent_dims": 5}  # fmt: skip
    store.write(s, "evaluations", SWEEP, "t-seed1", [rows.evaluation_row(SWEEP, "t", 1, out, {})])
    back = store.load(s, "evaluations").sort_values("seed")
    assert back["latent_dims"].tolist() == [-1, 5]
    assert pd.api.types.is_integer_dtype(back["latent_dims"])
    assert back[["test_bpd", "active_units", "active_units_per_batch"]].iloc[0].isna().all()
    assert back["test_nll"].tolist() == [90.0, 80.0]  # derived on load, old rows too


def test_curves_gain_the_columns_added_since_and_keep_a_metric_not_recorded_null(tmp_path):
    s = str(tmp_path)
    history = [{"epoch": e, "train_loss": 3.0 - e, "val_loss": 2.5 - e, "beta": 1.0}
               for e in (1, 2)]  # fmt: skip
    current = rows.curve_rows(SWEEP, "new", history)  # no lr in its history: None, as written
    old = [{k: v for k, v in r.items() if k not in ("lr", "skipped_steps", "epoch_started_at")}
           for r in rows.curve_rows(SWEEP, "old", history)]  # fmt: skip
    write_by_hand(s, "curves", "old", old)
    alone = store.load(s, "curves")
    assert set(rows.CURVE_KEYS) <= set(alone.columns) and alone["skipped_steps"].isna().all()
    store.write(s, "curves", SWEEP, "new", current)
    back = store.load(s, "curves")
    assert set(rows.CURVE_KEYS) <= set(back.columns) and back["lr"].isna().all()
    assert back["val_loss"].tolist() == [1.5, 0.5, 1.5, 0.5]
    # replay compares what the stored run recorded, and nothing it did not
    curve = back[back["trial_id"] == "old"].set_index("epoch")
    replayed = [{**r, "lr": 1e-3, "skipped_steps": 0, "val_log_px_z": 0.0, "val_kl": 0.0}
                for r in history]  # fmt: skip
    assert differences(curve, replayed) == []
    assert [d[1] for d in differences(curve, [{**replayed[0], "val_loss": 9.0}])] == ["val_loss"]


def test_a_cell_record_from_before_protocol_and_key_sources_reads_with_them(tmp_path):
    s = str(tmp_path)
    old = {k: v for k, v in CELL.items() if k not in ("sweep", "protocol")}
    store.write_cell_record(s, SWEEP, {"cell": old, "trials": 4, "base_config": {}})
    record = store.cell_record(s, SWEEP)
    assert record["cell"]["protocol"] == "project" and record["key_sources"] == {}
    assert record["trials"] == 4 and record["cell"]["family"] == "vae"
    assert record["search_seeds"] == 1  # --search-seeds did not exist: one seed a trial
    assert record["objectives"] == ["val_loss"]  # before --objectives: val_loss alone
    on_disk = json.loads((tmp_path / "cells" / f"{SWEEP}.json").read_text())
    assert "key_sources" not in on_disk  # read, never rewritten
    assert check.cell_fields(s, check.read_sweep(s, SWEEP)) == {**CELL, "protocol": "project"}
    now = {"cell": {k: v for k, v in CELL.items() if k != "sweep"}, "key_sources": {"a": "cell"},
           "search_seeds": 2, "objectives": ["val_loss", "params"]}  # fmt: skip
    store.write_cell_record(s, SWEEP, now)
    assert store.cell_record(s, SWEEP) == now


def test_check_takes_an_older_rows_cell_fields_when_the_record_is_gone(tmp_path):
    s = str(tmp_path)
    old = {k: v for k, v in current_trial("old").items() if k not in ADDED["trials"]}
    write_by_hand(s, "trials", "old", [old])
    assert check.cell_fields(s, check.read_sweep(s, SWEEP)) == {**CELL, "protocol": "project"}


def test_the_version_keys_the_migration():
    old = pd.DataFrame([{"trial_id": "t", "schema_version": 1}])
    assert set(ADDED["trials"]) <= set(migrate.part(old, "trials").columns)
    newer = old.assign(schema_version=migrate.SCHEMA_VERSION + 1)
    assert migrate.part(newer, "trials").equals(newer)  # a newer version: read as it is
    unknown = old.assign(schema_version=None)  # a null version: 1, the only one there was
    assert migrate.version(unknown) == 1 and "role" in migrate.part(unknown, "trials")
    assert migrate.part(old.iloc[:0], "trials").equals(old.iloc[:0])
    assert store.SCHEMA_VERSION == migrate.SCHEMA_VERSION == max(migrate.MIGRATIONS)


VALUES = {
    "trials": {"protocol": st.sampled_from(["project", "authors", None]),
               "role": st.sampled_from([rows.SEARCH, rows.SEED, None]),
               "seed_of": st.sampled_from(["", "t0", None])},
    "evaluations": {"test_bpd": st.floats(0, 8) | st.none(),
                    "active_units": st.floats(0, 1) | st.none(),
                    "active_units_per_batch": st.floats(0, 1) | st.none(),
                    "latent_dims": st.integers(-1, 64) | st.none()},
}  # fmt: skip


@st.composite
def older_parts(draw):
    """A part of rows with any of the added columns dropped (as before it existed) or null."""
    table = draw(st.sampled_from(sorted(VALUES)))
    n = draw(st.integers(1, 4))
    dropped = draw(st.sets(st.sampled_from(sorted(VALUES[table]))))
    records = [
        {"trial_id": f"t{i}", "seed": i, **{k: draw(v) for k, v in VALUES[table].items()}}
        for i in range(n)
    ]
    frame = pd.DataFrame(records).drop(columns=sorted(dropped)).assign(schema_version=1)
    return table, frame, dropped


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(older_parts())
def test_any_older_part_reads_as_the_current_format_and_only_its_gaps_change(drawn):
    table, frame, dropped = drawn
    out = migrate.part(frame, table)
    assert list(out.columns[: len(frame.columns)]) == list(frame.columns)
    for k, v in ADDED[table].items():
        was = frame[k] if k in frame else pd.Series([None] * len(frame))
        for before, after in zip(was, out[k], strict=True):
            missing = before is None or (isinstance(before, float) and math.isnan(before))
            if missing:
                assert after == v or (math.isnan(v) and math.isnan(after))
            else:
                assert after == before
        assert out[k].notna().all() or isinstance(v, float)
        if isinstance(v, int):
            assert pd.api.types.is_integer_dtype(out[k])
    assert migrate.part(out, table).equals(out)  # a current part: as it is


def test_a_current_trials_part_round_trips_unchanged(tmp_path):
    s = str(tmp_path)
    row = current_trial("t1")
    store.write(s, "trials", SWEEP, "t1", [row])
    back = store.load(s, "trials").iloc[0]
    for k, v in row.items():
        assert back[k] == v or (pd.isna(v) and pd.isna(back[k])), k
