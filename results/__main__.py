"""python -m results table <paper> --storage DIR [--format md|latex|csv]
python -m results plot spvae_lowdata --storage DIR

``table`` regenerates a paper's table (or, for a sweep group such as ``hyperspherical``, each of its
papers' tables) from the Parquet store, writes it as Markdown, LaTeX and CSV under
<storage>/tables/, and prints the chosen format. ``plot`` draws the low-data experiment's test
bound against the training fraction into <storage>/plots/<paper>.png.
"""

from __future__ import annotations

import argparse
import sys

from results import store
from results.papers import GROUPS, PAPERS, paper_tables
from results.tables import build_table, render

EXTENSIONS = {"md": "md", "latex": "tex", "csv": "csv"}
FIGURES = ("spvae_lowdata",)
"""Tables whose variants are training fractions: ``plot`` draws them."""


def plot(paper: str, storage: str) -> int:
    if paper not in FIGURES:
        print(f"error: no figure for {paper!r}; figures: {list(FIGURES)}", file=sys.stderr)
        return 2
    from results.plots import fraction_figure  # matplotlib: only when drawing

    try:
        png = fraction_figure(storage, PAPERS[paper])
        fs, root = store.filesystem(storage)
        fs.create_dir(f"{root}/plots", recursive=True)
        path = f"{root}/plots/{paper}.png"
        with fs.open_output_stream(path) as f:
            f.write(png)
    except (ValueError, store.StorageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m results")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("table", help="regenerate a paper's comparison table")
    t.add_argument("paper", help=f"one of {sorted([*PAPERS, *GROUPS])}")
    t.add_argument("--storage", default="sweep-results", help="the sweep's --storage")
    t.add_argument("--format", choices=sorted(EXTENSIONS), default="md")
    pl = sub.add_parser("plot", help="draw a fraction experiment's figure (PNG)")
    pl.add_argument("paper", help=f"one of {sorted(FIGURES)}")
    pl.add_argument("--storage", default="sweep-results", help="the sweep's --storage")
    args = p.parse_args(argv)
    if args.command == "plot":
        return plot(args.paper, args.storage)
    try:
        shown = []
        for table in paper_tables(args.paper):
            df, notes = build_table(args.storage, table)
            fs, root = store.filesystem(args.storage)
            fs.create_dir(f"{root}/tables", recursive=True)
            for fmt, ext in EXTENSIONS.items():
                with fs.open_output_stream(f"{root}/tables/{table.key}.{ext}") as f:
                    f.write(render(df, notes, table.title, fmt).encode())
            shown.append(render(df, notes, table.title, args.format))
    except (ValueError, store.StorageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("\n".join(shown), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
