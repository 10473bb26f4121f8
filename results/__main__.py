"""python -m results table <paper> --storage DIR [--format md|latex|csv]

Regenerates a paper's table (or, for a sweep group such as ``hyperspherical``, each of its papers'
tables) from the Parquet store, writes it as Markdown, LaTeX and CSV under
<storage>/tables/, and prints the chosen format.
"""

from __future__ import annotations

import argparse
import sys

from results import store
from results.papers import GROUPS, PAPERS, paper_tables
from results.tables import build_table, render

EXTENSIONS = {"md": "md", "latex": "tex", "csv": "csv"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m results")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("table", help="regenerate a paper's comparison table")
    t.add_argument("paper", help=f"one of {sorted([*PAPERS, *GROUPS])}")
    t.add_argument("--storage", default="sweep-results", help="the sweep's --storage")
    t.add_argument("--format", choices=sorted(EXTENSIONS), default="md")
    args = p.parse_args(argv)
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
