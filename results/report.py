"""One page to read: ``python -m results report <paper> --storage DIR``.

    write_report(storage, paper, notes_extra, study_url) -> (path of the page, [what is missing])

Writes ``<storage>/report/<paper>.html``: the paper's tables (their Markdown, LaTeX and CSV files
written beside, as ``table`` does), the comparison, the Pareto fronts of validation loss
against size and GPU-hours (results.pareto), each cell's figures (drawn afresh by results.figures
into ``<storage>/plots/<paper>/``) and sample grids (``plots/samples/``), its winner's
configuration with where each key came from, its trials by status and what it cost, and links
to its Optuna journal and Parquet parts. A plain HTML file with inline CSS and no script,
whose images and links are relative (``../plots/...``): the storage folder opens from disk,
moved or copied whole, with no server. What the storage lacks (a cell, a winner, a figure, the
comparison) is said on the page, in its own section, never a failure.
"""

from __future__ import annotations

import json
import math

import pandas as pd

from results import figures, pareto, records, samples, store
from results.page import (
    bullets,
    details,
    document,
    esc,
    exists,
    facts_table,
    figure,
    frame,
    gallery,
    link,
    listing,
    section,
)
from results.papers import PaperTable, paper_tables
from results.plots import fraction, fraction_figure, sample_figure
from results.selection import cost, winners
from results.tables import shown, write_files

FOLDER = "report"
ORDER = {"search": 0, "cell": 1, "budget": 2, "--set": 3, "winner-seeds": 4}
"""How a winner's config keys are listed: searched first, then what fixed them; a family
default (or a key whose source the row does not record) is folded away."""


def tables_section(
    storage: str, tables: list[PaperTable], notes_extra: list[str], trials: pd.DataFrame
) -> list[str]:
    """Each table as printed (``shown``: the datasets with results), its notes, links to its
    files, and its figure against the training fraction when its cells' variants are fractions
    (spvae_lowdata)."""
    out = []
    for t in tables:
        write_files(storage, t, notes_extra)
        _, wide, notes = shown(storage, t)
        files = ", ".join(link(storage, f"tables/{t.key}.{ext}") for ext in ("md", "tex", "csv"))
        body = frame(wide, "numbers") + bullets([*notes, *notes_extra])
        body += f"<p class=files>Files: {files}</p>" + fraction_plot(storage, t, trials)
        out.append(section(f"table-{t.key}", f"Table: {t.title}", body))
    return out


def fraction_plot(storage: str, table: PaperTable, trials: pd.DataFrame) -> str:
    """The table's test metric against the training fraction (results.plots, as ``plot``
    draws it into plots/<key>.png), when every cell of it has a fraction such as "5%"."""
    mine = trials[trials["paper"] == table.key] if not trials.empty else trials
    try:
        if mine.empty:
            return ""
        [fraction(v) for v in set(mine["variant"])]  # ValueError unless every one is
        png = fraction_figure(storage, table)
    except ValueError:  # not fractions, or nothing to draw
        return ""
    _, root = store.filesystem(storage)
    samples.write_bytes(storage, f"{root}/plots/{table.key}.png", png)
    return gallery([figure(storage, f"plots/{table.key}.png", f"{table.key}: every cell")])


def draw_cells(storage: str, paper: str, cells: list[str], trials: pd.DataFrame, study_url):
    """Each cell's figures drawn into plots/<paper>/ (results.figures): {cell: (the kinds
    drawn, a line for each it could not draw)}; an older file of a kind not drawn now is not
    shown."""
    drawn = {}
    for cell in cells:
        mine = trials[trials["sweep"] == cell] if not trials.empty else trials
        curves = store.load(storage, "curves", cell)
        pngs, why = figures.cell_figures(storage, cell, mine, curves, study_url)
        _, root = store.filesystem(storage)
        for kind, data in pngs.items():
            samples.write_bytes(storage, f"{root}/plots/{paper}/{cell}-{kind}.png", data)
        drawn[cell] = (list(pngs), why)
    return drawn


