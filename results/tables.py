"""Regenerate a paper's comparison table from the Parquet store, the paper's numbers alongside.

Per cell (one sweep: family x dataset x likelihood [x variant]) the best-by-validation completed
trial is the winner; its test evaluations over seeds give "mean ± std (n=seeds, k=samples)", or
"value (n=1, k=samples)" for a single seed.

    numbers(storage, table) -> long frame   one row per (model, variant, protocol, dataset,
                                            metric, who); the paper's rows have no protocol
    layout(long, table) -> (wide, notes)    the printed layout: ours beside the paper's, marks
    build_table(storage, table)             layout(numbers(storage, table), table): every
                                            dataset, the paper's alone included
    shown(storage, table)                   what is printed and written: the datasets we have
                                            results for, notes on what is left out and on the
                                            cells too small to rank (results.table_scope)
    write_files(storage, table)             shown(...) under <storage>/tables/, and as printed
    render(frame, notes, title, fmt)        md / latex of the wide frame; csv of the long frame
                                            (results.table_text; render_terminal: md in blocks)
"""

from __future__ import annotations

import re
import sys

import pandas as pd

from results import store
from results.papers import PaperTable
from results.reference import (
    format_reference,
    importance_samples,
    paper_numbers,
    source_marks,
    trust,
)
from results.selection import chosen, cost, over_seeds, training_runs
from results.table_scope import search_notes, unranked_note, with_results
from results.table_text import (  # noqa: F401 (re-exported: results.compare, the tests)
    LATEX_ESCAPES,
    LATEX_MARKS,
    latex_escape,
    render,
    render_latex,
    render_md,
    render_terminal,
    terminal_width,
)

NUMBERS = [
    *("model", "variant", "protocol", "dataset", "metric", "who"),
    *("mean", "std", "n", "k", "source", "trust", "trial_id"),
]
"""The columns of the long frame (and of the CSV); `who` is "ours" or "paper"."""


COST = {"gpu_seconds": "GPU-h", "cpu_seconds": "CPU core-h"}
"""What a cell's search, re-trainings and evaluations cost, summed from their rows: columns of
ours alone (the papers do not say)."""
IS_NOISE = "IS s.d."
"""Appended to the log-likelihood's label: the s.d. of one trained model's estimate over
importance-sampling seeds (pooled over its training seeds), a column of ours alone."""


def our_numbers(storage: str, table: PaperTable, selection: str = "validation") -> pd.DataFrame:
    """One row per cell and metric: the winner's test statistics over its training seeds (each
    averaged over evaluation seeds); the log-likelihood's IS s.d.; what the cell cost."""
    cols = ["model", "variant", "protocol", "dataset_label", "metric", "mean", "std", "n", "k",
            "trial_id"]  # fmt: skip
    trials = store.load(storage, "trials")
    best, _ = chosen(trials, table, selection) if not trials.empty else (trials, [])
    if best.empty:
        return pd.DataFrame(columns=[*cols, "sweep"])
    evals = store.load(storage, "evaluations")
    rows = []
    for _, t in best.iterrows():
        cell_trials = trials[trials["sweep"] == t["sweep"]]
        ids = cell_trials["trial_id"]
        cell_evals = evals[evals["trial_id"].isin(ids)] if not evals.empty else evals
        runs = training_runs(cell_trials, t)
        where = {
            "model": model_label(table, t["paper"], t["family"]),
            "variant": table.variants.get(t["variant"], t["variant"]),
            "protocol": t["protocol"],
            "dataset_label": table.datasets.get(
                (t["dataset"], t["likelihood"]), f"{t['dataset']} ({t['likelihood']})"
            ),
            "trial_id": t["trial_id"],
            "sweep": t["sweep"],
        }
        for column, (metric, _) in table.metrics.items():
            if column in table.trial_columns:  # the winner's own row (e.g. its size)
                values = pd.Series([t[column]], dtype=float).where(lambda v: v >= 0).dropna()
                stats = {"mean": values.mean() if len(values) else None, "std": None,
                         "n": len(values), "k": None}  # fmt: skip
            else:
                stats = over_seeds(runs, cell_evals, column)
            factor = table.scale.get(column, 1.0)
            scaled = {k: None if stats[k] is None else stats[k] * factor for k in ("mean", "std")}
            rows.append({**where, **stats, **scaled, "metric": metric})
            if column == "test_log_likelihood":
                noise = stats["is_sd"]
                rows.append({**where, "metric": f"{metric} {IS_NOISE}", "n": stats["is_n"],
                             "mean": None if noise is None else noise * factor, "std": None,
                             "k": stats["k"]})  # fmt: skip
        for column, label in COST.items():
            hours = cost(cell_trials, cell_evals, column)
            rows.append({**where, "metric": label, "mean": hours, "std": None,
                         "n": len(cell_trials), "k": None})  # fmt: skip
    frame = pd.DataFrame(rows)
    return frame[[*cols, "sweep"]]


