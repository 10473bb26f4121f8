"""Each cell's search as figures: ``python -m results plot <paper>``.

    cell_figures(storage, sweep, trials, curves, study_url) -> ({kind: PNG bytes}, [why lines])
    coverage(storage, tables, trials) -> (cells, [lines])   the paper's cells held, and what is not

Per cell (one sweep) three figures: ``curves`` (validation loss against epoch, a line per trial:
pruned trials faded, errored ones dashed, the winner bold), ``history`` (each trial's best
validation loss in order of start, coloured by status, with the best-so-far over completed trials)
and ``importances`` (Optuna's, over the cell study's COMPLETE trials; results.records). Only the
search's trials are drawn (a trial row whose ``role`` is "seed" re-trains the winner). The winner
is results.selection.winners': the best-by-validation completed trial.

A y-axis covers what a reader compares (completed trials after their first epoch) and says in a
note what it leaves out, so that one diverging first epoch does not flatten every other curve.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib
import numpy as np
import pandas as pd

matplotlib.use("Agg")  # files only: no display on a cluster node or in CI
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from results import records, store  # noqa: E402
from results.plots import png  # noqa: E402
from results.selection import winners  # noqa: E402

if TYPE_CHECKING:
    from results.papers import PaperTable

LOSS = "validation loss (−ELBO, nats per example)"
SIZE = (7.0, 4.5)  # inches; at 120 dpi, 840 x 540 pixels
STYLE = {  # drawing order: pruned behind, the winner on top
    "pruned": dict(color="0.55", alpha=0.45, lw=1.0, ls="-"),
    "errored": dict(color="C3", alpha=0.8, lw=1.2, ls="--"),
    "completed": dict(color="C0", alpha=0.85, lw=1.3, ls="-"),
}
POINTS = {"pruned": "o", "errored": "X", "completed": "o"}
WINNER = dict(color="C1", lw=2.8, ls="-", zorder=5)
plt.rcParams.update({"font.size": 10, "axes.titlesize": 10, "legend.fontsize": 9})


def searched(trials: pd.DataFrame) -> pd.DataFrame:
    """The search's trials (``role`` absent or NaN counts as a search trial)."""
    if trials.empty or "role" not in trials.columns:
        return trials
    return trials[trials["role"].fillna("search") == "search"]


def y_range(cores: list, every, share: float = 0.95) -> tuple[float, float, bool, str | None]:
    """(low, high, log, note) of a y-axis: the lowest of ``every`` always shown, the top at the
    largest value (95th percentile from 20 values on) of the first of ``cores`` that has two
    distinct values (else of ``every``), raised to take in what at most doubles the range; log
    only for positive values spanning a factor > 30."""
    every = np.asarray(every, dtype=float)
    every = every[np.isfinite(every)]
    if not len(every):
        return 0.0, 1.0, False, None
    finite = [c[np.isfinite(c)] for c in (np.asarray(c, dtype=float) for c in cores)]
    core = next((c for c in finite if len(np.unique(c)) >= 2), every)
    lo = float(every.min())
    hi = max(float(np.percentile(core, share * 100) if len(core) >= 20 else core.max()), lo)
    hi = float(every[every <= 2 * hi - lo].max())  # what at most doubles the range stays in
    log = lo > 0 and hi / lo > 30
    pad = 0.05 * (hi - lo) or 0.05 * abs(lo) or 1.0
    lo, hi = (lo / 1.15, hi * 1.15) if log else (lo - pad, hi + pad)
    above = int((every > hi).sum())
    note = (f"y-axis cut at {hi:.4g}: {above} higher value{'s' * (above > 1)} marked ^ on the "
            f"top edge (up to {every.max():.4g})")  # fmt: skip
    return lo, hi, log, note if above else None


