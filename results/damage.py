"""What each record of a storage must be, checked where it is read.

A storage holds ``cells/<cell>.json`` (the cell record), ``optuna/<cell>.journal`` (Optuna's
journal, one JSON operation a line), Tune's ``ray/<cell>/experiment_state-*.json`` and trial
folders (``params.json``, checkpoints with ``history.json`` and ``config.json``) and the Parquet
parts under ``results/``. Each validator below takes a file's bytes (or a part's schema) and
raises Damaged, one line naming the file as a person would type it, what is wrong and the
command that repairs it (or what to do when nothing can). No validator writes anything.
"""

from __future__ import annotations

import json
import pickletools
import warnings
from datetime import datetime

import pyarrow as pa

from results.errors import StorageError


class Damaged(StorageError):
    """A record of the storage is not what its writer writes."""

    def __init__(self, file: str, what: str, fix: str):
        self.file, self.what, self.fix = file, what, fix
        super().__init__(f"{file} is damaged ({what}): {fix}")


def restore(storage: str) -> str:
    """The fix for a record nothing else holds."""
    return (f"restore it from a copy of the storage (nothing else records what it held); "
            f"`python -m results check --storage {storage}` lists every damaged file")  # fmt: skip


def _json(data: bytes, file: str, fix: str):
    try:
        return json.loads(data.decode())
    except UnicodeDecodeError:
        raise Damaged(file, "not UTF-8 text", fix) from None
    except ValueError as e:
        raise Damaged(file, f"not JSON: {e}", fix) from None


def _kind(v) -> str:
    if isinstance(v, bool):
        return "bool"
    return {int: "int", float: "float", str: "str", dict: "dict", list: "list"}.get(type(v), "?")


CELL_RECORD = {
    "cell": ("dict",), "base_config": ("dict",), "key_sources": ("dict",), "trials": ("int",),
    "budget": ("str",), "sampler": ("str",), "seed": ("int",), "resources": ("dict",),
    "provenance": ("dict",), "space_versions": ("list",), "warm_start": ("dict",),
    "search_seeds": ("int",), "objectives": ("list",),
}  # fmt: skip
"""The keys sweeps.engine.cell.cell_record writes and their JSON types. A key may be absent (a
record written before it existed: results.migrate fills it in as the store reads the record);
another key, or a key with another type, is damage (a resumed cell needs RESUMED_KEYS as well)."""
RESUMED_KEYS = ("trials", "base_config")
"""What a resumed or extended cell takes from its record: its target and its fixed config."""
CELL_FIELDS = ("family", "dataset", "likelihood", "paper")


def cell_record(data: bytes, file: str, storage: str) -> dict:
    """A cell record (``cells/<cell>.json``): a JSON object of CELL_RECORD's keys and types."""
    fix = restore(storage)
    record = _json(data, file, fix)
    if not isinstance(record, dict):
        raise Damaged(file, f"a JSON {_kind(record)}, not an object", fix)
    unknown = sorted(set(record) - set(CELL_RECORD))
    if unknown or not record:
        what = f"keys {', '.join(unknown[:3])} of no cell record" if unknown else "empty"
        raise Damaged(file, what, fix)
    for key, kinds in CELL_RECORD.items():
        if key in record and _kind(record[key]) not in kinds:
            raise Damaged(file, f"{key!r} is a {_kind(record[key])}, not a {kinds[0]}", fix)
    if record.get("trials", 0) < 0:
        raise Damaged(file, f"'trials' is {record['trials']}, below 0", fix)
    for key in CELL_FIELDS:
        if key in record.get("cell", {}) and not isinstance(record["cell"][key], str):
            raise Damaged(file, f"cell {key!r} is not a string", fix)
    return record


JOURNAL_FIELDS = {
    0: {"study_name": "str", "directions": "list"},
    1: {"study_id": "int"},
    2: {"study_id": "int", "user_attr": "dict"},
    3: {"study_id": "int", "system_attr": "dict"},
    4: {"study_id": "int"},
    5: {"trial_id": "int", "param_name": "str", "distribution": "str"},
    6: {"trial_id": "int", "state": "int"},
    7: {"trial_id": "int", "step": "int"},
    8: {"trial_id": "int", "user_attr": "dict"},
    9: {"trial_id": "int", "system_attr": "dict"},
    10: {},
}
"""Optuna 5's journal operations (optuna.storages.journal JournalOperation) and the fields its
replay reads from each without a default."""