def ours_only(table: PaperTable) -> list[str]:
    """The metric labels that only we have: the log-likelihood's IS s.d. and the costs."""
    ll = table.metrics.get("test_log_likelihood")
    return ([f"{ll[0]} {IS_NOISE}"] if ll else []) + list(COST.values())


def model_label(table: PaperTable, paper: str, family: str) -> str:
    """A winner's row label: its family's, or "<paper>/<family>"'s for an included paper."""
    if paper != table.key:
        return table.models.get(f"{paper}/{family}", f"{family} ({paper})")
    return table.models.get(family, family)


def reference_numbers(table: PaperTable) -> pd.DataFrame:
    """The paper's rows of paper_tables.csv shown in `table`, with our metric label, the k their
    metric states, and their trust (see `reference.trust`)."""
    ref = paper_numbers()
    ref = ref[ref["paper"].isin([table.paper, *table.baselines])]
    if table.reference_tables:
        ref = ref[ref["table"].isin(table.reference_tables)]
    samples = pd.to_numeric(ref["metric"].map(importance_samples), errors="coerce")
    label = pd.Series(None, index=ref.index, dtype=object)
    for metric, prefix in table.metrics.values():
        label[ref["metric"].str.startswith(prefix) & label.isna()] = metric
    ref = ref.assign(metric=label, k=samples).dropna(subset=["metric"])
    ref = ref.assign(trust=[trust(r) for _, r in ref.iterrows()])
    return ref.rename(columns={"dataset": "dataset_label"})


def numbers(storage: str, table: PaperTable, selection: str = "validation") -> pd.DataFrame:
    """The long, tidy table of numbers (columns NUMBERS), ours and the paper's, in reading order.
    Ours: source = the sweep, no trust; the paper's: n unknown, k as its metric states."""
    ours = our_numbers(storage, table, selection)
    ours = ours.assign(who="ours", source=ours["sweep"], trust=None)
    ref = reference_numbers(table)
    ref = ref.assign(who="paper", mean=ref["value"], n=None, trial_id=None, protocol=None)
    frames = [
        f.rename(columns={"dataset_label": "dataset"})[NUMBERS] for f in (ours, ref) if not f.empty
    ]
    long = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=NUMBERS)
    long = long.astype({"mean": float, "std": float, "n": "Int64", "k": "Int64"})
    return in_reading_order(long, table)


def in_reading_order(long: pd.DataFrame, table: PaperTable) -> pd.DataFrame:
    """The long frame sorted as the wide table reads: by row, then column (dataset, metric, who)."""
    datasets = dataset_order(long, table)
    metrics = [label for label, _ in table.metrics.values()] + ours_only(table)
    where = long[["model", "variant", "protocol", "dataset", "metric", "who"]]
    key = [
        (row_order(m, v, table), protocol_order(p), datasets.index(d), metrics.index(mt),
         who != "ours")
        for m, v, p, d, mt, who in where.itertuples(index=False)
    ]  # fmt: skip
    return long.iloc[sorted(range(len(long)), key=key.__getitem__)].reset_index(drop=True)


def dataset_order(long: pd.DataFrame, table: PaperTable) -> list[str]:
    """The datasets we ran, then those only the paper has; each in the paper table's order."""
    declared = list(table.datasets.values())

    def rank(dataset: str) -> tuple:
        return (declared.index(dataset) if dataset in declared else len(declared), dataset)

    ours = sorted(set(long.loc[long["who"] == "ours", "dataset"]), key=rank)
    paper = sorted(set(long.loc[long["who"] == "paper", "dataset"]) - set(ours), key=rank)
    return ours + paper


def protocol_order(protocol) -> tuple:
    """Within a row of the paper: the project's protocol, then the others by name; a row that
    holds only the paper's numbers (no protocol) last."""
    if protocol is None or pd.isna(protocol):
        return (2, "")
    return (0 if protocol == "project" else 1, str(protocol))


