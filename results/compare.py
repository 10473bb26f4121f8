"""The equal-budget comparison of a paper's families: ``python -m results compare <paper>``.

Per dataset setting (dataset, likelihood, protocol), one row per cell (family x variant): its
test log-likelihood over training runs (selection.over_seeds), the budget it got (its search trials
by status, the epochs of all its trial rows, GPU- and CPU-hours: selection.cost), and Welch's t-test
of its per-run values against those of the setting's best row (the highest mean). Per setting, an
anytime figure: the best validation loss so far against the cumulative cost of the cell's search,
a line per cell, which shows whether a ranking is an artefact of budget.

    comparison(storage, table) -> (rows, absent)  rows: one dict per cell (COLUMNS + "values")
    welch(values, best) -> (t, df, p)             Welch's t-test, two-sided
    anytime(search, column) -> (x, y)             cumulative hours, best-so-far validation loss
    anytime_lines(storage, rows)                  a setting's lines: legend entry (model, T), x, y
    anytime_figure(title, lines, label, notes)    PNG bytes
    write(storage, table) -> (markdown, paths)    the tables and figures under the storage
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
from scipy import stats

from results import samples, store
from results.papers import PaperTable
from results.rows import SEARCH
from results.selection import cost, over_seeds, training_runs, winners
from results.tables import model_label, row_order

LL = "test_log_likelihood"
ALPHA = 0.05
"""A row is "worse" than the best when Welch's two-sided p is below this."""
SETTING = ["dataset", "likelihood", "protocol"]
COLUMNS = [*SETTING, "setting", "model", "family", "variant", "sweep", "n", "ll_mean", "ll_std",
           "k", "search_completed", "search_pruned", "search_errored", "epochs", "gpu_hours",
           "cpu_hours", "t", "df", "p", "verdict", "note"]  # fmt: skip
"""The CSV's columns: one row per cell (and per cell the table has a place for but no rows)."""
RESOURCES = {
    "gpu_seconds": "cumulative GPU-hours",
    "cpu_seconds": "cumulative CPU core-hours (no GPU used)",
    "wall_seconds": "cumulative trial-hours, wall clock (no GPU used; CPU not recorded)",
}
"""The anytime figure's x axis: the first column with a positive value in the setting's rows."""
NOTES = (
    "n: training runs (the search's winner and its re-trainings with other seeds); LL: each "
    "run's test log-likelihood averaged over its importance-sampling seeds, then mean ± s.d. over "
    "runs, k importance samples; search trials: completed/pruned/errored; epochs: of all the "
    "cell's trial rows (search and re-trainings); GPU-h, CPU core-h: what its trials and "
    "evaluations held (–: not recorded); t, df, p: Welch's t-test (unequal variances, "
    f"two-sided) of the row's per-run values against the best row's; worse when p < {ALPHA}."
)


def setting_label(table: PaperTable, dataset: str, likelihood: str, protocol: str | None) -> str:
    """ "Fashion-MNIST: fashion_mnist (gaussian)", and the protocol unless it is the project's."""
    label = table.datasets.get((dataset, likelihood), dataset)
    text = f"{label}: {dataset} ({likelihood})"
    return text if protocol in (None, "project") else f"{text}, protocol {protocol}"


def setting_order(setting: tuple, table: PaperTable) -> tuple:
    """The table's dataset order, then any other setting by name; the project's protocol first."""
    declared = list(table.datasets)
    place = (setting[0], setting[1])
    first = declared.index(place) if place in declared else len(declared)
    return (first, *place, setting[2] != "project", setting[2])


def expected_cells(table: PaperTable) -> dict[tuple[str, str], str]:
    """(paper, family) -> label of every model row the table has a place for."""
    return {
        (tuple(key.split("/", 1)) if "/" in key else (table.key, key)): label
        for key, label in table.models.items()
    }


def short(reason, width: int = 100) -> str:
    text = str(reason).strip() if isinstance(reason, str) and reason.strip() else "no reason given"
    return text if len(text) <= width else text[: width - 1] + "…"


def top_reason(search: pd.DataFrame) -> tuple[int, str]:
    """(how many search trials errored, their most frequent reason)."""
    errored = search[search["status"] == "errored"]
    if errored.empty:
        return 0, ""
    return len(errored), errored["reason"].map(short).value_counts().index[0]


def errored_note(search: pd.DataFrame) -> str:
    """ "2 errored: <the most frequent reason>", or "" when none errored."""
    count, reason = top_reason(search)
    return f"{count} errored: {reason}" if count else ""