def draw_samples(storage: str, cells: list[str]) -> list[str]:
    """Each cell's stored sample grids drawn into plots/samples/<cell>.png; lines for the
    damaged files skipped."""
    grids, damaged = samples.latest(storage)
    _, root = store.filesystem(storage)
    for cell, g in grids.items():
        if cell in cells:
            samples.write_bytes(storage, f"{root}/plots/samples/{cell}.png", sample_figure(g))
    return [f"damaged sample file {p} skipped ({why})" for p, why in damaged.items()]


def comparison_section(storage: str, tables: list[PaperTable]) -> tuple[str, list[str]]:
    """Each table's equal-budget comparison (results.compare, drawn afresh: a table per dataset
    setting and its anytime figures); or, when that cannot run, the files ``python -m results
    compare`` left; or why there is none."""
    body, why = "", []
    for t in tables:
        try:
            html_text = compared(storage, t)
        except Exception as e:  # another command's module: its failure is said, never ours
            html_text, reason = "", f"{type(e).__name__}: {e}"
        else:
            reason = "" if html_text else "results.compare drew nothing"
        if not html_text:
            html_text = compared_files(storage, t)
            older = f"shown from the files an earlier `compare` left ({reason})"
            why.append(f"comparison of {t.key} {older}" if html_text else
                       f"comparison not available for {t.key}: {reason}")  # fmt: skip
        body += html_text
    return section("comparison", "Comparison", body + bullets(why, "missing")), why


def pareto_section(storage: str, tables: list[PaperTable]) -> str:
    """Each table's Pareto fronts (results.pareto, as ``python -m results pareto`` prints and
    draws them into plots/<key>-pareto.png), or why there are none."""
    body = ""
    for t in tables:
        text, path = pareto.write(storage, t)
        shown = figure(storage, store.relative(storage, path), f"{t.key}: Pareto fronts",
                       "wide") if path else ""  # fmt: skip
        body += f"<pre>{esc(text)}</pre>" + gallery([shown])
    return section("pareto", "Pareto fronts: validation loss against size and GPU-hours", body)


def compared(storage: str, table: PaperTable) -> str:
    """results.compare's rows per setting as tables, its notes and figures."""
    from results import compare

    paths = compare.write(storage, table)[1]  # the files, as `python -m results compare`
    rows, absent = compare.comparison(storage, table)
    out = ""
    for label in dict.fromkeys(r["setting"] for r in rows):
        here = [r for r in rows if r["setting"] == label]
        out += f"<h4>{esc(label)}</h4>" + frame(
            compare.markdown_rows(here, table.digits), "numbers"
        )
    if not rows:
        return ""
    pngs = [store.relative(storage, p) for p in paths if p.endswith(".png")]
    out += bullets([*absent, compare.NOTES]) + compare_files(storage, table)
    return out + gallery(figure(storage, p, p.rsplit("/", 1)[-1]) for p in pngs)


def compare_files(storage: str, table: PaperTable) -> str:
    md, csv = (f"tables/{table.key}-compare.{ext}" for ext in ("md", "csv"))
    return f"<p class=files>Files: {link(storage, md)}, {link(storage, csv)}</p>"


def compared_files(storage: str, table: PaperTable) -> str:
    """The comparison CSV and figures an earlier ``python -m results compare`` wrote, if any."""
    csv = f"tables/{table.key}-compare.csv"
    if not exists(storage, csv):
        return ""
    fs, root = store.filesystem(storage)
    with fs.open_input_stream(f"{root}/{csv}") as f:
        out = frame(pd.read_csv(f, dtype=str, keep_default_na=False), "numbers")
    pngs = listing(storage, f"plots/{table.key}", "compare-", ".png")
    out += compare_files(storage, table)
    return out + gallery(figure(storage, p, p.rsplit("/", 1)[-1]) for p in pngs)


