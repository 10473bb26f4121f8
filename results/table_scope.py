"""What a printed table covers, said under it: the datasets the storage has results for (the
paper's other datasets left out unless asked for), and the cells whose search ranked nothing.

    with_results(long, table, all_datasets)   (the long frame cut to our datasets, the note)
    unranked_note(trials, long)                the cells too small to rank, as one note line
    search_notes(storage, long)                cells searched under several versions of their
                                               space, or warm-started from another sweep

A cell ranked its configurations when its search completed at least RANKED trials with a
validation loss and at least RANKED different configurations among them (the flat config apart
from ``train/seed``): only then is its winner the best of several, not the one it could be. A
pruned trial does not count: it was stopped on a partial budget, and the winner is chosen among
completed trials alone (results.selection.winners).
"""

from __future__ import annotations

import json

import pandas as pd

from results import store
from results.papers import PaperTable
from results.rows import SEARCH

RANKED = 2
"""The completed search trials, of as many configurations, a cell needs to have ranked any."""


def with_results(
    long: pd.DataFrame, table: PaperTable, all_datasets: bool
) -> tuple[pd.DataFrame, list[str]]:
    """The long frame (tables.numbers) cut to the datasets with a number of ours, and a note
    naming the paper's datasets so left out; ``all_datasets``: as it is, no note."""
    ours = set(long.loc[long["who"] == "ours", "dataset"])
    left_out = list(dict.fromkeys(long.loc[~long["dataset"].isin(ours), "dataset"]))
    if all_datasets or not left_out:
        return long, []
    note = (
        f"paper numbers for {', '.join(left_out)} not shown: no results here; "
        f"`python -m results table {table.key} --all-datasets` shows them"
    )
    return long[long["dataset"].isin(ours)].reset_index(drop=True), [note]


def configuration(row: pd.Series) -> str:
    """A trial's configuration apart from its seed (its trial id when the row holds none)."""
    text = row.get("config_json")
    if not isinstance(text, str) or not text:
        return f"trial {row['trial_id']}"
    return json.dumps({k: v for k, v in json.loads(text).items() if k != "train/seed"},
                      sort_keys=True)  # fmt: skip


def ranked(trials: pd.DataFrame, sweep: str) -> tuple[int, int, int]:
    """(completed search trials with a validation loss, their different configurations, all
    search trials) of one cell."""
    search = trials[(trials["sweep"] == sweep) & (trials["role"] == SEARCH)]
    done = search[(search["status"] == "completed") & search["best_val_loss"].notna()]
    configs = {configuration(r) for _, r in done.iterrows()}
    return len(done), len(configs), len(search)


def unranked_note(trials: pd.DataFrame, long: pd.DataFrame) -> list[str]:
    """One note line naming the cells of the table whose search ranked nothing (see the module
    docstring), or saying that none of them did; none when every cell ranked."""
    cells = list(dict.fromkeys(long.loc[long["who"] == "ours", "source"].dropna()))
    if trials.empty or not cells:
        return []
    small = {}
    for sweep in cells:
        done, configs, tried = ranked(trials, sweep)
        if done < RANKED or configs < RANKED:
            small[sweep] = f"{done} of {tried} search trials completed" + (
                f", {configs} configuration" if done >= RANKED else ""
            )
    if not small:
        return []
    rule = (
        f"fewer than {RANKED} completed search trials of different configurations: the winner "
        "there is the only configuration it could be, not the best of several"
    )
    listed = "; ".join(f"{sweep} ({why})" for sweep, why in small.items())
    if len(small) == len(cells):
        return [f"too small to rank: no cell ranked anything ({rule}; a budget with more trials "
                f"per cell ranks them): {listed}"]  # fmt: skip
    return [f"too small to rank: {len(small)} of {len(cells)} cells ({rule}): {listed}"]


def search_notes(storage: str, long: pd.DataFrame) -> list[str]:
    """A line for each cell of the table whose search was not one search of one space: searched
    under several versions of its space (its record's ``space_versions``: sweeps.engine.spaces)
    or warm-started from another sweep's cell (its ``warm_start``: sweeps.engine.warm_start)."""
    out = []
    for sweep in dict.fromkeys(long.loc[long["who"] == "ours", "source"].dropna()):
        record = store.cell_record(storage, sweep) or {}
        kept = record.get("space_versions") or []
        if len(kept) > 1:
            spans = ", ".join(f"v{v['version']} from Optuna trial {v['from_trial']}" for v in kept)
            out.append(f"{sweep}: searched under {len(kept)} versions of its space ({spans})")
        if warm := record.get("warm_start"):
            other = f" (another dataset: {warm['dataset']})" if warm.get("dataset") else ""
            n, m = warm.get("queued", warm["best"]), warm.get("informing", "its")
            out.append(f"{sweep}: warm-started from {warm['storage']}: {warm['cell']}{other}; its "
                       f"best {n} configuration{'s' * (n != 1)} ran first here, {m} completed "
                       "trials informed the sampler")  # fmt: skip
    return out
