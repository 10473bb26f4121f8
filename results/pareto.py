"""``python -m results pareto <paper>``: per table setting, the trials no other trial beats on both
validation loss and size (and on validation loss and GPU-hours, where trials held GPUs).

    front(points) -> bool mask          the non-dominated rows of an [n, d] array (all minimised)
    fronts(trials, evals, table)        each setting's fronts, its trials marked
    write(storage, table) -> (text, path of the PNG under <storage>/plots/)

A point is a completed search trial of the table's cells (every family of a dataset setting
together): its best validation loss (-ELBO, nats: the number the table selects by; the test
likelihood exists for winners only) against its n_parameters, or its GPU-hours (gpu_seconds /
3600). Any storage has them, whether its cells were swept with --objectives or not. Each
setting says which trial the table's rule picked per family, on the front or not.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib
import numpy as np
import pandas as pd

matplotlib.use("Agg")  # files only: no display on a cluster node or in CI
import matplotlib.pyplot as plt  # noqa: E402

from results import samples, store  # noqa: E402
from results.papers import PaperTable  # noqa: E402
from results.plots import png  # noqa: E402
from results.rows import SEARCH  # noqa: E402
from results.selection import capped_winners, winners  # noqa: E402

AXES = {"n_parameters": "parameters", "gpu_hours": "GPU-hours"}
"""The cost each front sets against validation loss, and its label."""
SETTING = ("dataset", "likelihood", "protocol")
"""What a front holds one of (and the variant, where it is a data setting: PaperTable's
``variant_is_data``); its points are the trials of every family and model variant in it."""


def front(points: np.ndarray) -> np.ndarray:
    """Which rows of ``points`` [n, d] no other row dominates (at most as large in every column,
    smaller in one; every column minimised). Equal rows are all on the front."""
    points = np.asarray(points, dtype=float)
    le = (points[:, None, :] <= points[None, :, :]).all(axis=2)  # le[j, i]: j <= i everywhere
    lt = (points[:, None, :] < points[None, :, :]).any(axis=2)
    return ~(le & lt).any(axis=0)


@dataclass
class Front:
    label: str  # the table's dataset label, with the variant and protocol where they differ
    axis: str  # a key of AXES
    points: pd.DataFrame  # the setting's trials: model, trial_id, best_val_loss, the axis,
    # on_front, pick (the rules that picked it, "" if none), test (the table's metric, or NaN)


def candidates(trials: pd.DataFrame, table: PaperTable) -> pd.DataFrame:
    """The completed search trials of the table's cells with a validation loss and a size."""
    papers = (table.key, *table.include_papers)
    if trials.empty:
        return trials
    done = trials[trials["paper"].isin(papers) & (trials["status"] == "completed")
                  & (trials["role"] == SEARCH) & trials["best_val_loss"].notna()]  # fmt: skip
    done = done[done["n_parameters"].fillna(-1) >= 0].copy()
    done["gpu_hours"] = done["gpu_seconds"] / 3600 if "gpu_seconds" in done else np.nan
    done["model"] = [model_label(table, p, f, "-" if table.variant_is_data else v)
                     for p, f, v in zip(done["paper"], done["family"], done["variant"],
                                        strict=True)]  # fmt: skip
    return done.reset_index(drop=True)


def model_label(table: PaperTable, paper: str, family: str, variant: str = "-") -> str:
    key = family if paper == table.key else f"{paper}/{family}"
    shown = table.variants.get(variant, variant)
    return table.models.get(key, key) + (f" {shown}" if variant not in ("-", "", None) else "")


def setting(table: PaperTable) -> list[str]:
    return [*SETTING, "variant"] if table.variant_is_data else list(SETTING)


def picks(trials: pd.DataFrame, table: PaperTable) -> tuple[dict[str, list[str]], list[str]]:
    """{trial_id: the rules that picked it} and the rules in words: best validation per cell
    (the table's default), and where the table caps sizes its param-cap rule too."""
    found: dict[str, list[str]] = {}
    for p in (table.key, *table.include_papers):
        for tid in winners(trials, p)["trial_id"] if not trials.empty else []:
            found.setdefault(tid, []).append("validation")
    rules = ["validation: each cell's best validation loss (`results table`'s default)"]
    if table.caps:
        capped, _ = capped_winners(trials, table)
        for tid in capped["trial_id"] if not capped.empty else []:
            found.setdefault(tid, []).append("param-cap")
        capping = " / ".join(sorted({f for c in table.caps.values() for f in c}))
        rules.append(f"param-cap: {', '.join(table.caps)} chosen as the best validation among "
                     f"trials with no more parameters than the smallest selected {capping} of "
                     "the setting (`results table --selection param-cap`)")  # fmt: skip
    return found, rules