def within_fence(values, k: float = 3.0) -> np.ndarray:
    """The values below Tukey's far-out fence (q3 + k IQR): all but wild outliers."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 4:
        return v
    q1, q3 = np.percentile(v, [25, 75])
    return v[v <= q3 + k * (q3 - q1)]


def finish(fig, ax, title: str, notes: list[str]) -> bytes:
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if notes:
        fig.text(0.01, 0.01, "\n".join(notes), fontsize=9, color="0.3", va="bottom")
    fig.tight_layout(rect=(0, 0.045 * len(notes), 1, 1))
    return png(fig)


def status_legend(ax, counts: dict[str, int], winner: str | None, extra: list, points=False):
    """A legend entry per status present (a line, or with ``points`` a marker as drawn)."""

    def entry(s: str, n: int) -> Line2D:
        if not points:
            return Line2D([], [], **STYLE[s], label=f"{s} ({n})")
        face = "none" if s == "pruned" else STYLE[s]["color"]
        return Line2D([], [], ls="", marker=POINTS[s], ms=7, mfc=face, mec=STYLE[s]["color"],
                      label=f"{s} ({n})")  # fmt: skip

    handles = [entry(s, n) for s, n in counts.items() if n]
    if winner:
        star = dict(ls="", color="C1") if points else WINNER
        handles.append(Line2D([], [], **star, marker="*", ms=12, label=winner))
    ax.legend(handles=handles + extra, loc="best", framealpha=0.9)


def curves_figure(cell: str, trials: pd.DataFrame, curves: pd.DataFrame, win) -> bytes:
    """Validation loss against epoch, a line per trial; ``win`` is the winner's row or None."""
    fig, ax = plt.subplots(figsize=SIZE)
    curves = curves.dropna(subset=["val_loss"]).sort_values("epoch")
    status = dict(zip(trials["trial_id"], trials["status"], strict=True))
    counts = {s: 0 for s in STYLE}
    later, done, settled = [], [], []  # y-range candidates, most telling first (y_range)
    markers, long = curves["epoch"].nunique() <= 20, curves["epoch"].nunique() >= 4
    for s in STYLE:
        for _, c in curves[curves["trial_id"].map(status) == s].groupby("trial_id"):
            counts[s] += 1
            ax.plot(c["epoch"], c["val_loss"], **STYLE[s], marker="o" if markers else None, ms=3)
            after = [*c["val_loss"].iloc[1:], c["val_loss"].min()]
            settled += after
            if s == "completed":
                later, done = later + after * long, done + list(c["val_loss"])
    label = None
    if win is not None and (mine := curves[curves["trial_id"] == win["trial_id"]]).size:
        ax.plot(mine["epoch"], mine["val_loss"], **WINNER)
        best = mine.loc[mine["val_loss"].idxmin()]
        ax.plot(best["epoch"], best["val_loss"], marker="*", ms=14, color="C1", zorder=6)
        label = f"winner {win['trial_id']}: {best['val_loss']:.5g} at epoch {int(best['epoch'])}"
    lo, hi, log, note = y_range([later, done, settled], curves["val_loss"])
    ax.set_yscale("log" if log else "linear")
    ax.set_ylim(lo, hi)
    for s in STYLE:  # a value above the axis: a mark on its top edge, so the trial is seen
        up = curves[(curves["trial_id"].map(status) == s) & (curves["val_loss"] > hi)]
        ax.scatter(up["epoch"], np.full(len(up), hi), marker="^", s=30, color=STYLE[s]["color"],
                   clip_on=False, zorder=4)  # fmt: skip
    status_legend(ax, counts, label, [])
    ax.set_xlabel("epoch")
    ax.set_ylabel(LOSS)
    drawn = sum(counts.values())
    notes = [n for n in [note] if n] + ["no completed trial: no winner to mark"] * (win is None)
    if len(trials) > drawn:
        notes.append(f"{len(trials) - drawn} of its {len(trials)} trials left no curve rows")
    title = f"{cell}\nlearning curves of its {drawn} search trials (pruned faded, errored dashed)"
    return finish(fig, ax, title, notes)


