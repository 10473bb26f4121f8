"""Each cell's winner as the table chooses it (results.selection.chosen), read from the rows:
its configuration and where each key came from, its validation and test numbers, its checkpoint.

    winners(storage, paper, selection) -> [Winner]     one per cell of the paper's tables
    describe(winner) -> [line]                         what ``python -m results best`` prints
    record(storage, winner, selection) -> dict         what an export records beside the weights
    export(storage, winner, out, selection) -> path    ``python -m results export``

The export's torch work (the checkpoint's test weights saved as tensors, the model's shape) is
``python -m training export``'s (training.export): results never imports torch, so this module
runs that command on the winner's checkpoint folder, copied out of an object store first.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass

import pandas as pd
import pyarrow.fs as pafs

from results import store
from results.papers import paper_tables
from results.rows import CELL_FIELDS
from results.selection import chosen, over_seeds, training_runs

WIDTH = 150
"""The widest line ``best`` prints (a checkpoint's path alone may be wider: it is copied whole)."""
TEST_COLUMNS = ("test_log_likelihood", "test_log_likelihood_sem", "test_elbo", "test_bpd", "k",
                "n_test", "seed", "active_units")  # fmt: skip
"""The columns of a winner's evaluation rows that ``best`` and an export show."""
SOURCE_ORDER = ("search", "cell", "budget", "--set", "winner-seeds", "winner", "default")


@dataclass
class Winner:
    """A cell's winner: its trial row, its own evaluation rows and the table's statistics."""

    row: pd.Series
    evaluations: pd.DataFrame  # the winner's own rows (one per importance-sampling seed)
    table: dict  # results.selection.over_seeds of test_log_likelihood over its training runs
    searched: int  # the cell's completed search trials it was chosen among

    @property
    def cell(self) -> str:
        return self.row["sweep"]

    @property
    def config(self) -> dict:
        return json.loads(self.row["config_json"])

    @property
    def sources(self) -> dict[str, str]:
        text = self.row.get("key_sources")
        came = json.loads(text) if isinstance(text, str) and text else {}
        return {k: came.get(k, "unrecorded") for k in self.config}


def winners(storage: str, paper: str, selection: str = "validation") -> list[Winner]:
    """The winner of each cell of the paper's tables, in the cells' order; StorageError when the
    storage holds no sweep or no row of these tables (as ``table``)."""
    tables = paper_tables(paper)
    if not store.exists(storage):
        raise store.StorageError(f"no sweep under {storage}")
    trials = store.load(storage, "trials")
    if trials.empty or not set(trials["paper"]) & {t.key for t in tables}:
        held = sorted(set(trials["paper"])) if not trials.empty else []
        raise store.StorageError(
            f"no results for {paper} under {storage} "
            f"({f'it holds results for {held}' if held else 'it holds no trial yet'})"
        )
    evals = store.load(storage, "evaluations")
    found = []
    for table in tables:
        best, _ = chosen(trials, table, selection)
        for _, w in best.sort_values("sweep").iterrows():
            mine = trials[trials["sweep"] == w["sweep"]]
            cell_evals = evals[evals["sweep"] == w["sweep"]] if not evals.empty else evals
            own = cell_evals[cell_evals["trial_id"] == w["trial_id"]] if not evals.empty else evals
            stats = over_seeds(training_runs(mine, w), cell_evals, "test_log_likelihood")
            done = (mine["role"] == "search") & (mine["status"] == "completed")
            found.append(Winner(w, own.sort_values("seed") if not own.empty else own, stats,
                                int(done.sum())))  # fmt: skip
    return found


def pick(found: list[Winner], cell: str | None, paper: str, storage: str) -> Winner:
    """The winner of ``cell``, or the only one when ``cell`` is None; StorageError naming the
    cells otherwise."""
    names = [w.cell for w in found]
    if cell is None:
        if len(found) == 1:
            return found[0]
        raise store.StorageError(f"{paper} has {len(found)} cells with a winner under {storage}; "
                                 f"give --cell, one of: {', '.join(names)}")  # fmt: skip
    for w in found:
        if w.cell == cell:
            return w
    raise store.StorageError(f"no winner for cell {cell!r} of {paper} under {storage}; cells "
                             f"with a winner: {', '.join(names) or 'none'}")  # fmt: skip


def _number(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _value(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else json.dumps(v) if isinstance(v, str) else str(v)


def _wrapped(label: str, items: list[str]) -> list[str]:
    head = f"  {label:<12}"
    text = textwrap.wrap(" ".join(items), WIDTH, initial_indent=head,
                         subsequent_indent=" " * len(head), break_on_hyphens=False)  # fmt: skip
    return text or [head.rstrip()]


def describe(w: Winner, storage: str, defaults: bool = False) -> list[str]:
    """The lines ``best`` prints for a winner: the cell, the trial, its validation and test
    numbers, its checkpoint, its config grouped by where each key came from (the family's
    defaults counted, or listed with ``defaults``)."""
    r = w.row
    cell = ", ".join(str(r[k]) for k in CELL_FIELDS[2:] if str(r[k]) not in ("", "-"))
    optuna = f"Optuna trial {r['optuna_trial']}" if r["optuna_trial"] >= 0 else "no Optuna trial"
    lines = [f"{w.cell}  ({r['paper']}: {cell})",
             f"  {'winner':<12}trial {r['trial_id']} ({optuna}), best by validation of "
             f"{w.searched} completed search trials; {int(r['n_parameters']):,} parameters",
             f"  {'validation':<12}best_val_loss {_number(r['best_val_loss'])} at epoch "
             f"{r['best_epoch']} of {r['epochs']} ({r['reason']})"]  # fmt: skip
    t = w.table
    if t["n"]:
        sd = f" ± {_number(t['std'])}" if t["n"] >= 2 else ""
        lines.append(f"  {'test':<12}log-likelihood {_number(t['mean'])}{sd} (the table's: "
                     f"{t['n']} training run(s), k={t['k']})")  # fmt: skip
        for _, e in w.evaluations.iterrows():
            ll, sem = _number(e["test_log_likelihood"]), _number(e["test_log_likelihood_sem"])
            lines.append(f"  {'':<12}seed {e['seed']}: LL {ll} ± {sem} (s.e.), ELBO "
                         f"{_number(e['test_elbo'])}, k={e['k']}, {e['n_test']} test images")
    else:
        lines.append(f"  {'test':<12}not evaluated yet (a winner's evaluation ends its cell)")
    where = store.locate(storage, r["checkpoint_path"]) if r["checkpoint_path"] else "none"
    lines.append(f"  {'checkpoint':<12}{where}")
    by_source: dict[str, list[str]] = {}
    for k, source in w.sources.items():
        by_source.setdefault(source, []).append(f"{k}={_value(w.config[k])}")
    order = [s for s in SOURCE_ORDER if s in by_source] + sorted(set(by_source) - {*SOURCE_ORDER})
    for source in order:
        items = by_source[source]
        if source == "default" and not defaults:
            lines.append(f"  {'default':<12}{len(items)} keys at the family's defaults "
                         "(--defaults lists them)")  # fmt: skip
            continue
        lines += _wrapped(source, items)
    return lines


def record(storage: str, w: Winner, selection: str) -> dict:
    """What an export records beside the weights: the config, validation and test numbers
    and where the model came from."""
    r = w.row
    evals = [{k: _plain(e[k]) for k in TEST_COLUMNS if k in e} for _, e in w.evaluations.iterrows()]
    versions = r.get("versions")
    return {
        "config": w.config,
        "validation": {"best_val_loss": _plain(r["best_val_loss"]),
                       "best_epoch": _plain(r["best_epoch"]), "epochs": _plain(r["epochs"])},
        "test": {"evaluations": evals,
                 "table": {k: _plain(w.table[k]) for k in ("mean", "std", "n", "k")}},
        "provenance": {
            "storage": store.uri(storage, store.filesystem(storage)[1]),
            "cell": w.cell, "paper": r["paper"],
            **{k: r[k] for k in CELL_FIELDS[2:]}, "selection": selection,
            "trial_id": r["trial_id"], "optuna_trial": _plain(r["optuna_trial"]),
            "checkpoint_path": r["checkpoint_path"], "key_sources": w.sources,
            "git_sha": r.get("git_sha", "unknown"),
            "versions": json.loads(versions) if isinstance(versions, str) else {},
            "hardware": r.get("hardware", ""),
        },
    }  # fmt: skip


def _plain(x):
    """A numpy scalar as the Python number JSON writes; NaN as None."""
    x = x.item() if hasattr(x, "item") else x
    return None if isinstance(x, float) and not math.isfinite(x) else x


def export(storage: str, w: Winner, out: str, selection: str = "validation") -> int:
    """Write the winner's export folder ``out`` through ``python -m training export``; its exit
    code (its ``error:`` line passes through)."""
    if not w.row["checkpoint_path"]:
        raise store.StorageError(f"trial {w.row['trial_id']} of {w.cell} recorded no checkpoint")
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise store.StorageError(f"{out} exists and is not an empty folder; choose another --out")
    with tempfile.TemporaryDirectory(prefix="export-") as scratch:
        checkpoint = local_checkpoint(storage, w.row["checkpoint_path"], scratch)
        path = os.path.join(scratch, "record.json")
        with open(path, "w") as f:
            json.dump(record(storage, w, selection), f, default=str)
        cmd = [sys.executable, "-m", "training", "export", "--checkpoint", checkpoint,
               "--out", out, "--record", path]  # fmt: skip
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # training's code too
        paths = [here, *filter(None, [os.environ.get("PYTHONPATH")])]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        return subprocess.run(cmd, env=env).returncode


def local_checkpoint(storage: str, relative: str, scratch: str) -> str:
    """The checkpoint folder as a local path: itself on a local storage, else its files copied
    into ``scratch``; StorageError when it is gone."""
    fs, _ = store.filesystem(storage)
    where = store.locate(storage, relative).split("://", 1)[-1]
    files = fs.get_file_info(pafs.FileSelector(where, allow_not_found=True))
    if not any(i.base_name == "state.pt" for i in files):
        raise store.StorageError(
            f"the winner's checkpoint {store.uri(storage, where)} holds no state.pt (gone, or "
            f"not synced); `python -m results check --storage {storage}` says what is missing"
        )
    if fs.type_name == "local":
        return where
    for i in files:
        if i.type == pafs.FileType.File and i.base_name in ("state.pt", "config.json"):
            pafs.copy_files(i.path, os.path.join(scratch, i.base_name), source_filesystem=fs,
                            destination_filesystem=pafs.LocalFileSystem())  # fmt: skip
    return scratch
