"""The versions of a cell's search space: each recorded, a change one study cannot hold refused.

    current(cell, budget)                    -> {name: distribution} this run's space draws from
    history(record, study, dists)            -> the cell record's ``space_versions``, this one last
    Space(version, distributions)            -> what the cell's searcher is given
    check(storage, cells, budget, study_url) -> Refusal for a change one Optuna study cannot hold

A cell's record keeps every version of the space its study was searched under (``space_versions``:
its number, its distributions, the first Optuna trial asked under it), and each Optuna trial its
``space_version``. ``--add-trials`` after search_spaces/ widened or narrowed a range continues the
cell's study under the new version; the sampler learns from the old trials that fit it
(search_spaces.versions.FittingTPESampler). A categorical's choices, a log scale or a kind changed
cannot go on in the same study (Optuna refuses it): the sweep says so and how to carry the trials
into a new storage (--warm-start).
"""

from __future__ import annotations

from dataclasses import dataclass

from optuna.distributions import BaseDistribution

import search_spaces
from results import damage, records, store
from search_spaces import versions
from sweeps.cells import Budget, Cell
from sweeps.engine.preflight import Refusal

VERSION = "space_version"
"""The Optuna user attribute naming the version of the space a trial was drawn under."""


@dataclass(frozen=True)
class Space:
    """The version of a cell's space a run draws from: its number and its distributions."""

    version: int
    distributions: dict[str, BaseDistribution]


def current(cell: Cell, budget: Budget) -> dict:
    """The distributions of the cell's space under this budget's and --set's fixed keys."""
    return versions.distributions(search_spaces.space_for(cell.family, cell.base_config(budget)))


def previous(record: dict | None, study: list | None) -> dict:
    """The distributions of the cell's newest recorded version: its record's, else (a cell from
    before space versions) those its study's trials were drawn from."""
    kept = (record or {}).get("space_versions") or []
    if kept:
        return versions.from_json(kept[-1]["distributions"])
    found = {}
    for t in study or []:
        if records.WARM_FROM not in t.user_attrs:
            found.update(t.distributions)
    return found


def history(record: dict | None, study: list | None, dists: dict) -> list[dict]:
    """The record's ``space_versions`` with ``dists`` as its newest: the same list when the
    space is unchanged; a first version numbering the study's trials from 0 when the record has
    none."""
    kept = list((record or {}).get("space_versions") or [])
    if not kept and study:  # what its trials drew: some branches of a space, maybe not all
        seen = previous(None, study)
        same = all(dists.get(k) == d for k, d in seen.items())
        kept = [{"version": 1, "distributions": versions.to_json(dists if same else seen),
                 "from_trial": 0}]  # fmt: skip
    now = versions.to_json(dists)
    if kept and kept[-1]["distributions"] == now:
        return kept
    return [*kept, {"version": len(kept) + 1, "distributions": now,
                    "from_trial": len(study or [])}]  # fmt: skip


def check(storage: str, cells: list[Cell], budget: Budget, study_url: str | None,
          damaged_ok: bool = False) -> None:  # fmt: skip
    """Refusal when a cell the storage holds would go on under a space that its study cannot
    hold (search_spaces.versions.changes); writes nothing. ``damaged_ok``: a study that cannot
    be read (a journal's damaged tail, repaired under the lease: checked again then) is
    compared through its cell record alone."""
    for cell in cells:
        record = store.cell_record(storage, cell.name)
        if record is not None and record.get("sampler") == "grid":
            continue  # a grid replays the authors' grid, not the space
        try:
            study = records.study_trials(storage, cell.name, study_url)
        except damage.Damaged:
            if not damaged_ok:
                raise
            study = None
        was = previous(record, study)
        _, refused = versions.changes(was, current(cell, budget))
        if refused:
            raise Refusal(
                f"cell {cell.name}: its search space changed in a way one Optuna study cannot "
                f"hold ({'; '.join(refused[:2])}): sweep it into a new --storage with "
                f"--warm-start {storage}, which carries its trials over where they fit"
            )



def kept(record: dict | None) -> list[dict]:
    """The space versions a cell record keeps ([] for a record from before them)."""
    return list((record or {}).get("space_versions") or [])


def changed(kept_versions: list[dict]) -> list[str]:
    """What changed from the second newest version to the newest."""
    was, now = (versions.from_json(v["distributions"]) for v in kept_versions[-2:])
    return versions.changes(was, now)[0]
