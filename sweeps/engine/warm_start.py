"""A new cell's study seeded from the matching cell of another sweep (``--warm-start STORAGE``).

    source_cell(source, cell, dataset)  -> the matching cell's name there (or Refusal)
    check(source, storage, cells, ...)  -> the same for every chosen cell, before Ray
    prepare(source, name, dists, best)  -> Warm: what seeds this cell, and what is left out
    seed(study, warm, dists)            -> the study seeded (again: nothing more)

The source is read from its Parquet rows (local or s3://, whatever study storage it used): each
completed search trial's configuration (the keys its row says the search drew) and its best
validation loss. Its ``best`` configurations are queued in this cell's new study, so they are run
first here, each marked ``warm_start_of`` (its row's ``warm_start`` column says from where); every
completed trial of the source whose values lie inside this cell's space is added to the study as a
finished trial marked ``warm_start_from``, which informs the sampler and is not a trial of this cell
(no Tune trial, no row; results.check and the searcher's twin check pass over it). A value outside
this cell's space is named and its trial skipped.

Where the source was swept on another budget, its losses are on that budget's scale (a smoke budget
trains fewer epochs: higher losses): TPE ranks them with this cell's own, so they count as worse
until the cell has trials of its own; the queued configurations bring their regions in at this
budget. Across datasets (``--warm-start-dataset``) the same holds more so; the table's notes say it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState

from results import damage, records, rows, store
from search_spaces import versions
from sweeps.cells import Cell
from sweeps.engine.preflight import Refusal

FROM, OF = records.WARM_FROM, records.WARM_OF
"""Optuna user attributes: a trial added to inform the sampler (FROM) and a queued configuration
of the source run here (OF), each naming where its configuration came from."""
MATCH = ("family", "likelihood", "variant", "protocol")
"""What a source cell must share with the cell it seeds (and its dataset, unless told another)."""


@dataclass
class Warm:
    """What seeds one cell: finished trials to add, configurations to queue, what was left out."""

    origin: str  # "<storage>: <cell>"
    informing: list[tuple[dict, float, str]] = field(default_factory=list)  # params, value, from
    queued: list[tuple[dict, str]] = field(default_factory=list)  # params, from
    skipped: list[str] = field(default_factory=list)  # "trial <id>: why"

    def lines(self) -> list[str]:
        """What a researcher is told at the cell's start."""
        n = len(self.queued)
        out = [f"warm start from {self.origin}: its best {n} configuration{'s' * (n != 1)} "
               f"run first; {len(self.informing)} of its completed trials inform the sampler"]
        if self.skipped:
            more = f" (+{len(self.skipped) - 3} more)" if len(self.skipped) > 3 else ""
            out.append(f"{len(self.skipped)} of its trials skipped, outside this cell's space: "
                       + "; ".join(self.skipped[:3]) + more)  # fmt: skip
        return out


def source_cell(source: str, cell: Cell, dataset: str | None = None) -> str:
    """The name of the cell of ``source`` that matches ``cell`` (MATCH, and ``dataset`` or the
    cell's own); Refusal naming what differs, or what the storage holds, when none does."""
    want = {**{k: getattr(cell, k) for k in MATCH}, "dataset": dataset or cell.dataset}
    near, held = [], store.sweeps(source)
    for name in held:
        try:
            record = store.cell_record(source, name)
        except damage.Damaged as e:
            raise Refusal(f"--warm-start: {e}") from None
        if record is None:
            continue
        have = {k: record["cell"].get(k, "-") for k in want}
        if have == want:
            return name
        if have["family"] == want["family"]:
            near.append(", ".join(f"{k} {have[k]}" for k in want if have[k] != want[k]))
    said = ", ".join(f"{k} {v}" for k, v in want.items())
    if near:
        why = f"; its {cell.family} cells differ: {' / '.join(near[:3])}"
    else:
        more = f" (+{len(held) - 3} more)" if len(held) > 3 else ""
        why = f"; it holds {', '.join(held[:3]) or 'no cell'}{more}"
    raise Refusal(
        f"--warm-start: {source} holds no cell of {said}{why}: choose --families/--datasets "
        "that it holds" + ("" if dataset or not near else ", or --warm-start-dataset D")
    )