def history_figure(cell: str, trials: pd.DataFrame, win) -> bytes:
    """Each trial's best validation loss in order of start, and the best so far."""
    fig, ax = plt.subplots(figsize=SIZE)
    order = trials.sort_values(["started_at", "trial_id"], na_position="last")
    x = np.arange(1, len(order) + 1)
    y = order["best_val_loss"].to_numpy(dtype=float)
    done = (order["status"] == "completed").to_numpy()
    lo, hi, log, note = y_range([within_fence(y), y[done]], y)
    ax.set_yscale("log" if log else "linear")
    extra = []
    for s, style in STYLE.items():
        here = (order["status"] == s).to_numpy()
        face = style["color"] if s != "pruned" else "none"
        ax.scatter(x[here], y[here], s=40, marker=POINTS[s], facecolors=face,
                   edgecolors=style["color"], zorder=3)  # fmt: skip
        up = here & (y > hi)  # above the axis: a mark on its top edge
        ax.scatter(x[up], np.full(up.sum(), hi), marker="^", s=40, color=style["color"],
                   clip_on=False, zorder=3)  # fmt: skip
        lost = here & ~np.isfinite(y)
        if lost.any():  # a trial that ended before any validation loss: a mark at the bottom
            ax.scatter(x[lost], np.full(lost.sum(), lo), marker="v", s=50, color=style["color"],
                       clip_on=False, zorder=3)  # fmt: skip
            extra.append(Line2D([], [], color=style["color"], marker="v", ls="",
                                label=f"{s}, no loss ({lost.sum()}; bottom edge)"))  # fmt: skip
    best_so_far = pd.Series(np.where(done, y, np.nan)).cummin().ffill().to_numpy()
    if np.isfinite(best_so_far).any():
        reach = np.append(x, len(x) + 0.4)  # to the right edge: a last trial's step shows
        ax.step(reach, np.append(best_so_far, best_so_far[-1]), where="post", color="k", lw=1.6,
                zorder=2)  # fmt: skip
        extra.append(Line2D([], [], color="k", lw=1.6, label="best so far (completed trials)"))
    label = None
    if win is not None:
        at = int(np.flatnonzero((order["trial_id"] == win["trial_id"]).to_numpy())[0]) + 1
        ax.plot(at, win["best_val_loss"], marker="*", ms=16, color="C1", zorder=4, ls="")
        label = f"winner {win['trial_id']} (trial {at}): {win['best_val_loss']:.5g}"
    ax.set_ylim(lo, hi)
    ax.set_xlim(0.5, len(order) + 0.5)
    counts = order["status"].value_counts().to_dict()
    status_legend(ax, {s: counts.get(s, 0) for s in STYLE}, label, extra, points=True)
    ax.set_xlabel("trial (in order of start)")
    ax.set_ylabel(f"best {LOSS}")
    title = f"{cell}\nsearch history: each trial's best validation loss (pruned: hollow)"
    return finish(fig, ax, title, [n for n in [note] if n])


def importances_figure(cell: str, imp: records.Importances) -> bytes:
    """Horizontal bars, the most important hyperparameter on top."""
    names, shares = list(imp.values)[::-1], list(imp.values.values())[::-1]
    fig, ax = plt.subplots(figsize=(SIZE[0], max(3.0, 0.42 * len(names) + 1.9)))
    ax.barh(names, shares, color="C0")
    for i, v in enumerate(shares):
        ax.text(v, i, f" {v:.2f}", va="center", fontsize=9)
    ax.set_xlim(0, max(shares) * 1.15)
    ax.set_xlabel(f"importance (share of the total; {imp.evaluator})")
    ax.tick_params(axis="y", labelsize=9)
    few = "; few trials: a rough guide" if imp.completed < 10 else ""
    title = (
        f"{cell}\nOptuna hyperparameter importances ({imp.evaluator}) over its "
        f"{imp.completed} COMPLETE trials\n(pruned and errored trials left out{few})"
    )
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return png(fig)