def no_winner_note(trials: pd.DataFrame) -> str:
    """Why a cell with rows has no winner: only pruned trials, errored ones, or neither."""
    search = trials[trials["role"] == SEARCH]
    pruned = int((search["status"] == "pruned").sum())
    count, reason = top_reason(search)
    if count:
        also = f", {pruned} pruned" if pruned else ""
        return f"errored trials: {reason} ({count} errored{also})"
    if pruned:
        return f"only pruned trials ({pruned})"
    return "no completed search trial with a validation loss"


def run_values(runs: pd.DataFrame, evals: pd.DataFrame) -> list[float]:
    """Each training run's test log-likelihood averaged over its IS seeds (over_seeds of one)."""
    means = [over_seeds(runs.iloc[[i]], evals, LL)["mean"] for i in range(len(runs))]
    return [float(m) for m in means if m is not None]


def cell_row(table: PaperTable, trials: pd.DataFrame, evals: pd.DataFrame) -> dict:
    """One cell's row: who it is, its budget, and its LL over training runs (n = 0 with a note
    when it has no winner or no evaluation)."""
    first = trials.iloc[0]
    search = trials[trials["role"] == SEARCH]
    counts = search["status"].value_counts()
    mine = evals[evals["trial_id"].isin(trials["trial_id"])] if not evals.empty else evals
    row = {
        **{k: first[k] for k in SETTING},
        "model": model_label(table, first["paper"], first["family"]),
        "family": first["family"],
        "variant": table.variants.get(first["variant"], first["variant"]),
        "sweep": first["sweep"],
        **{f"search_{s}": int(counts.get(s, 0)) for s in ("completed", "pruned", "errored")},
        "epochs": int(pd.to_numeric(trials["epochs"], errors="coerce").fillna(0).sum()),
        "gpu_hours": cost(trials, mine, "gpu_seconds"),
        "cpu_hours": cost(trials, mine, "cpu_seconds"),
        "n": 0, "values": [], "note": errored_note(search),
    }  # fmt: skip
    best = winners(trials, first["paper"])
    if best.empty:
        return {**row, "note": no_winner_note(trials)}
    runs = training_runs(trials, best.iloc[0])
    ll = over_seeds(runs, mine, LL)
    if not ll["n"]:
        return {**row, "note": "; ".join(filter(None, ["not evaluated", row["note"]]))}
    return {**row, "n": ll["n"], "ll_mean": ll["mean"], "ll_std": ll["std"], "k": ll["k"],
            "values": run_values(runs, mine)}  # fmt: skip


def welch(values: list[float], best: list[float]) -> tuple[float, float, float]:
    """Welch's t of ``values`` against ``best`` (t < 0: a lower mean), its Welch–Satterthwaite
    degrees of freedom and the two-sided p (NaN when neither has any spread)."""
    result = stats.ttest_ind(values, best, equal_var=False)
    return float(result.statistic), float(result.df), float(result.pvalue)


def with_tests(rows: list[dict]) -> list[dict]:
    """The rows of one setting with t, df, p and a verdict against its best (highest mean)."""
    evaluated = [r for r in rows if r["n"]]
    if not evaluated:
        return [{**r, "verdict": ""} for r in rows]
    best = max(evaluated, key=lambda r: r["ll_mean"])
    out = []
    for r in rows:
        if r is best or not r["n"]:
            out.append({**r, "verdict": "best" if r is best else ""})
        elif min(len(r["values"]), len(best["values"])) < 2:
            out.append({**r, "verdict": "n<2: no test"})
        else:
            t, df, p = welch(r["values"], best["values"])
            verdict = (
                "no test: no spread over training runs"
                if np.isnan(p)
                else f"{'worse' if p < ALPHA else 'not distinguishable'} (p={p:.2g})"
            )
            out.append({**r, "t": t, "df": df, "p": p, "verdict": verdict})
    return out


