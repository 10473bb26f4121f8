"""Figures regenerated from the store, as PNG files.

    fraction_figure(storage, table) -> PNG bytes   test metric against the training fraction
    sample_figure(grids) -> PNG bytes              a winner's samples, one row per temperature

The low-data experiment (SPVAE paper, docs/specs/spvae.md#8-low-data-experiment) has one cell per
(setting, model, fraction) whose variant is the fraction ("1%"); the figure draws one panel per
setting, a line per model, and the paper's values where it has them as hollow markers.

The sample figure draws the grids a winner's evaluation stored (results.samples): the first
``per_row`` images of each temperature side by side, a row per temperature labelled "T = 1.0",
greyscale or RGB as the arrays are, titled with the cell, the trial and what the images are.
"""

from __future__ import annotations

import io

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only: no display on a cluster node or in CI
import matplotlib.pyplot as plt  # noqa: E402

from results.papers import PaperTable  # noqa: E402
from results.samples import Grids  # noqa: E402
from results.tables import our_numbers, reference_numbers  # noqa: E402


def fraction(variant: str) -> float:
    """'5%' -> 0.05; ValueError for a variant that is not a percentage."""
    text = str(variant).strip()
    if not text.endswith("%"):
        raise ValueError(f"variant {variant!r} is not a training fraction such as '5%'")
    return float(text[:-1]) / 100


def by_protocol(group: tuple) -> tuple:
    """The project's protocol first, then the others by name."""
    return (group[0] != "project", group[0])


def png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    return buffer.getvalue()


def strip(images: np.ndarray, gap: int = 2) -> np.ndarray:
    """uint8 [n, C, H, W] -> one [H, n W + (n - 1) gap, C] image, white between the images."""
    n, c, h, w = images.shape
    out = np.full((h, n * (w + gap) - gap, c), 255, dtype=np.uint8)
    for i, image in enumerate(images):
        out[:, i * (w + gap) : i * (w + gap) + w] = image.transpose(1, 2, 0)
    return out


def sample_figure(grids: Grids, per_row: int = 16) -> bytes:
    """The first ``per_row`` images of each temperature's grid, a labelled row per temperature."""
    first = grids.images[grids.temperatures[0]]
    shown = min(per_row, len(first))
    _, c, h, w = first.shape
    width = min(16.0, 0.62 * shown * w / h)
    rows = len(grids.temperatures)
    fig, axes = plt.subplots(rows, 1, figsize=(width + 1.2, 0.62 * rows + 1.0), squeeze=False)
    for ax, t in zip(axes[:, 0], grids.temperatures, strict=True):
        image = strip(grids.images[t][:shown])
        grey = dict(cmap="gray", vmin=0, vmax=255) if c == 1 else {}
        ax.imshow(image[..., 0] if c == 1 else image, interpolation="nearest", **grey)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(f"T = {t}", rotation=0, ha="right", va="center", fontsize=10)
    what = "decoder means" if grids.decoder_mean else "draws"
    note = "" if rows > 1 else "; its sample takes no temperature: T = 1.0 only"
    fig.suptitle(
        f"{grids.cell}\ntrial {grids.trial_id} ({grids.family}): {shown} of {len(first)} "
        f"{what} from the prior per temperature{note}",
        fontsize=9,
    )
    fig.tight_layout()
    return png(fig)


def fraction_figure(storage: str, table: PaperTable) -> bytes:
    """Our winners' test metric per fraction, one panel per dataset setting, as PNG bytes."""
    ours = our_numbers(storage, table).dropna(subset=["mean"])
    ref = reference_numbers(table)
    panels = list(dict.fromkeys([*ours["dataset_label"], *ref["dataset_label"]]))
    if not panels:
        raise ValueError(f"nothing to plot for {table.key!r}: no results and no paper values")
    cols = min(2, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.6 * rows), squeeze=False)
    colours = {m: f"C{i}" for i, m in enumerate(table.models.values())}
    for ax, panel in zip(axes.flat, panels, strict=False):
        for model, colour in colours.items():
            here = ours[(ours["dataset_label"] == panel) & (ours["model"] == model)]
            for i, (protocol, mine) in enumerate(sorted(here.groupby("protocol"), key=by_protocol)):
                x = mine["variant"].map(fraction)
                order = x.argsort()
                ax.errorbar(
                    x.iloc[order],
                    mine["mean"].iloc[order],
                    yerr=mine["std"].fillna(0).iloc[order],
                    color=colour,
                    marker="o",
                    linestyle=("-", "--", ":", "-.")[i % 4],
                    label=f"{model} (ours)"
                    if protocol == "project"
                    else f"{model} (ours, {protocol})",
                )
            paper = ref[(ref["dataset_label"] == panel) & (ref["model"] == model)]
            if not paper.empty:
                ax.scatter(
                    paper["variant"].map(fraction),
                    paper["value"],
                    facecolors="none",
                    edgecolors=colour,
                    s=80,
                    label=f"{model} (paper)",
                )
        ax.set_xscale("log")
        ax.set_title(panel)
        ax.set_xlabel("fraction of the training set")
        ax.set_ylabel(", ".join(label for label, _ in table.metrics.values()))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(table.title, fontsize=9)
    fig.tight_layout()
    return png(fig)