def cell_figures(
    storage: str, sweep: str, trials: pd.DataFrame, curves: pd.DataFrame, study_url: str | None
) -> tuple[dict[str, bytes], list[str]]:
    """The figures of one cell by kind, and a line for each thing it could not draw or mark.
    ``trials`` and ``curves``: the cell's rows (all of them; only search trials are drawn)."""
    trials = searched(trials)
    if trials.empty:
        return {}, [
            "no trial rows in the storage, though it holds the cell's record, study or "
            "Tune folder (no trial has ended yet, or its rows were removed)"
        ]
    curves = curves[curves["trial_id"].isin(trials["trial_id"])] if not curves.empty else curves
    best = winners(trials, trials["paper"].iloc[0])
    win = best.iloc[0] if not best.empty else None
    counts = trials["status"].value_counts().to_dict()
    lines = []
    if win is None:
        only = "only pruned" if set(counts) == {"pruned"} else "no completed"
        lines.append(f"{only} trials ({len(trials)}): no winner to mark")
    if n := counts.get("errored", 0):
        why = str(trials.loc[trials["status"] == "errored", "reason"].iloc[0])[:100]
        lines.append(f"{n} errored trial{'s' * (n > 1)} (dashed in the curves; the first: {why})")
    figures = {}
    if curves.empty or curves["val_loss"].notna().sum() == 0:
        lines.append("no curve rows: no learning curves to draw")
    else:
        figures["curves"] = curves_figure(sweep, trials, curves, win)
    figures["history"] = history_figure(sweep, trials, win)
    completed = set(trials.loc[trials["status"] == "completed", "trial_id"])
    imp = records.importances(storage, sweep, study_url, completed)
    if isinstance(imp, str):
        lines.append(f"no importances: {imp}")
    else:
        figures["importances"] = importances_figure(sweep, imp)
    return figures, lines


def recorded(storage: str, sweep: str) -> tuple:
    """(paper, family, dataset, likelihood) of a cell's record (Nones for a cell without)."""
    cell = (store.cell_record(storage, sweep) or {}).get("cell", {})
    return tuple(cell.get(k) for k in ("paper", "family", "dataset", "likelihood"))


def coverage(
    storage: str, tables: list[PaperTable], trials: pd.DataFrame
) -> tuple[list[str], list[str]]:
    """(the cells of these tables the storage holds, lines on what their tables have no rows
    for). A cell counts when its rows, its record, or (by name) its study or Tune folder say it
    is of one of the papers; the sweep's own list of cells (sweeps/) is not read here."""
    keys = {t.key for t in tables}
    rows = trials[trials["paper"].isin(keys)] if not trials.empty else trials
    cells = set(rows["sweep"]) if not rows.empty else set()
    started = set()  # (family, dataset, likelihood) of the cells with a record
    for s in store.sweeps(storage):
        paper, *combo = recorded(storage, s)
        paper = paper or next((k for k in keys if s.startswith(k + "-")), None)
        cells |= {s} if paper in keys else set()
        started |= {tuple(combo)} if paper in keys else set()
    lines = []
    for t in tables:
        mine = rows[rows["paper"] == t.key] if not rows.empty else rows
        if mine.empty:
            held = sorted(set(trials["paper"])) if not trials.empty else []
            lines.append(f"no rows for {t.key}: the storage holds trial rows of papers {held}")
            continue
        have = set(zip(mine["family"], mine["dataset"], mine["likelihood"], strict=True))
        places = sorted({(d, lk) for _, d, lk in have} & set(t.datasets))
        absent = [f"{f} on {d} ({lk})" for d, lk in places for f in t.models
                  if "/" not in f and (f, d, lk) not in have | started]  # fmt: skip
        if absent:
            lines.append(f"no rows for {', '.join(absent)}: {t.key}'s table has a place for them")
        families = sorted({f for f, _, _ in have})
        datasets = sorted({f"{d} ({lk})" for _, d, lk in have})
        others = sorted({d for d, _ in t.datasets} - {d for _, d, _ in have})
        none = f"; none on {others}" if others else ""
        lines.append(f"{t.key}: rows for families {families} on {datasets}{none}")
    return sorted(cells), lines