def comparison(storage: str, table: PaperTable) -> tuple[list[dict], list[str]]:
    """(one row per cell of the table's papers in the storage, and per (paper, family) the table
    has a place for but a present setting has no rows of; lines naming the table's dataset
    settings with no cell in the storage)."""
    trials = store.load(storage, "trials")
    papers = (table.key, *table.include_papers)
    mine = trials[trials["paper"].isin(papers)] if not trials.empty else trials
    evals = store.load(storage, "evaluations") if not mine.empty else pd.DataFrame()
    rows = []
    settings = list(mine.groupby(SETTING)) if not mine.empty else []
    settings.sort(key=lambda group: setting_order(group[0], table))
    for (dataset, likelihood, protocol), here in settings:
        found = [cell_row(table, t, evals) for _, t in here.groupby("sweep", sort=True)]
        have = set(zip(here["paper"], here["family"], strict=True))
        found += [
            {"dataset": dataset, "likelihood": likelihood, "protocol": protocol, "model": label,
             "family": family, "variant": "–", "sweep": "", "n": 0, "values": [],
             "note": "no cell in the storage"}
            for (paper, family), label in expected_cells(table).items()
            if (paper, family) not in have
        ]  # fmt: skip
        label = setting_label(table, dataset, likelihood, protocol)
        found.sort(key=lambda r: row_order(r["model"], r["variant"], table))
        rows += [{**r, "setting": label} for r in with_tests(found)]
    ran = set(zip(mine["dataset"], mine["likelihood"], strict=True)) if not mine.empty else set()
    absent = [
        f"{setting_label(table, d, lk, None)}: no cell in the storage"
        for d, lk in table.datasets
        if (d, lk) not in ran
    ]
    return rows, absent


def resource(search: pd.DataFrame) -> str:
    """The cost column of the anytime figure's x axis: GPU seconds when any trial held a GPU,
    else CPU seconds when recorded, else wall seconds (rows from before cpu_seconds)."""
    for column in RESOURCES:
        if column in search and (pd.to_numeric(search[column], errors="coerce") > 0).any():
            return column
    return "wall_seconds"