def row_order(model: str, variant: str, table: PaperTable) -> tuple:
    """Rows follow the paper's models, then its variants if declared, then numbers in a variant."""
    models, variants = list(table.models.values()), list(table.variants.values())
    return (
        models.index(model) if model in models else len(models),
        model,
        variants.index(variant) if variant in variants else len(variants),
        variant_order(variant),
    )


def variant_order(variant: str) -> tuple:
    """Variants sort by the numbers in them (d=2 before d=10), then as text."""
    numbers = tuple(int(n) for n in re.findall(r"\d+", str(variant)))
    return numbers, str(variant)


def format_ours(row, digits: int, plain: bool = False) -> str:
    """Our cell: "mean ± std (n, k)" over n >= 2 training seeds; "value (n=1, k)" for one;
    ``plain`` (a property of the trial, e.g. its size): the value alone; a cost: hours to three
    significant digits; the IS s.d.: the value and its IS seeds, or why there is none."""
    metric = str(row.get("metric", ""))
    if metric in COST.values():
        return "–" if pd.isna(row["mean"]) else f"{row['mean']:.3g}"
    if metric.endswith(IS_NOISE):
        if pd.isna(row["mean"]):
            return "–" if row["n"] == 0 else f"– ({int(row['n'])} IS seed)"
        return f"{row['mean']:.{digits}f} ({int(row['n'])} IS seeds)"
    if row["n"] == 0 or pd.isna(row["mean"]):
        return "not evaluated"
    if plain:
        return f"{row['mean']:.{digits}f}"
    n, text = int(row["n"]), f"{row['mean']:.{digits}f}"
    if n >= 2:
        text += f" ± {row['std']:.{digits}f}"
    return f"{text} (n={n}, k={int(row['k'])})"


def cell_text(row, digits: int, marks: dict[str, str], plain: set[str] = frozenset()) -> str:
    """One cell of the long frame as printed; a paper's number carries its source's mark."""
    if row["who"] == "ours":
        return format_ours(row, digits, row["metric"] in plain)
    mark = marks.get(row["source"], "")
    return format_reference(row["mean"], row["std"], row["trust"], mark, digits)


def row_keys(long: pd.DataFrame) -> list[tuple]:
    """The wide table's rows in reading order: (model, variant, protocol) for each protocol we
    ran a row under, and (model, variant, None) for a row that only the paper has."""
    ours = long["who"] == "ours"
    where = long[["model", "variant"]].assign(protocol=long["protocol"].where(ours, None))
    keys = list(dict.fromkeys(where.itertuples(index=False, name=None)))
    ran = {(m, v) for m, v, p in keys if p is not None}
    return [(m, v, p) for m, v, p in keys if p is not None or (m, v) not in ran]


def layout(long: pd.DataFrame, table: PaperTable) -> tuple[pd.DataFrame, list[str]]:
    """The wide table (rows: model, variant, protocol; ours and the paper's per dataset and
    metric, the paper's number beside each protocol's row) and its notes: how ours are
    computed, then each mark with its source."""
    long = in_reading_order(long, table)
    marks = source_marks(long.loc[long["trust"] == "reference", "source"])
    plain = {table.metrics[c][0] for c in table.trial_columns}
    texts = [cell_text(r, table.digits, marks, plain) for _, r in long.iterrows()]
    ours = long["who"] == "ours"
    where = long[["model", "variant", "protocol", "dataset", "metric", "who"]]
    where = where.assign(protocol=where["protocol"].where(ours, None))
    cells = dict(zip(where.itertuples(index=False, name=None), texts, strict=True))
    keys = row_keys(long)
    wide = pd.DataFrame({"Model": [k[0] for k in keys], "Variant": [k[1] for k in keys],
                         "Protocol": [k[2] or "–" for k in keys]})  # fmt: skip
    metrics = [label for label, _ in table.metrics.values()]
    extra = ours_only(table)
    own = [label for key, label in table.models.items() if "/" not in key]
    missing = dict.fromkeys(own, table.missing)  # the table's own models' absent paper numbers
    for ds in dataset_order(long, table):
        for metric in metrics:
            column = ds if len(metrics) == 1 else f"{ds} {metric}"
            ours_col = [cells.get((*k, ds, metric, "ours"), "–") for k in keys]
            absent = missing if not table.paper_datasets or ds in table.paper_datasets else {}
            paper_col = [cells.get((m, v, None, ds, metric, "paper"), absent.get(m, "–"))
                         for m, v, _ in keys]  # fmt: skip
            if table.drop_empty and {*ours_col, *paper_col} <= {
                "–",
                "not evaluated",
                table.missing,
            }:
                continue
            wide[f"{column}: ours"], wide[f"{column}: paper"] = ours_col, paper_col
        for metric in extra:  # ours alone: the papers report no IS s.d. and no cost
            if any((*k, ds, metric, "ours") in cells for k in keys):
                wide[f"{ds} {metric}"] = [cells.get((*k, ds, metric, "ours"), "–") for k in keys]
    return wide, table_notes(metrics, marks)


