"""Which trials stand for a cell in a table: its winner under a selection rule, the winner's
training runs (its search run and its re-trainings with other seeds), their statistics over
those runs and what the cell cost. Plain pandas over the Parquet rows (results.rows).

    winners(trials, paper)              best-by-validation completed search trial per cell
    chosen(trials, table, selection)    the winners under "validation" or "param-cap", and notes
    training_runs(trials, winner)       the winner's row, then its completed re-trainings
    over_seeds(runs, evals, column)     mean, s.d., n over the runs; the IS s.d. within a run
    cost(trials, evals, column)         hours of GPU or CPU the cell's rows held
"""

from __future__ import annotations

import pandas as pd

from results.papers import PAPERS, PaperTable
from results.rows import SEARCH, SEED


def winners(trials: pd.DataFrame, paper: str) -> pd.DataFrame:
    """The best-by-validation completed search trial of each cell of a paper (never chosen on
    test; a re-training of a winner with another seed never competes)."""
    if trials.empty:
        return trials
    done = trials[
        (trials["paper"] == paper) & (trials["status"] == "completed") & (trials["role"] == SEARCH)
    ]
    done = done[done["best_val_loss"].notna()]
    return done.loc[done.groupby("sweep")["best_val_loss"].idxmin()].reset_index(drop=True)


SELECTIONS = ("validation", "param-cap")
"""How a cell's winner is chosen: best validation loss (the default), or under a parameter cap
for the families a table caps (PaperTable.caps; the SPVAE authors' apparent second rule)."""


def setting(frame: pd.DataFrame, row: pd.Series) -> pd.Series:
    """Rows of ``frame`` on the same dataset setting as ``row`` (dataset, likelihood, variant,
    protocol)."""
    keys = ("dataset", "likelihood", "variant", "protocol")
    return pd.concat([frame[k] == row[k] for k in keys], axis=1).all(axis=1)


def capped_winners(trials: pd.DataFrame, table: PaperTable) -> tuple[pd.DataFrame, list[str]]:
    """The winners under ``--selection param-cap`` and a note per capped cell: a family in
    table.caps wins with its best-by-validation completed search trial whose n_parameters is at
    most the smallest n_parameters of the capping families' winners on the same setting; every
    other cell keeps its best-by-validation winner. A cell whose cap is unknown (a capping cell
    missing) or that has no trial under it has no winner, and its note says why."""
    best = pd.concat([winners(trials, p) for p in (table.key, *table.include_papers)])
    if best.empty or not table.caps:
        return best, []
    keep, notes = [], []
    for _, w in best.iterrows():
        cappers = table.caps.get(w["family"])
        if not cappers:
            keep.append(w)
            continue
        others = best[setting(best, w) & best["family"].isin(cappers)]
        sizes = others["n_parameters"].where(others["n_parameters"] >= 0).dropna()
        if len(sizes) < len(cappers):
            need = " and ".join(cappers)
            notes.append(f"{w['sweep']}: no winner under the cap: it needs the selected "
                         f"{need} of its setting ({len(sizes)} found)")  # fmt: skip
            continue
        cap = int(sizes.min())
        mine = trials[(trials["sweep"] == w["sweep"]) & (trials["role"] == SEARCH)]
        pool = mine[(mine["status"] == "completed") & mine["best_val_loss"].notna()]
        pool = pool[(pool["n_parameters"] >= 0) & (pool["n_parameters"] <= cap)]
        if pool.empty:
            notes.append(f"{w['sweep']}: no completed trial has at most {cap:,} parameters")
            continue
        pick = pool.loc[pool["best_val_loss"].idxmin()]
        same = (
            "the best-by-validation trial"
            if pick["trial_id"] == w["trial_id"]
            else (f"not the best-by-validation {w['trial_id']} ({int(w['n_parameters']):,})")
        )
        notes.append(f"{w['sweep']}: trial {pick['trial_id']} ({int(pick['n_parameters']):,} "
                     f"parameters <= cap {cap:,}), {same}")  # fmt: skip
        keep.append(pick)
    return pd.DataFrame(keep).reset_index(drop=True), notes


def chosen(trials: pd.DataFrame, table: PaperTable, selection: str) -> tuple[pd.DataFrame, list]:
    """(the winners of the table's cells under ``selection``, notes on how they were chosen)."""
    if selection == "validation":
        return pd.concat([winners(trials, p) for p in (table.key, *table.include_papers)]), []
    if selection != "param-cap":
        raise ValueError(f"unknown selection {selection!r}; choose one of {list(SELECTIONS)}")
    if not table.caps:
        capped = sorted(k for k, t in PAPERS.items() if t.caps)
        raise ValueError(f"table {table.key} has no parameter-cap rule; tables with one: {capped}")
    best, notes = capped_winners(trials, table)
    rule = (f"selection: param-cap (docs/specs/spvae.md#6-search-space-and-model-selection): "
            f"{', '.join(table.caps)} chosen as the "
            "best validation among trials with no more parameters than the smallest selected "
            f"{' / '.join(sorted({f for c in table.caps.values() for f in c}))} of the same "
            "setting; the others by best validation")  # fmt: skip
    return best, [rule, *notes]


def training_runs(trials: pd.DataFrame, winner: pd.Series) -> pd.DataFrame:
    """The winner's row, then its completed re-trainings with other seeds (sweeps.engine.seeds)."""
    seeds = trials[
        (trials["role"] == SEED)
        & (trials["seed_of"] == winner["trial_id"])
        & (trials["status"] == "completed")
    ]
    return pd.concat([winner.to_frame().T, seeds], ignore_index=True)


def over_seeds(runs: pd.DataFrame, evals: pd.DataFrame, column: str) -> dict:
    """A metric of the training runs: each run's mean over its importance-sampling seeds, then
    mean, s.d. and n over the runs; and the pooled s.d. over IS seeds within a run (``is_sd``,
    NaN unless every run has >= 2 IS seeds; ``is_n``: the fewest IS seeds of a run)."""
    mine = evals[evals["trial_id"].isin(runs["trial_id"])] if not evals.empty else evals
    if mine.empty or column not in mine:
        return {"mean": None, "std": None, "n": 0, "k": None, "is_sd": None, "is_n": 0}
    by_run = mine.dropna(subset=[column]).groupby("trial_id")[column]
    means, variances, counts = by_run.mean(), by_run.var(), by_run.count()
    if means.empty:
        return {"mean": None, "std": None, "n": 0, "k": None, "is_sd": None, "is_n": 0}
    pooled = variances.mean() ** 0.5 if counts.min() >= 2 else None
    return {"mean": means.mean(), "std": means.std(), "n": len(means), "k": int(mine["k"].max()),
            "is_sd": pooled, "is_n": int(counts.min())}  # fmt: skip


def cost(trials: pd.DataFrame, evals: pd.DataFrame, column: str) -> float | None:
    """Hours of ``column`` (gpu_seconds, cpu_seconds) that a cell's trials (search and
    re-trainings) and evaluations held; None when its rows do not record it."""
    parts = [f[column] for f in (trials, evals) if not f.empty and column in f]
    total = pd.concat(parts).sum(min_count=1) if parts else float("nan")
    return None if pd.isna(total) else total / 3600