def config_table(storage: str, cell: str, winner: pd.Series, study_url) -> tuple[str, str]:
    """(the winner's config as key / value / source rows, its Optuna trial number as text)."""
    raw = winner.get("config_json")
    config = json.loads(raw) if isinstance(raw, str) else {
        k.removeprefix("config/"): v for k, v in winner.items() if k.startswith("config/")
    }  # fmt: skip
    raw = winner.get("key_sources")
    sources = json.loads(raw) if isinstance(raw, str) and raw else {}
    number = winner.get("optuna_trial", -1)
    number = -1 if number is None or pd.isna(number) else int(number)
    chosen, from_study = set(), ""
    if number < 0 or not sources:  # a row from before these columns: ask the study
        study = records.study_trials(storage, cell, study_url) or []
        mine = [t for t in study if t.user_attrs.get("tune_trial_id") == winner["trial_id"]]
        found, chosen = (mine[-1].number, set(mine[-1].params)) if mine else (-1, set())
        number, from_study = (found, " (from the study)") if number < 0 else (number, "")
    rows = []
    for key, value in config.items():
        source = sources.get(key) or ("search (the study's parameter)" if key in chosen else "")
        text = value if isinstance(value, str) else json.dumps(value, default=str)  # not 32.000
        rows.append((ORDER.get(source.split(" ")[0], 9), key, text, source or "not recorded"))
    rows.sort(key=lambda r: (r[0], r[1]))
    shown = [r[1:] for r in rows if r[0] < 9]
    folded = [r[1:] for r in rows if r[0] == 9]
    columns = ["key", "value", "source"]
    text = frame(pd.DataFrame(shown, columns=columns), "config") if shown else ""
    if folded:
        what = "family defaults" if sources else "keys whose source the row does not record"
        more = frame(pd.DataFrame(folded, columns=columns), "config")
        text += details(f"{len(folded)} more: {what}", more)
    return text, (f"{number}{from_study}" if number >= 0 else "not recorded")


def when(row: pd.Series, stamp: str, unix: str) -> pd.Timestamp | None:
    """A trial's start or end as a UTC timestamp, from its readable or its Unix column."""
    value = row.get(stamp)
    if value is not None and not pd.isna(value):
        value = pd.Timestamp(value)
        return value.tz_convert("UTC") if value.tzinfo else value.tz_localize("UTC")
    seconds = row.get(unix)
    if seconds is None or pd.isna(seconds) or math.isnan(float(seconds)):
        return None
    return pd.Timestamp(float(seconds), unit="s", tz="UTC")


def facts(trials: pd.DataFrame, evals: pd.DataFrame, win) -> list:
    """(label, html) rows about a cell: its trials by status, the winner, times, costs."""
    role = trials["role"] if "role" in trials else pd.Series("search", index=trials.index)
    search, seeds = trials[role == "search"], trials[role != "search"]
    counts = search["status"].value_counts()
    by_status = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("completed", "pruned", "errored"))
    out = [("search trials", f"{len(search)}: {by_status}")]
    if len(seeds):
        out.append(("winner re-trainings", f"{len(seeds)} (other training seeds)"))
    errored = search.loc[search["status"] == "errored", "reason"].astype(str).str[:160]
    for reason, n in errored.value_counts().head(3).items():
        out.append(("errored because", f"{n} × {esc(reason)}"))
    for column, unit in (("gpu_seconds", "GPU-h"), ("cpu_seconds", "CPU core-h")):
        hours = cost(trials, evals, column)
        out.append((unit, "not recorded" if hours is None else f"{hours:.3g}"))
    if win is not None:
        start, end = when(win, "start_time", "started_at"), when(win, "end_time", "ended_at")
        span = f" ({(end - start).total_seconds():.0f} s)" if start and end else ""
        fmt = "%Y-%m-%d %H:%M:%S UTC"
        out.append(("winner ran", f"{start.strftime(fmt) if start else '?'} → "
                                  f"{end.strftime(fmt) if end else '?'}{span}"))  # fmt: skip
        epoch = win.get("best_epoch", -1)
        at = f" (epoch {int(epoch)})" if not pd.isna(epoch) and epoch >= 0 else ""
        loss = f"{win['best_val_loss']:.6g}{at}"
        out.append(("winner's best validation loss", loss))
    return out