def _op_error(op) -> str | None:
    """Why a journal line is not an operation Optuna can replay, or None."""
    if not isinstance(op, dict) or _kind(op.get("op_code")) != "int":
        return "not an Optuna operation (no op_code)"
    fields = JOURNAL_FIELDS.get(op["op_code"])
    if fields is None:
        return f"unknown op_code {op['op_code']}"
    for key, kind in fields.items():
        if _kind(op.get(key)) != kind:
            return f"op_code {op['op_code']} without a {kind} {key!r}"
    if op["op_code"] == 6 and not 0 <= op["state"] <= 4:
        return f"trial state {op['state']} is none of Optuna's"
    for key in ("datetime_start", "datetime_complete"):
        if op.get(key) is not None:
            try:
                datetime.fromisoformat(op[key])
            except (TypeError, ValueError):
                return f"{key} {op[key]!r} is not a time"
    if op["op_code"] == 5:
        return _param_error(op)
    return None


def param_valid(distribution: str, value) -> bool:
    """Whether a journal's parameter (its distribution's JSON, its internal value) is one
    Optuna can read back."""
    from optuna.distributions import json_to_distribution  # imported here: only journals need it

    try:
        dist = json_to_distribution(distribution)
        dist.to_external_repr(value)
        return bool(dist._contains(value))
    except (KeyError, ValueError, TypeError, IndexError, AttributeError):
        return False


def _param_error(op: dict) -> str | None:
    if param_valid(op["distribution"], op.get("param_value_internal")):
        return None
    return f"parameter {op['param_name']!r} has no valid distribution and value"


def journal_lines(data: bytes) -> tuple[int, int | None, str]:
    """(bytes of the journal's valid complete lines before the first damaged one, the number of
    that line (1-based) or None, why it is damaged). The bytes after the last newline are a line
    a crash tore in the middle of its write: Optuna's JournalFileBackend skips such a last line,
    and so does this."""
    good, start = 0, 0
    for number, line in enumerate(data.split(b"\n")[:-1], start=1):
        try:
            why = _op_error(json.loads(line.decode()))
        except (UnicodeDecodeError, ValueError) as e:
            why = f"not JSON: {e}"
        if why is not None:
            return good, number, why
        start += len(line) + 1
        good = start
    return good, None, ""


def journal(data: bytes, file: str, storage: str) -> None:
    """Each complete line of an Optuna journal is an operation Optuna can replay."""
    good, number, why = journal_lines(data)
    if number is None:
        return
    if tail_damage_only(data):
        fix = (
            f"`python -m results check --storage {storage} --repair` (or the sweep's --resume) "
            f"keeps it as {file}.damaged-<time> and cuts it before line {number} (a damaged "
            "tail: each operation before it stands)"
        )
    else:
        fix = (f"operations after it name trials by the order they were made, so it cannot be "
               f"dropped; {restore(storage)}")  # fmt: skip
    total = data.count(b"\n")
    raise Damaged(file, f"line {number} of {total}: {why}", fix)


def _is_damaged(line: bytes) -> bool:
    try:
        return _op_error(json.loads(line.decode())) is not None
    except (UnicodeDecodeError, ValueError):
        return True


def tail_damage_only(data: bytes) -> bool:
    """Whether every damaged line of a journal follows every valid one (a damaged tail, which
    can be cut without changing what the operations before it did)."""
    good, number, _ = journal_lines(data)
    return number is not None and all(
        not line.strip() or _is_damaged(line) for line in data[good:].split(b"\n")[:-1]
    )


def experiment_state(data: bytes, file: str, storage: str) -> list[tuple[dict, dict]]:
    """Tune's experiment state: {"trial_data": [[trial JSON, runtime JSON], ...], ...}; the
    (trial, runtime) pairs, each trial with a string trial_id, status and relative_logdir."""
    fix = restore(storage)
    state = _json(data, file, fix)
    if not isinstance(state, dict) or not isinstance(state.get("trial_data"), list):
        raise Damaged(file, "no list 'trial_data' of Tune's trials", fix)
    out = []
    for i, pair in enumerate(state["trial_data"]):
        if not (isinstance(pair, list) and len(pair) == 2 and all(map(_is_str, pair))):
            raise Damaged(file, f"trial_data[{i}] is not a pair of JSON strings", fix)
        t, meta = (_json(p.encode(), file, fix) for p in pair)
        if not isinstance(t, dict) or not isinstance(meta, dict):
            raise Damaged(file, f"trial_data[{i}] is not a pair of JSON objects", fix)
        pending = t.get("status") == "PENDING" and t.get("relative_logdir") is None  # no folder yet
        for key in ("trial_id", "status") + (() if pending else ("relative_logdir",)):
            if not isinstance(t.get(key), str) or not t[key]:
                raise Damaged(file, f"trial_data[{i}] has no {key}", fix)
        if not pending and ("/" in t["relative_logdir"] or t["relative_logdir"].startswith(".")):
            raise Damaged(file, f"trial_data[{i}] has a logdir outside its folder", fix)
        if not isinstance(meta.get("last_result") or {}, dict):
            raise Damaged(file, f"trial_data[{i}] has a last_result that is not an object", fix)
        if _kind(meta.get("num_failures", 0)) != "int":
            raise Damaged(file, f"trial_data[{i}] has a num_failures that is not a number", fix)
        out.append((t, meta))
    return out


