"""Reconcile a storage with itself: Parquet rows against Tune's records and the Optuna studies.

    python -m results check --storage DIR [--study-storage URL] [--repair]

Every ended Tune trial must have exactly one Parquet row whose status agrees with Tune and with
its one Optuna trial, and a learning curve; every row must trace to a Tune trial; no two trials of
a cell may have run the same configuration. ``repair`` rebuilds what can be rebuilt from Tune's
records and the trial's checkpoint (missing or damaged rows and curves); a damaged part is set
aside under <storage>/quarantine/, never deleted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from results import damage, records, rows, store

OPTUNA_STATE = {"completed": "COMPLETE", "pruned": "PRUNED", "errored": "FAIL"}


@dataclass(frozen=True)
class Difference:
    """One way the storage disagrees with itself. ``repair`` says what --repair does, if it can."""

    sweep: str
    trial_id: str
    what: str
    repair: str = ""

    def line(self) -> str:
        fix = f" [--repair: {self.repair}]" if self.repair else ""
        return f"{self.sweep} {self.trial_id or '-'}: {self.what}{fix}"


@dataclass
class SweepState:
    """What each record of one cell holds."""

    sweep: str
    tune: dict[str, records.TuneTrial] | None
    study: list | None  # Optuna's FrozenTrials (results.records reads them)
    tables: dict[str, pd.DataFrame]
    damaged: dict[str, str]  # part path -> why
    broken: list[damage.Damaged] = field(default_factory=list)  # damaged records (not parts)
    record: dict | None = None  # cells/<cell>.json


def read_sweep(storage: str, sweep: str, study_url: str | None = None) -> SweepState:
    """A cell's records, read-only. A damaged record (results.damage) is kept in ``broken``
    and read as absent; differences() then reports it alone, not what its absence implies."""
    tables, damaged, broken = {}, {}, []
    for table in store.TABLES:
        frames, bad = store.read_parts(storage, store.part_paths(storage, table, sweep))
        tables[table], damaged = store.newest(frames, table), {**damaged, **bad}

    def read(reader, *args):
        try:
            return reader(*args)
        except damage.Damaged as e:
            broken.append(e)
            return None

    record = read(store.cell_record, storage, sweep)
    tune = read(records.tune_trials, storage, sweep)
    study = read(records.study_trials, storage, sweep, study_url)
    return SweepState(sweep, tune, study, tables, damaged, broken, record)


def expected_status(trial: records.TuneTrial) -> str:
    """The status our row must have for an ended Tune trial."""
    return rows.trial_status(trial.last_result, trial.error if trial.status == "ERROR" else None)[0]


def differences(state: SweepState) -> list[Difference]:
    """Every difference between the cell's Parquet rows, Tune's records and its Optuna study."""
    s, out = state.sweep, []
    for path, why in state.damaged.items():
        table = path.split("/results/")[-1].split("/")[0]
        part = path.rsplit("/", 1)[-1].removesuffix(".parquet")
        fix = (
            "set aside; re-run with --resume to re-evaluate"
            if table == "evaluations"
            else ("set aside and rebuilt from Tune's records")
        )
        trial_id = part.split("-seed")[0]  # evaluations: <trial>-seed<n>
        out.append(Difference(s, trial_id, f"damaged {table} part {path}: {why}", fix))
    for e in state.broken:
        out.append(Difference(s, "", str(e)))
    if state.broken:
        return out  # the rows cannot be compared with a record that cannot be read
    trials, curves = state.tables["trials"], state.tables["curves"]
    by_id = trials.set_index("trial_id") if not trials.empty else pd.DataFrame()
    curve_ids = set(curves["trial_id"]) if not curves.empty else set()
    if state.tune is None:
        if not trials.empty:
            what = f"{len(trials)} rows but no Tune record (ray/{s} is gone)"
            out.append(Difference(s, "", what))
    else:
        out += _against_tune(s, state.tune, by_id, curve_ids)
    out += _against_optuna(s, state, by_id)
    out += _searched(s, state, by_id)
    out += _duplicates(s, trials)
    evals = state.tables["evaluations"]
    if not evals.empty:
        for tid in sorted(set(evals["trial_id"]) - set(by_id.index)):
            out.append(Difference(s, tid, "an evaluation of a trial with no row"))
    return out


def _against_tune(s, tune, by_id, curve_ids) -> list[Difference]:
    out = []
    for tid, t in sorted(tune.items()):
        if not t.ended:
            continue
        want = expected_status(t)
        if tid not in by_id.index:
            out.append(Difference(s, tid, f"no row for a {want} trial", "rebuilt from Tune"))
            continue
        have = by_id.loc[tid, "status"]
        if have != want:
            out.append(Difference(s, tid, f"row says {have}, Tune says {want}", "rebuilt"))
        if tid not in curve_ids and by_id.loc[tid, "epochs"] > 0 and t.checkpoint:
            out.append(Difference(s, tid, "no learning curve", "rebuilt from the checkpoint"))
    for tid in sorted(set(by_id.index) - set(tune)):
        out.append(Difference(s, tid, "a row of a trial Tune has no record of"))
    return out


def _against_optuna(s, state: SweepState, by_id) -> list[Difference]:
    if state.study is None:
        return [Difference(s, "", "no Optuna study")] if not by_id.empty else []
    out, owners = [], {}
    for ot in state.study:
        tid = ot.user_attrs.get("tune_trial_id")
        owners.setdefault(tid, []).append(ot)
    for tid, ots in sorted(owners.items(), key=lambda kv: str(kv[0])):
        if tid is None or (state.tune is not None and tid not in state.tune):
            for ot in ots:
                if ot.state.name == "RUNNING":
                    why = "asked by a driver that stopped before Tune saved it; --resume adopts it"
                    out.append(Difference(s, "", f"Optuna trial {ot.number} {why}"))
            continue
        if len(ots) > 1:
            numbers = [ot.number for ot in ots]
            out.append(Difference(s, tid, f"{len(ots)} Optuna trials {numbers} for one Tune trial"))
    for tid, row in by_id.iterrows():
        if row.get("role") == rows.SEED:
            continue  # a winner's re-training has no Optuna trial (sweeps.engine.seeds)
        ots = owners.get(tid, [])
        if not ots:
            out.append(Difference(s, tid, "a row with no Optuna trial"))
            continue
        ot, want = ots[-1], OPTUNA_STATE[row["status"]]
        if ot.state.name != want:
            out.append(Difference(s, tid, f"row says {row['status']}, Optuna {ot.state.name}"))
        elif want == "COMPLETE" and not math.isclose(first := ot.values[0], row["best_val_loss"],
                                                     rel_tol=1e-9):  # fmt: skip
            # the first value: val_loss, alone or first of --objectives (sweeps.engine.objectives)
            out.append(
                Difference(s, tid, f"best_val_loss {row['best_val_loss']} but Optuna {first}")
            )
    return out


def _searched(s, state: SweepState, by_id) -> list[Difference]:
    """How each trial was searched, as the study and the record say it and as its row does: the
    version of the space it was drawn under (the cell record's ``space_versions``, each from
    its first Optuna trial on) and where a warm start took its configuration from."""
    out = []
    kept = (state.record or {}).get("space_versions") or []
    for ot in state.study or []:
        said = ot.user_attrs.get("space_version")
        if said is None or not kept:
            continue
        want = max((v["version"] for v in kept if v["from_trial"] <= ot.number), default=None)
        if said != want:
            out.append(Difference(s, ot.user_attrs.get("tune_trial_id", ""),
                                  f"Optuna trial {ot.number} was drawn under space version "
                                  f"{said}, the cell record says {want}"))  # fmt: skip
    warm = records.warm_starts(state.study or [])  # one pass over the study, not one per row
    for tid, row in by_id.iterrows():
        came = warm.get(tid, "")
        if str(row.get("warm_start", "") or "") != came and row.get("role") != rows.SEED:
            out.append(Difference(s, tid, f"row says warm_start {row.get('warm_start')!r}, "
                                          f"Optuna {came!r}", "rebuilt"))  # fmt: skip
    return out


def _duplicates(s, trials: pd.DataFrame) -> list[Difference]:
    """Trials of one cell that ran the very same configuration (seed included): wasted work and
    tied winners, as when a sweep was re-run into its storage before this was refused."""
    if trials.empty or "config_json" not in trials:
        return []
    out = []
    for _, group in trials.groupby("config_json"):
        if len(group) > 1:
            ids = sorted(group["trial_id"])
            out.append(Difference(s, ids[0], f"ran the same configuration as {ids[1:]}"))
    return out


def unfinished(state: SweepState) -> list[str]:
    """Tune trials that have not ended: the sweep is running, or was stopped (--resume)."""
    return sorted(t for t, r in (state.tune or {}).items() if not r.ended)


def check(storage: str, study_url: str | None = None) -> dict[str, SweepState]:
    """Every cell's state, read-only; raises StorageError if there is no sweep under storage."""
    if not store.exists(storage):
        raise store.StorageError(f"no sweep under {storage}")
    return {s: read_sweep(storage, s, study_url) for s in store.sweeps(storage)}


