"""The papers' reported numbers: one CSV (results/data/paper_tables.csv) with source and confidence.

Printing convention: confirmed values print as they are; values from an
author artefact or a secondary source print with a mark, one mark per distinct source note (†, ‡,
§, ¶, ‖, then ††, ‡‡, ...), and each mark's source in a note; recalled, unconfirmed values print
with "(unverified)".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib import resources

import pandas as pd

MARKS = ("†", "‡", "§", "¶", "‖")
SAMPLES = re.compile(r"\b[Kk]\s*=\s*(\d+)|\b(\d+)[ -]samples?\b")


def paper_numbers() -> pd.DataFrame:
    with resources.files("results").joinpath("data/paper_tables.csv").open() as f:
        return pd.read_csv(f, dtype={"variant": str})


def trust(row) -> str:
    """'confirmed', 'reference' (author artefact / secondary source) or 'unverified'."""
    if row["confidence"] == "confirmed":
        return "confirmed"
    source = str(row["source"])
    if source.startswith(("author-artefact", "secondary", "2-sources", "paper-copy")):
        return "reference"
    return "unverified"


def importance_samples(metric: str) -> int | None:
    """The k a metric's name states ("IS K=5000", "500 samples", "5-sample"), else None."""
    found = SAMPLES.search(str(metric))
    return int(found.group(1) or found.group(2)) if found else None


def mark(i: int) -> str:
    """The i-th note mark: †, ‡, §, ¶, ‖, then the same doubled, tripled, ... (never runs out)."""
    return MARKS[i % len(MARKS)] * (i // len(MARKS) + 1)


def source_marks(sources: Iterable[str]) -> dict[str, str]:
    """Each distinct source note -> its mark, in the order of first appearance."""
    return {source: mark(i) for i, source in enumerate(dict.fromkeys(sources))}


def format_reference(value: float, std: float, level: str, mark: str, digits: int = 2) -> str:
    """A paper's number as printed: "value [± std]", then its source's mark or "(unverified)"
    by trust `level` (see `trust`)."""
    text = f"{value:.{digits}f}"
    if pd.notna(std):
        text += f" ± {std:.{digits}f}"
    suffix = {"confirmed": "", "reference": f" {mark}", "unverified": " (unverified)"}[level]
    return text + suffix