def cell_section(storage, paper, cell, trials, evals, drawn, study_url) -> tuple[str, list[str]]:
    """A cell: facts, the winner's configuration, figures, sample grid, links; its gaps."""
    mine = trials[trials["sweep"] == cell] if not trials.empty else trials
    ids = mine["trial_id"] if not mine.empty else []
    cell_evals = evals[evals["trial_id"].isin(ids)] if not evals.empty else evals
    kinds, why = drawn
    missing = [f"cell {cell}: {line}" for line in why]
    if mine.empty:
        body = bullets(why, "missing")
        return section(cell, cell, body + links(storage, cell), level=3), missing
    best = winners(mine, mine["paper"].iloc[0])
    win = best.iloc[0] if not best.empty else None
    body = facts_table(facts(mine, cell_evals, win))
    if win is not None:
        config, number = config_table(storage, cell, win, study_url)
        body += (f"<h4>Winner: trial {esc(win['trial_id'])}, Optuna trial {esc(number)}"
                 f"</h4>{config}")  # fmt: skip
    body += bullets(why, "missing")
    shown = [figure(storage, f"plots/{paper}/{cell}-{k}.png", f"{cell}: {k}") for k in kinds]
    grid = f"plots/samples/{cell}.png"
    if exists(storage, grid):
        shown.append(figure(storage, grid, f"{cell}: samples of the winner", "wide"))
    elif not cell_evals.empty:
        missing.append(f"cell {cell}: no sample grid (its winner's evaluation stored none)")
        body += bullets(missing[-1:], "missing")
    return section(cell, cell, body + gallery(shown) + links(storage, cell), 3), missing


def links(storage: str, cell: str) -> str:
    """Links to what the sweep keeps of a cell: its Optuna journal, Parquet parts, record."""
    fs, root = store.filesystem(storage)
    journal = f"optuna/{cell}.journal"
    where = store.uri(storage, f"{root}/{journal}")
    if not exists(storage, journal):
        dashboard = ""
    elif fs.type_name == "local":
        dashboard = f" (open with <code>optuna-dashboard {esc(where)}</code>)"
    else:  # optuna-dashboard reads a journal from a local file
        copy = esc(f"{cell}.journal")
        dashboard = (f" (optuna-dashboard opens a local copy: download <code>{esc(where)}</code>"
                     f" and run <code>optuna-dashboard {copy}</code>)")  # fmt: skip
    parts = ", ".join(link(storage, f"results/{t}/{cell}/", t) for t in store.TABLES)
    return bullets([
        f"Optuna journal: {link(storage, journal)}{dashboard}",
        f"Parquet parts: {parts}",
        f"cell record: {link(storage, f'cells/{cell}.json')}",
    ], "links", escape=False)  # fmt: skip


def write_report(
    storage: str, paper: str, notes_extra: list[str] = (), study_url: str | None = None
) -> tuple[str, list[str]]:
    """Write <storage>/report/<paper>.html; returns its path and a line per thing missing."""
    tables = paper_tables(paper)
    trials, evals = store.load(storage, "trials"), store.load(storage, "evaluations")
    cells, coverage = figures.coverage(storage, tables, trials)
    sections = tables_section(storage, tables, list(notes_extra), trials)
    compared_html, missing = comparison_section(storage, tables)
    sections.append(compared_html)
    sections.append(pareto_section(storage, tables))
    why = draw_cells(storage, paper, cells, trials, study_url)
    missing += draw_samples(storage, cells)
    parts = []
    for cell in cells:
        text, gaps = cell_section(storage, paper, cell, trials, evals, why[cell], study_url)
        parts.append(text)
        missing += gaps
    absent = [line for line in coverage if line.startswith("no rows")]
    parts.insert(0, bullets(absent, "missing"))
    sections.append(section("cells", "Cells", "".join(parts)))
    gaps = absent + missing
    held = [line for line in coverage if not line.startswith("no rows")]
    summary = bullets(gaps or ["nothing: every cell has its rows and figures"], "missing")
    sections.insert(0, section("missing", "What is missing", summary + bullets(held)))
    title = f"{paper}: sweep report"
    text = document(title, f"storage {store.uri(storage, store.filesystem(storage)[1])}", sections)
    _, root = store.filesystem(storage)
    path = samples.write_bytes(storage, f"{root}/{FOLDER}/{paper}.html", text.encode())
    return path, gaps