def fronts(trials: pd.DataFrame, evals: pd.DataFrame, table: PaperTable) -> list[Front]:
    """Each setting's front against parameters, and against GPU-hours where a trial held GPUs."""
    done = candidates(trials, table)
    if done.empty:
        return []
    chosen, _ = picks(trials, table)
    metric = next(iter(table.metrics))
    test = (evals.groupby("trial_id")[metric].mean()
            if not evals.empty and metric in evals else pd.Series(dtype=float))  # fmt: skip
    done["pick"] = [", ".join(chosen.get(t, [])) for t in done["trial_id"]]
    done["test"] = done["trial_id"].map(test).astype(float)
    out = []
    for key, mine in done.groupby(setting(table), sort=True):
        label = setting_label(table, dict(zip(setting(table), key, strict=True)))
        for axis in AXES:
            if axis == "gpu_hours" and not (mine["gpu_hours"] > 0).any():
                continue
            here = mine.dropna(subset=[axis]).copy()
            here["on_front"] = front(here[["best_val_loss", axis]].to_numpy())
            out.append(Front(label, axis, here.sort_values([axis, "best_val_loss"])))
    return out


def setting_label(table: PaperTable, key: dict) -> str:
    label = table.datasets.get((key["dataset"], key["likelihood"]),
                               f"{key['dataset']} {key['likelihood']}")  # fmt: skip
    extra = [str(key["variant"])] if key.get("variant") not in ("-", "", None) else []
    extra += [str(key["protocol"])] if key["protocol"] not in ("project", "", None) else []
    return f"{label} ({', '.join(extra)})" if extra else label


def describe(f: Front, table: PaperTable) -> list[str]:
    """A heading, a line per point on the front, and where each table pick off it stands."""
    name = AXES[f.axis]
    on = f.points[f.points["on_front"]]
    lines = [f"{f.label}: validation loss vs {name}: {len(on)} of {len(f.points)} completed "
             "trials on the front"]  # fmt: skip
    metric = table.metrics[next(iter(table.metrics))][0]
    for _, p in on.iterrows():
        lines.append("  " + point(p, f.axis, metric))
    for _, p in f.points[~f.points["on_front"] & (f.points["pick"] != "")].iterrows():
        better = on[(on["best_val_loss"] <= p["best_val_loss"]) & (on[f.axis] <= p[f.axis])]
        by = better.iloc[0]
        lines.append(f"  off the front: {point(p, f.axis, metric)}; dominated by {by['model']} "
                     f"trial {by['trial_id']}")  # fmt: skip
    return lines


def point(p: pd.Series, axis: str, metric: str) -> str:
    cost = f"{int(p[axis]):,}" if axis == "n_parameters" else f"{p[axis]:.3g}"
    test = f"  test {metric} {p['test']:.2f}" if pd.notna(p["test"]) else ""
    pick = f"  <- table pick ({p['pick']})" if p["pick"] else ""
    return (f"{p['model']} trial {p['trial_id']}: val loss {p['best_val_loss']:.2f}, "
            f"{AXES[axis]} {cost}{test}{pick}")  # fmt: skip


def figure(table: PaperTable, found: list[Front]) -> bytes:
    """A panel per setting and axis: every trial by model, the front as a step line, the
    table's picks starred."""
    labels = list(dict.fromkeys(f.label for f in found))
    axes_used = [a for a in AXES if any(f.axis == a for f in found)]
    fig, axes = plt.subplots(len(labels), len(axes_used), squeeze=False,
                             figsize=(6 * len(axes_used), 3.8 * len(labels)))  # fmt: skip
    models = list(dict.fromkeys(m for f in found for m in f.points["model"]))
    colours = {m: f"C{i % 10}" for i, m in enumerate(models)}
    for ax in axes.flat:
        ax.set_visible(False)
    for f in found:
        ax = axes[labels.index(f.label), axes_used.index(f.axis)]
        ax.set_visible(True)
        for model, mine in f.points.groupby("model"):
            ax.scatter(mine[f.axis], mine["best_val_loss"], s=18, alpha=0.6,
                       color=colours[model], label=model)  # fmt: skip
        on = f.points[f.points["on_front"]].sort_values(f.axis)
        ax.step(on[f.axis], on["best_val_loss"], where="post", color="k", lw=1, label="front")
        picked = f.points[f.points["pick"] != ""]
        ax.scatter(picked[f.axis], picked["best_val_loss"], marker="*", s=160,
                   facecolors="none", edgecolors="k", label="table pick")  # fmt: skip
        if (f.points[f.axis] > 0).all():
            ax.set_xscale("log")
        ax.set_title(f.label, fontsize=9)
        ax.set_xlabel(AXES[f.axis])
        ax.set_ylabel("best validation loss (-ELBO, nats)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{table.key}: Pareto fronts of the completed trials (lower is better)",
                 fontsize=9)  # fmt: skip
    fig.tight_layout()
    return png(fig)


def write(storage: str, table: PaperTable) -> tuple[str, str | None]:
    """The table's fronts as text, and the PNG written to <storage>/plots/<key>-pareto.png
    (None when the table has no completed trial with a size)."""
    trials, evals = store.load(storage, "trials"), store.load(storage, "evaluations")
    found = fronts(trials, evals, table)
    _, rules = picks(trials, table)
    head = [f"Pareto fronts: {table.title}", *(f"table picks by {r}" for r in rules)]
    if not found:
        return "\n".join([*head, "no completed trial with a parameter count"]), None
    text = "\n".join([*head, *(line for f in found for line in describe(f, table))])
    _, root = store.filesystem(storage)
    path = samples.write_bytes(storage, f"{root}/plots/{table.key}-pareto.png",
                               figure(table, found))  # fmt: skip
    return text, path
