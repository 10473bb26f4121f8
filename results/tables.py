"""Regenerate a paper's comparison table from the Parquet store, the paper's numbers alongside.

Per cell (one sweep: family x dataset x likelihood [x variant]) the best-by-validation completed
trial is the winner; its test evaluations over seeds give "mean ± std (n seeds, k samples)".
"""

from __future__ import annotations

import re

import pandas as pd

from results import store
from results.papers import PaperTable
from results.reference import format_reference, paper_numbers, trust


def winners(trials: pd.DataFrame, paper: str) -> pd.DataFrame:
    """The best-by-validation completed trial of each cell of a paper (never chosen on test)."""
    if trials.empty:
        return trials
    done = trials[(trials["paper"] == paper) & (trials["status"] == "completed")]
    done = done[done["best_val_loss"].notna()]
    return done.loc[done.groupby("sweep")["best_val_loss"].idxmin()].reset_index(drop=True)


def our_numbers(storage: str, table: PaperTable) -> pd.DataFrame:
    """One row per cell and metric: the winner's test statistics over evaluation seeds."""
    cols = ["model", "variant", "dataset_label", "metric", "mean", "std", "n", "k", "trial_id"]
    best = winners(store.load(storage, "trials"), table.key)
    if best.empty:
        return pd.DataFrame(columns=cols)
    evals = store.load(storage, "evaluations")
    rows = []
    for _, t in best.iterrows():
        label = table.datasets.get(
            (t["dataset"], t["likelihood"]), f"{t['dataset']} ({t['likelihood']})"
        )
        mine = evals[evals["trial_id"] == t["trial_id"]] if not evals.empty else evals
        for column, (metric, _) in table.metrics.items():
            values = mine[column].dropna() if column in mine else pd.Series(dtype=float)
            rows.append(
                {
                    "model": table.models.get(t["family"], t["family"]),
                    "variant": table.variants.get(t["variant"], t["variant"]),
                    "dataset_label": label,
                    "metric": metric,
                    "mean": values.mean() if len(values) else None,
                    "std": values.std() if len(values) else None,
                    "n": len(values),
                    "k": int(mine["k"].max()) if len(values) else None,
                    "trial_id": t["trial_id"],
                }
            )
    return pd.DataFrame(rows, columns=cols)


def reference_numbers(table: PaperTable) -> pd.DataFrame:
    ref = paper_numbers()
    ref = ref[ref["paper"] == table.paper]
    if table.reference_tables:
        ref = ref[ref["table"].isin(table.reference_tables)]
    label = pd.Series(None, index=ref.index, dtype=object)
    for metric, prefix in table.metrics.values():
        label[ref["metric"].str.startswith(prefix) & label.isna()] = metric
    ref = ref.assign(metric=label).dropna(subset=["metric"])
    ref = ref.assign(
        text=[format_reference(r, table.digits) for _, r in ref.iterrows()],
        trust=[trust(r) for _, r in ref.iterrows()],
    )
    return ref.rename(columns={"dataset": "dataset_label"})


def format_ours(row, digits: int) -> str:
    if row["n"] == 0 or pd.isna(row["mean"]):
        return "not evaluated"
    std = 0.0 if pd.isna(row["std"]) else row["std"]
    return f"{row['mean']:.{digits}f} ± {std:.{digits}f} (n={row['n']}, k={int(row['k'])})"


def build_table(storage: str, table: PaperTable) -> tuple[pd.DataFrame, list[str]]:
    """The wide table (rows: model, variant; ours and the paper's per dataset and metric) and its
    footnotes."""
    ours, ref = our_numbers(storage, table), reference_numbers(table)
    datasets = list(dict.fromkeys([*ours["dataset_label"], *ref["dataset_label"]]))
    metrics = [label for label, _ in table.metrics.values()]
    keys = list(
        dict.fromkeys(
            zip([*ref["model"], *ours["model"]], [*ref["variant"], *ours["variant"]], strict=True)
        )
    )
    models = dict.fromkeys([*table.models.values(), *ref["model"], *ours["model"]])
    order = {m: i for i, m in enumerate(models)}
    labels = list(table.variants.values())  # the paper's order of its variants, if declared
    keys.sort(
        key=lambda mv: (
            order[mv[0]],
            labels.index(mv[1]) if mv[1] in labels else len(labels),
            variant_order(mv[1]),
        )
    )
    out = pd.DataFrame({"Model": [m for m, _ in keys], "Variant": [v for _, v in keys]})
    for ds in datasets:
        for metric in metrics:
            column = ds if len(metrics) == 1 else f"{ds} {metric}"
            for who, frame, fmt in (
                ("ours", ours, lambda r: format_ours(r, table.digits)),
                ("paper", ref, lambda r: r["text"]),
            ):
                mine = frame[(frame["dataset_label"] == ds) & (frame["metric"] == metric)]
                cells = {(r["model"], r["variant"]): fmt(r) for _, r in mine.iterrows()}
                out[f"{column}: {who}"] = [cells.get(k, "–") for k in keys]
    notes = [f"† {s}" for s in dict.fromkeys(ref.loc[ref["trust"] == "reference", "source"])]
    notes.insert(
        0,
        "ours: best-by-validation configuration per cell; mean ± std over evaluation seeds (n) "
        "of the test set's " + ", ".join(metrics) + ", with k importance samples.",
    )
    return out, notes


def variant_order(variant: str) -> tuple:
    """Variants sort by the numbers in them (d=2 before d=10), then as text."""
    numbers = tuple(int(n) for n in re.findall(r"\d+", str(variant)))
    return numbers, str(variant)


LATEX_ESCAPES = {"&": r"\&", "%": r"\%", "_": r"\_", "±": r"$\pm$", "†": r"$^\dagger$", "–": "--"}


def latex_escape(text) -> str:
    text = str(text)
    for char, escaped in LATEX_ESCAPES.items():
        text = text.replace(char, escaped)
    return text


def render(df: pd.DataFrame, notes: list[str], title: str, fmt: str) -> str:
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "md":
        lines = [
            f"### {title}",
            "",
            "| " + " | ".join(df.columns) + " |",
            "|" + "---|" * len(df.columns),
        ]
        lines += ["| " + " | ".join(map(str, r)) + " |" for r in df.itertuples(index=False)]
        return "\n".join(lines + [""] + [f"- {n}" for n in notes]) + "\n"
    if fmt == "latex":
        lines = [
            r"\begin{table}",
            rf"\caption{{{latex_escape(title)}}}",
            r"\begin{tabular}{" + "l" * len(df.columns) + "}",
            r"\toprule",
            " & ".join(map(latex_escape, df.columns)) + r" \\",
            r"\midrule",
        ]
        lines += [" & ".join(map(latex_escape, r)) + r" \\" for r in df.itertuples(index=False)]
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
        return "\n".join(lines + [f"% {n}" for n in notes]) + "\n"
    raise ValueError(f"unknown format {fmt!r}; choose md, latex or csv")
