"""Rows and records of an older storage brought to the current format, in one place.

results.store reads every Parquet part through ``part`` and every cell record through
``cell_record``, so the rest of the code sees the current format only
(docs/storage.md#older-storages).

Versions. store.write writes SCHEMA_VERSION into every row of every part. It has been 1 since
the store's first commit (2026-11-22): columns were added to the rows later without a new
version, so a version-1 part written before a column existed lacks it, and ``part`` gives it the
value below (a null in such a column gets it too, as a part built from rows with and without
the key holds):

    trials       protocol "project" (added 2026-12-02), role "search" and seed_of "" (2026-12-06);
                 search_seeds 1, val_loss_std NaN, seed_best_val_losses "" (rows.SEED_SPREAD,
                 --search-seeds, 2026-12-07), warm_start "" (2026-12-07)
    evaluations  test_bpd, active_units, active_units_per_batch NaN, latent_dims -1 (2026-12-02;
                 rows.EVALUATION_DEFAULTS, the values a family without posterior means writes)
    curves       any of rows.CURVE_KEYS a part lacks, NaN (lr and skipped_steps 2026-12-02,
                 epoch_started_at 2026-12-03, val_loss_std 2026-12-07); a null written since
                 stays (a metric not recorded)

Cell records (``cells/<cell>.json``, 2026-12-02 on) carry no version: each is version 1. One
written before a key existed lacks it; ``cell_record`` gives its cell the protocol "project" and
the record an empty ``key_sources`` (added 2026-12-06), ``search_seeds`` 1 (2026-12-07) and the
``objectives`` ["val_loss"] (a single-objective study: --objectives, added 2026-12-07). Sample
files (results.samples) have their own ``schema_version``, 1, the only format they have had:
nothing to migrate.

Left as older storages hold them, since the current code writes the same: a ``checkpoint_path``
that is absolute (rows before 2026-12-06; store.relative leaves a path outside the storage
absolute too, and store.locate reads both), and a cell with no record at all (a storage from
before cell records: nothing to read it from).

To change what is written: raise SCHEMA_VERSION to N and add MIGRATIONS[N - 1], a function that
brings the rows of a version N - 1 part to version N; ``part`` applies each migration from the
part's version on, so a part of any version reaches the current one. A part of a newer version
than this code knows is read as it is.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd

from results import rows

SCHEMA_VERSION = 1
"""The version of the Parquet rows store.write writes (its ``schema_version`` column)."""

ADDED_TO_VERSION_1 = {
    "trials": {"protocol": "project", "role": rows.SEARCH, "seed_of": "", "warm_start": "",
               **rows.SEED_SPREAD},
    "evaluations": rows.EVALUATION_DEFAULTS,
    "curves": {k: math.nan for k in rows.CURVE_KEYS if k != "epoch"},
}
"""Per table, the columns added to version-1 rows after the version began, and the value a row
written before each existed reads as."""
FILLED = ("trials", "evaluations")
"""Tables whose added columns are filled where null too (a curve's null means not recorded)."""


def _version_1(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """A version-1 part with every column added to version 1 since it began."""

    def column(k, v):
        if k not in frame.columns:
            return v
        if table not in FILLED:
            return frame[k]
        col = frame[k].fillna(v)
        return col.astype("int64") if isinstance(v, int) else col  # integer stays integer

    return frame.assign(**{k: column(k, v) for k, v in ADDED_TO_VERSION_1[table].items()})


MIGRATIONS: dict[int, Callable[[pd.DataFrame, str], pd.DataFrame]] = {1: _version_1}
"""Keyed on the version a part was written under: what brings its rows to the next version's
format (the current version's: the columns added to it since it began)."""


def version(frame: pd.DataFrame) -> int:
    """The version a part was written under (its oldest row's, should a part mix them; a null
    reads as 1, the only version there was before this module read it)."""
    oldest = frame["schema_version"].min()
    return 1 if pd.isna(oldest) else int(oldest)


def part(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """A Parquet part's rows (a frame with ``schema_version``, as results.damage checked it) in
    the current format; an empty part as it is."""
    if frame.empty:
        return frame
    for v in range(version(frame), SCHEMA_VERSION + 1):
        frame = MIGRATIONS[v](frame, table)
    return frame


def cell_record(record: dict) -> dict:
    """A cell record (as results.damage.cell_record checked it) in the current format: its
    cell's ``protocol``, its ``key_sources``, ``search_seeds`` and ``objectives`` present."""
    out = {"key_sources": {}, "search_seeds": 1, "objectives": ["val_loss"], **record}
    if isinstance(out.get("cell"), dict):
        out["cell"] = {"protocol": "project", **out["cell"]}
    return out