def check(source: str, storage: str, cells: list[Cell], dataset: str | None, best: int) -> None:
    """Refusal, before Ray starts and before anything is written, unless ``source`` is a sweep
    other than ``storage`` holding, for each of ``cells``, a matching cell with completed trials
    whose rows are whole."""
    if best < 1:
        raise Refusal(f"--warm-start-best {best}: give 1 or more configurations to run first")
    if _place(source) == _place(storage):
        raise Refusal("--warm-start names the sweep's own --storage: --add-trials N continues "
                      "its cells there")  # fmt: skip
    if not store.exists(source):
        raise Refusal(f"--warm-start: no sweep under {source} (nothing a sweep writes is there): "
                      "give the --storage of a finished sweep")  # fmt: skip
    for cell in cells:
        name = source_cell(source, cell, dataset)
        if not completed(source, name):
            raise Refusal(f"--warm-start: cell {name} of {source} has no completed trial yet: "
                          "nothing to start from")  # fmt: skip


def _place(storage: str) -> str:
    return storage.rstrip("/") if "://" in storage else os.path.realpath(storage)


def completed(source: str, name: str) -> list[tuple[str, dict, float]]:
    """(trial id, drawn parameters, best validation loss) of each completed search trial of a
    source cell, best first. A damaged Parquet part: Refusal with its fix."""
    try:
        frame = store.load(source, "trials", sweep=name)
    except store.StorageError as e:
        raise Refusal(f"--warm-start: {e}") from None
    if frame.empty:
        return []
    done = frame[(frame["status"] == "completed") & (frame["role"] == rows.SEARCH)]
    out = []
    for _, r in done.sort_values("best_val_loss").iterrows():
        config, sources = json.loads(r["config_json"]), json.loads(r["key_sources"] or "{}")
        params = {k: config[k] for k, s in sources.items() if s == "search" and k in config}
        if params:
            out.append((r["trial_id"], params, float(r["best_val_loss"])))
    return out


def prepare(source: str, name: str, dists: dict[str, BaseDistribution], best: int) -> Warm:
    """What seeds a cell from cell ``name`` of ``source``: ``dists`` is the space this cell
    draws from (search_spaces.versions.distributions); a key it does not draw (fixed here) is
    left out of a configuration, a value outside it skips the trial."""
    warm = Warm(origin=f"{source}: {name}")
    seen = set()
    for trial_id, params, value in completed(source, name):
        drawn = {k: v for k, v in params.items() if k in dists}
        if why := versions.misfits(drawn, dists):
            warm.skipped.append(f"trial {trial_id}: {why[0]}")
            continue
        where = f"{warm.origin} trial {trial_id}"
        warm.informing.append((drawn, value, where))
        key = json.dumps(drawn, sort_keys=True)
        if len(warm.queued) < best and key not in seen:
            warm.queued.append((drawn, where))
        seen.add(key)
    return warm


def seed(study: optuna.Study, warm: Warm, dists: dict[str, BaseDistribution]) -> None:
    """Queue ``warm``'s configurations, then add its informing trials, to ``study``; what the
    study already holds of them (a driver killed half-way, resumed) is not added again. A study
    of several objectives is only queued (the source's trials carry one value)."""
    trials = study.get_trials(deepcopy=False)
    queued, added = ({t.user_attrs.get(k) for t in trials} for k in (OF, FROM))
    for params, where in warm.queued:
        if where not in queued:
            study.enqueue_trial(params, user_attrs={OF: where})
    if len(study.directions) > 1:
        return
    for params, value, where in warm.informing:
        if where not in added:
            study.add_trial(optuna.trial.create_trial(
                params=params, distributions={k: dists[k] for k in params}, value=value,
                state=TrialState.COMPLETE, user_attrs={FROM: where}))  # fmt: skip