def repair(storage: str, state: SweepState) -> list[str]:
    """Set damaged parts aside and rebuild every row and curve Tune's records can give back;
    nothing while another record of the cell is damaged (a row rebuilt from it could differ
    from the one written)."""
    if state.broken:
        return [f"cannot repair {state.sweep} while {e}" for e in state.broken]
    done = [f"set aside {p} as {store.quarantine(storage, p)}" for p in state.damaged]
    if state.damaged:
        state = read_sweep(storage, state.sweep)
    for d in differences(state):
        if d.repair and d.trial_id in (state.tune or {}):
            done.append(rebuild(storage, state, state.tune[d.trial_id]))
    return list(dict.fromkeys(done))


def rebuild(storage: str, state: SweepState, trial: records.TuneTrial) -> str:
    """Write a trial's row and curve again from Tune's record and its newest checkpoint."""
    cell = cell_fields(storage, state)
    if cell is None:
        return f"cannot rebuild {trial.trial_id}: no record of cell {state.sweep} (cells/)"
    record = store.cell_record(storage, state.sweep) or {}
    history = records.checkpoint_json(storage, trial.checkpoint, records.HISTORY_FILE) or []
    config = records.checkpoint_json(storage, trial.checkpoint, records.CONFIG_FILE)
    config = config or flatten(trial.given_config)
    ckpt = trial.checkpoint
    resources = record.get("resources", {})
    number = records.optuna_trial(state.study or [], trial.trial_id)
    fixed = record.get("key_sources", {})
    if trial.seed_of:  # a winner's re-training: its keys came as the winner's did, its seed ours
        fixed = rows.retraining_sources(winner_sources(state, trial.seed_of), config)
    row = rows.trial_row(
        cell,
        trial.trial_id,
        config,
        trial.last_result,
        history,
        error=trial.error if trial.status == "ERROR" else None,
        retries=trial.retries,
        checkpoint_path=store.relative(storage, records.checkpoint_uri(storage, ckpt))
        if ckpt
        else "",
        gpus=float(resources.get("gpu", 0.0)),
        cpus=float(resources.get("cpu", 1.0)),
        provenance=record.get("provenance", {}),
        times=rows.tune_times(trial.run_metadata),
        sources=rows.key_sources(config, fixed, set(flatten(trial.given_config))),
        optuna_trial=-1 if trial.seed_of else number,
        role=rows.SEED if trial.seed_of else rows.SEARCH,
        seed_of=trial.seed_of,
        warm_start=records.warm_start_of(state.study or [], trial.trial_id),
    )
    store.write(storage, "trials", state.sweep, trial.trial_id, [row])
    if history:
        store.write(
            storage, "curves", state.sweep, trial.trial_id,
            rows.curve_rows(state.sweep, trial.trial_id, history),
        )  # fmt: skip
    return f"rebuilt {state.sweep} {trial.trial_id} ({row['status']}, {len(history)} epochs)"


def winner_sources(state: SweepState, winner: str) -> str | None:
    """The ``key_sources`` JSON of a re-trained winner's row, if the storage still has it."""
    trials = state.tables["trials"]
    found = trials[trials["trial_id"] == winner] if "key_sources" in trials else trials.iloc[:0]
    return found["key_sources"].iloc[-1] if not found.empty else None


def cell_fields(storage: str, state: SweepState) -> dict | None:
    """The cell's identity columns, from its record or from any surviving row."""
    record = store.cell_record(storage, state.sweep)
    if record is not None:
        cell = record["cell"]  # with its protocol, as results.migrate gives an older record's
        return {"sweep": state.sweep, **{k: cell[k] for k in rows.CELL_FIELDS[1:]}}
    trials = state.tables["trials"]
    return None if trials.empty else trials.iloc[0][list(rows.CELL_FIELDS)].to_dict()


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}/") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def summary(states: dict[str, SweepState]) -> tuple[list[Difference], list[str]]:
    """(every difference, the unfinished trials as 'sweep trial_id')."""
    diffs = [d for st in states.values() for d in differences(st)]
    running = [f"{s} {t}" for s, st in states.items() for t in unfinished(st)]
    return diffs, running
