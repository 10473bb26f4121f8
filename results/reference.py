"""The papers' reported numbers: one CSV (results/data/paper_tables.csv) with source and confidence.

Printing convention (shared/reference/README.md): confirmed values print as they are; values from an
author artefact or a secondary source print with a dagger and their source in a footnote; recalled,
unconfirmed values print with "(unverified)".
"""

from __future__ import annotations

from importlib import resources

import pandas as pd


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


def format_reference(row, digits: int = 2) -> str:
    value = f"{row['value']:.{digits}f}"
    if pd.notna(row.get("std")):
        value += f" ± {row['std']:.{digits}f}"
    return {"confirmed": value, "reference": f"{value} †", "unverified": f"{value} (unverified)"}[
        trust(row)
    ]