def table_notes(metrics: list[str], marks: dict[str, str]) -> list[str]:
    """The notes under a table: how our numbers are made, then one line per source mark."""
    ours = (
        "ours: best-by-validation configuration per cell; its test-set "
        + ", ".join(metrics)
        + " over n training seeds (mean ± std when n ≥ 2: the search's run of the configuration "
        + "and its re-trainings with other seeds, --winner-seeds), each averaged over its "
        + f"evaluation seeds, with k importance samples; {IS_NOISE}: the s.d. of one model's "
        + "estimate over importance-sampling seeds; GPU-h, CPU core-h: the resources the cell's "
        + "trials and evaluations held, in hours. "
        + "Protocol: project (seeded validation split, the papers' algorithms) or the sweep's "
        + "--protocol (authors: the authors' data use, validation rule and KL estimator; "
        + "authors-code: also the defects of their code; docs/running-sweeps.md#protocols lists "
        + "the keys)."
    )
    return [ours, *(f"{mark} {source}" for source, mark in marks.items())]


def build_table(
    storage: str, table: PaperTable, selection: str = "validation"
) -> tuple[pd.DataFrame, list[str]]:
    """The wide table and its notes (see `layout`; under ``selection`` its notes say how each
    capped cell's winner was chosen); its numbers are `numbers(storage, table, selection)`."""
    wide, notes = layout(numbers(storage, table, selection), table)
    return wide, notes + selection_notes(storage, table, selection)


def selection_notes(storage: str, table: PaperTable, selection: str) -> list[str]:
    if selection == "validation":
        return []
    trials = store.load(storage, "trials")
    return chosen(trials, table, selection)[1] if not trials.empty else []


EXTENSIONS = {"md": "md", "latex": "tex", "csv": "csv"}


def shown(
    storage: str, table: PaperTable, selection: str = "validation", all_datasets: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(long frame, wide table, notes) as `table` prints and writes them: the datasets with
    results of ours (``all_datasets``: every dataset, as build_table), notes on how winners
    were chosen, on the cells too small to rank (results.table_scope) and on the paper's
    datasets left out."""
    long, left_out = with_results(numbers(storage, table, selection), table, all_datasets)
    wide, notes = layout(long, table)
    trials = store.load(storage, "trials")
    small = unranked_note(trials, long) if not trials.empty else []
    searched = search_notes(storage, long)
    return (long, wide,
            notes + selection_notes(storage, table, selection) + small + searched + left_out)


def write_files(
    storage: str,
    table: PaperTable,
    notes_extra: list[str] = (),
    selection: str = "validation",
    all_datasets: bool = False,
    width: int | None = None,
    aligned: bool | None = None,
) -> dict[str, str]:
    """Write ``table`` (as `shown`) as Markdown, LaTeX and CSV under <storage>/tables/ (<key>.md,
    or <key>-<selection>.md under another selection rule; the .md file is one full-width pipe
    table); returns each format's text as printed: the files' LaTeX and CSV, and Markdown
    wrapped to ``width`` columns (None: terminal_width()) in blocks that repeat the row labels,
    its cells padded into aligned columns when ``aligned`` (None: when stdout is a terminal;
    piped, its rows read as the file's) (``notes_extra``: lines added under the table, e.g. a
    storage's consistency warning)."""
    long, wide, notes = shown(storage, table, selection, all_datasets)
    notes = notes + list(notes_extra)
    name = table.key if selection == "validation" else f"{table.key}-{selection}"
    frames = {"md": wide, "latex": wide, "csv": long}
    _, root = store.filesystem(storage)
    texts = {fmt: render(frames[fmt], notes, table.title, fmt) for fmt in EXTENSIONS}
    for fmt, ext in EXTENSIONS.items():
        store.write_text(storage, f"{root}/tables/{name}.{ext}", texts[fmt])
    if aligned is None:  # a stream standing in for stdout may lack isatty
        aligned = getattr(sys.stdout, "isatty", lambda: False)()
    printed = render_terminal(wide, notes, table.title, width or terminal_width(), aligned)
    return {**texts, "md": printed}