def _is_str(v) -> bool:
    return isinstance(v, str)


def json_object(data: bytes, file: str, storage: str) -> dict:
    """params.json (what Tune passed a trial), a checkpoint's config.json, Tune's
    search_gen_state-*.json: a JSON object."""
    fix = restore(storage)
    value = _json(data, file, fix)
    if not isinstance(value, dict):
        raise Damaged(file, f"a JSON {_kind(value)}, not an object", fix)
    return value


def history(data: bytes, file: str, storage: str) -> list[dict]:
    """A checkpoint's history.json: a list of epochs, each an object with a whole epoch."""
    fix = restore(storage)
    value = _json(data, file, fix)
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise Damaged(file, "not a list of epochs", fix)
    for r in value:
        if _kind(r.get("epoch")) != "int" or _kind(r.get("val_loss")) not in ("int", "float"):
            raise Damaged(file, "an epoch without a whole 'epoch' and a numeric 'val_loss'", fix)
    return value


def resumable_record(record: dict, file: str, storage: str) -> None:
    """A record a cell can be resumed or extended from: it holds RESUMED_KEYS (without its
    target the cell would go on with the budget's)."""
    missing = [k for k in RESUMED_KEYS if k not in record]
    if missing:
        raise Damaged(file, f"no {' or '.join(missing)}", restore(storage))


def pickled(data: bytes, file: str, storage: str) -> None:
    """Tune's tuner.pkl and searcher-state-*.pkl: a whole pickle (its opcodes are read without
    running any of them)."""
    try:
        with warnings.catch_warnings():  # a flipped byte can make an escape Python warns of
            warnings.simplefilter("ignore", DeprecationWarning)
            ops = list(pickletools.genops(data))
    except (ValueError, IndexError, KeyError, UnicodeDecodeError) as e:
        raise Damaged(file, f"not a whole pickle: {e}", restore(storage)) from None
    if not ops or ops[-1][0].name != "STOP":
        raise Damaged(file, "not a whole pickle", restore(storage))


STR, INT, NUM = "string", "integer", "number"
PART_COLUMNS = {
    "trials": ({"trial_id": STR, "status": STR, "best_val_loss": NUM},
               {"sweep": STR, "paper": STR, "family": STR, "dataset": STR, "likelihood": STR,
                "variant": STR, "protocol": STR, "role": STR, "seed_of": STR, "reason": STR,
                "warm_start": STR,
                "config_json": STR, "key_sources": STR, "epochs": INT, "seed": INT,
                "optuna_trial": INT, "retries": INT}),
    "curves": ({"trial_id": STR, "epoch": INT},
               {"sweep": STR, "train_loss": NUM, "val_loss": NUM, "lr": NUM, "beta": NUM}),
    "evaluations": ({"trial_id": STR, "seed": INT, "test_log_likelihood": NUM, "k": INT},
                    {"sweep": STR}),
}  # fmt: skip
"""Per table: (the columns every part has, the columns a part may lack, having been written
before they existed: results.migrate fills them after this check) and their types, as
results.rows builds them and results.store.write writes them (which adds schema_version and
written_at to every part)."""
STATUSES = ("completed", "pruned", "errored")


def _type_ok(t: pa.DataType, want: str) -> bool:
    if pa.types.is_null(t):
        return True
    if want == STR:
        return pa.types.is_string(t) or pa.types.is_large_string(t)
    if want == INT:
        return pa.types.is_integer(t)
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def part_schema(schema: pa.Schema, table: str) -> str | None:
    """Why a Parquet part's columns are not those of ``table``'s parts, or None."""
    required, optional = PART_COLUMNS[table]
    names = set(schema.names)
    missing = sorted(set(required) - names)
    if missing:
        return f"not a {table} part: no column {', '.join(missing)}"
    for name, want in {**required, **optional, "schema_version": INT, "written_at": NUM}.items():
        if name in names and not _type_ok(schema.field(name).type, want):
            return f"column {name} is {schema.field(name).type}, not a {want}"
    if "schema_version" not in names or "written_at" not in names:
        return "no schema_version or written_at column (store.write adds both)"
    return None


def part_values(frame, table: str) -> str | None:
    """Why a part's rows cannot be this table's rows, or None."""
    if table == "trials" and not frame["status"].isin(STATUSES).all():
        bad = sorted(set(map(str, frame["status"])) - set(STATUSES))[:3]
        return f"status {', '.join(bad)} is none of {', '.join(STATUSES)}"
    if frame["trial_id"].isna().any():
        return "a row without a trial_id"
    return None