def anytime(search: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """A cell's search trials in the order they ended: x = the cumulative hours of ``column``
    after each (pruned and errored trials cost too), y = the best validation loss of the
    completed trials so far; from the first completed trial on."""
    order = search.sort_values("ended_at", kind="stable") if "ended_at" in search else search
    held = order[column] if column in order else pd.Series(0.0, index=order.index)
    spent = pd.to_numeric(held, errors="coerce").fillna(0).cumsum() / 3600
    done = pd.to_numeric(order["best_val_loss"], errors="coerce")
    best = done.where(order["status"] == "completed").cummin().ffill()
    keep = best.notna()
    return spent[keep].to_numpy(float), best[keep].to_numpy(float)


def anytime_figure(title: str, lines: list[tuple], xlabel: str, notes: list[str]) -> bytes:
    """PNG bytes: a step line per (label, x, y), a marker where each cell's search ended."""
    import matplotlib.pyplot as plt  # only when drawing

    from results.plots import png

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (label, x, y) in enumerate(lines):  # past 10 lines the colours repeat: the dashes not
        dashes = ("-", "--", ":")[i // 10 % 3]
        ax.step(x, y, where="post", color=f"C{i}", ls=dashes, lw=1.8, label=label)
        ax.plot(x[-1:], y[-1:], marker="o", ms=6, color=f"C{i}")
    ax.set_xlim(left=0)
    ax.set_xlabel(xlabel, fontsize=10)
    ax.set_ylabel("validation loss (−ELBO, nats per example),\nbest so far", fontsize=10)
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    wrapped = [part for note in notes for part in textwrap.wrap(note, 105)]
    if wrapped:
        fig.text(0.01, 0.01, "\n".join(wrapped), fontsize=9, va="bottom")
    fig.tight_layout(rect=(0, min(0.4, 0.045 * len(wrapped)), 1, 1))
    return png(fig)


def cell_name(row: dict) -> str:
    """A cell as the figure names it: its model and variant (T for VLAE, SA-VAE, HF, IAF), the
    variant being what tells a family's cells apart."""
    return row["model"] if row["variant"] in ("-", "–", "") else f"{row['model']} {row['variant']}"


def line_label(row: dict) -> str:
    """A cell's legend entry: its name (cell_name), then what its search ran."""
    trials_run = row["search_completed"] + row["search_pruned"] + row["search_errored"]
    plural = "" if trials_run == 1 else "s"
    return f"{cell_name(row)}: {trials_run} trial{plural}, {row['epochs']} epochs"


def anytime_lines(storage: str, rows: list[dict]) -> tuple[list[tuple], list[str], str]:
    """One setting's lines (legend entry, x, y; no two entries alike), the notes on the cells
    not drawn, and the resource column on x."""
    trials = store.load(storage, "trials")
    search = trials[trials["sweep"].isin([r["sweep"] for r in rows]) & (trials["role"] == SEARCH)]
    column = resource(search)
    lines, undrawn = [], []
    for r in rows:
        x, y = anytime(search[search["sweep"] == r["sweep"]], column)
        if not len(x):
            undrawn.append(r)
            continue
        lines.append((line_label(r), x, y, r["sweep"]))
    labels = [line[0] for line in lines]  # never two entries alike: the cell's name if need be
    lines = [(f"{label} [{sweep}]" if labels.count(label) > 1 else label, x, y)
             for label, x, y, sweep in lines]  # fmt: skip
    why = "; ".join(f"{cell_name(r)} ({r['note']})" for r in undrawn if r["sweep"])
    absent = ", ".join(cell_name(r) for r in undrawn if not r["sweep"])
    notes = [f"not drawn, no completed search trial: {why}"] if why else []
    notes += [f"no cell in the storage: {absent}"] if absent else []
    return lines, notes, column


def figure(storage: str, table: PaperTable, rows: list[dict]) -> tuple[bytes | None, list[str]]:
    """One setting's anytime figure (None when no cell has a completed trial) and its notes."""
    lines, notes, column = anytime_lines(storage, rows)
    if not lines:
        return None, notes
    title = f"{table.key}, {rows[0]['setting']}\nbest validation loss so far against cost"
    return anytime_figure(title, lines, RESOURCES[column], notes), notes


def hours(value) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:.3g}"


def markdown_rows(rows: list[dict], digits: int) -> pd.DataFrame:
    """One setting's rows as printed."""

    def ll(r):
        if not r["n"]:
            return "–"
        text = f"{r['ll_mean']:.{digits}f}"
        return text + (f" ± {r['ll_std']:.{digits}f}" if r["n"] >= 2 else "")

    def number(r, key, fmt):
        return "–" if pd.isna(r.get(key, np.nan)) else format(r[key], fmt)

    return pd.DataFrame({
        "Model": [r["model"] for r in rows],
        "Variant": [r["variant"] for r in rows],
        "n": [r["n"] for r in rows],
        "LL": [ll(r) for r in rows],
        "k": [r.get("k") or "–" for r in rows],
        "search trials (completed/pruned/errored)": [
            f"{r['search_completed']}/{r['search_pruned']}/{r['search_errored']}" if r["sweep"]
            else "–" for r in rows],
        "epochs": [r["epochs"] if r["sweep"] else "–" for r in rows],
        "GPU-h": [hours(r.get("gpu_hours")) for r in rows],
        "CPU core-h": [hours(r.get("cpu_hours")) for r in rows],
        "t": [number(r, "t", ".3f") for r in rows],
        "df": [number(r, "df", ".2f") for r in rows],
        "p": [number(r, "p", ".3g") for r in rows],
        "vs best": [r["verdict"] or "–" for r in rows],
        "note": [r["note"] or "" for r in rows],
    })  # fmt: skip


def write(storage: str, table: PaperTable) -> tuple[str, list[str]]:
    """The comparison as Markdown (returned and written to <storage>/tables/<key>-compare.md),
    its CSV (<key>-compare.csv) and an anytime figure per setting under
    <storage>/plots/<key>/; returns (the Markdown, the paths written)."""
    from results.tables import render_md

    rows, absent = comparison(storage, table)
    _, root = store.filesystem(storage)
    parts, paths = [f"## Equal-budget comparison: {table.paper}\n"], []
    for label in dict.fromkeys(r["setting"] for r in rows):
        here = [r for r in rows if r["setting"] == label]
        png, notes = figure(storage, table, here)
        if png is not None:
            d, lk, protocol = (here[0][k] for k in SETTING)
            name = f"compare-{d}-{lk}" + ("" if protocol == "project" else f"-{protocol}")
            path = samples.write_bytes(storage, f"{root}/plots/{table.key}/{name}.png", png)
            paths.append(path)
            notes = [f"anytime figure: {store.uri(storage, path)} (a cell with no completed "
                     "search trial is not drawn)"]  # fmt: skip
        else:
            notes = ["no anytime figure: no cell has a completed search trial"]
        parts.append(render_md(markdown_rows(here, table.digits), notes, label))
    if not rows:
        parts.append("No cell of this table in the storage.\n")
    parts.append("\n".join(f"- {line}" for line in [*absent, NOTES]) + "\n")
    text = "\n".join(parts)
    csv = pd.DataFrame(rows, columns=COLUMNS).to_csv(index=False)
    for ext, payload in (("md", text), ("csv", csv)):
        target = f"{root}/tables/{table.key}-compare.{ext}"
        paths.append(samples.write_bytes(storage, target, payload.encode()))
    return text, paths
