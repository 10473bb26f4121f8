"""A wide table as text: Markdown for a file, Markdown wrapped to a terminal's width, LaTeX that
fits a page, CSV of the long frame.

    render_md(df, notes, title)             one pipe table, full width (the file under tables/)
    render_terminal(df, notes, title, w)    pipe tables of at most w columns of text each, the
                                            row-label columns repeated in every block
    render_latex(df, notes, title)          booktabs tabulars of at most LATEX_COLUMNS data
                                            columns each, each scaled down to the line width
    render(df, notes, title, fmt)           md, latex or csv
"""

from __future__ import annotations

import re
import shutil
import textwrap

import pandas as pd

LABELS = 3
"""The wide table's row-label columns (Model, Variant, Protocol), repeated in every block."""
TERMINAL_FALLBACK = 100
"""The width a printed table is wrapped to when stdout is not a terminal and $COLUMNS is unset."""
LATEX_COLUMNS = 6
"""The most data columns one LaTeX tabular holds; a wider table is split into several tabulars
(each repeating the row labels) in the same float."""


def terminal_width() -> int:
    """$COLUMNS, else the terminal's width, else TERMINAL_FALLBACK (stdout not a terminal)."""
    return shutil.get_terminal_size((TERMINAL_FALLBACK, 24)).columns


def render_md(df: pd.DataFrame, notes: list[str], title: str) -> str:
    """A Markdown heading, pipe table and bulleted notes."""
    lines = [
        f"### {title}",
        "",
        "| " + " | ".join(df.columns) + " |",
        "|" + "---|" * len(df.columns),
    ]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in df.itertuples(index=False)]
    return "\n".join(lines + [""] + [f"- {n}" for n in notes]) + "\n"


def blocks(widths: list[int], width: int, labels: int = LABELS) -> list[list[int]]:
    """The columns of each printed block: the first ``labels`` in every block, then as many of
    the others, in order, as keep a padded pipe row (row_width) within ``width``; at least one
    per block, so a block is wider only when the labels and that one column are."""
    head = list(range(min(labels, len(widths))))
    out: list[list[int]] = []
    for i in range(len(head), len(widths)):
        if out and row_width([*out[-1], i], widths) <= width:
            out[-1].append(i)
        else:
            out.append([*head, i])
    return out or [head]


def row_width(columns: list[int], widths: list[int]) -> int:
    """The characters of a padded pipe row of these columns."""
    return sum(widths[c] for c in columns) + 3 * len(columns) + 1


def pipe_rows(rows: list[list[str]], widths: list[int] | None) -> list[str]:
    """Header, separator and rows as pipe-table lines, each cell padded to ``widths`` (None:
    unpadded, as the file's rows)."""
    header, *body = rows

    def line(cells: list[str]) -> str:
        if widths is not None:
            cells = [c.ljust(w) for c, w in zip(cells, widths, strict=True)]
        return "| " + " | ".join(cells) + " |"

    dashes = [3] * len(header) if widths is None else [w + 2 for w in widths]
    return [line(header), "|" + "|".join("-" * d for d in dashes) + "|", *map(line, body)]


def render_terminal(
    df: pd.DataFrame, notes: list[str], title: str, width: int, aligned: bool = True
) -> str:
    """The table as pipe tables no wider than ``width`` (a block of the row labels and one data
    column that is wider stays whole), split into blocks that repeat the row labels; cells
    padded into aligned columns when ``aligned``, else as in the file (one space each side);
    title and notes wrapped to ``width`` (a single word longer than it stays whole)."""
    rows = [list(map(str, df.columns))] + [list(map(str, r)) for r in df.itertuples(index=False)]
    widths = [max(len(r[c]) for r in rows) for c in range(len(df.columns))]
    lines = wrap(f"### {title}", width, "")
    for columns in blocks(widths, width):
        cut = [[r[c] for c in columns] for r in rows]
        lines += ["", *pipe_rows(cut, [widths[c] for c in columns] if aligned else None)]
    lines.append("")
    for note in notes:
        lines += wrap(note, width, "- ")
    return "\n".join(lines) + "\n"


def wrap(text: str, width: int, bullet: str) -> list[str]:
    """``text`` as lines of at most ``width`` characters (a longer word, e.g. a path, kept whole,
    and a `command` in backticks never cut: it can be copied from one line), the first starting
    with ``bullet`` and the others indented as far."""
    parts = text.split("`")  # the odd parts are inside backticks: their spaces hold
    glued = "`".join(p.replace(" ", "\0") if i % 2 else p for i, p in enumerate(parts))
    lines = textwrap.wrap(
        glued,
        max(width, len(bullet) + 1),
        initial_indent=bullet,
        subsequent_indent=" " * len(bullet),
        break_long_words=False,
        break_on_hyphens=False,
    ) or [bullet.rstrip()]
    return [line.replace("\0", " ") for line in lines]


LATEX_MARKS = {"†": r"\dag", "‡": r"\ddag", "§": r"\S", "¶": r"\P", "‖": r"\ensuremath{\|}"}
LATEX_ESCAPES = {
    **{c: "\\" + c for c in "&%$#_{}"},
    **{"\\": r"\textbackslash{}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"},
    **{"±": r"\ensuremath{\pm}", "≥": r"\ensuremath{\geq}", "≤": r"\ensuremath{\leq}"},
    **{"×": r"\ensuremath{\times}", "–": "--", "—": "---"},
}
LATEX_SPECIAL = re.compile(
    f"[{re.escape(''.join(LATEX_MARKS))}]+|[{re.escape(''.join(LATEX_ESCAPES))}]"
)


def latex_escape(text) -> str:
    """`text` as LaTeX text: specials escaped, a run of note marks as one superscript."""
    return LATEX_SPECIAL.sub(latex_replacement, str(text))


def latex_replacement(match: re.Match) -> str:
    found = match.group()
    if found[0] in LATEX_MARKS:
        return r"\textsuperscript{" + "".join(LATEX_MARKS[c] for c in found) + "}"
    return LATEX_ESCAPES[found]


def header_groups(columns: list[str]) -> list[tuple[str, list[tuple[str, str]]]]:
    """The columns as (group, [(column, sub), ...]): consecutive "<group>: <sub>" columns of one
    group, with the "<group> <sub>" columns that follow them ("MNIST: ours", "MNIST: paper",
    "MNIST GPU-h" under "MNIST"); any other column is its own group, with sub ""."""
    out: list[tuple[str, list[tuple[str, str]]]] = []
    for column in columns:
        group, sep, sub = column.rpartition(": ")
        last = out[-1] if out and out[-1][1][-1][1] else None  # a group with subs
        if sep and last and last[0] == group:
            last[1].append((column, sub))
        elif sep:
            out.append((group, [(column, sub)]))
        elif last and column.startswith(last[0] + " "):
            last[1].append((column, column[len(last[0]) + 1 :]))
        else:
            out.append((column, [(column, "")]))
    return out


def latex_tabular(df: pd.DataFrame) -> list[str]:
    """One booktabs tabular of ``df`` scaled down to the line width when wider (never up): a
    first header row of the column groups (header_groups: "MNIST" over "ours", "paper",
    "GPU-h"), a second of what is under each."""
    groups = header_groups(list(df.columns))
    top, sub, rules, at = [], [], [], 1
    for group, members in groups:
        subs = [s for _, s in members]
        if subs == [""]:
            top.append(latex_escape(group))
            sub.append("")
        else:
            top.append(rf"\multicolumn{{{len(subs)}}}{{c}}{{{latex_escape(group)}}}")
            sub += [latex_escape(s) for s in subs]
            rules.append(rf"\cmidrule(lr){{{at}-{at + len(subs) - 1}}}")
        at += len(subs)
    lines = [
        r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{"
        + r"\begin{tabular}{" + "l" * len(df.columns) + "}",
        r"\toprule",
        " & ".join(top) + r" \\",
    ]
    if rules:
        lines += [" ".join(rules), " & ".join(sub) + r" \\"]
    lines.append(r"\midrule")
    lines += [" & ".join(map(latex_escape, r)) + r" \\" for r in df.itertuples(index=False)]
    return lines + [r"\bottomrule", r"\end{tabular}}"]


def latex_parts(df: pd.DataFrame, most: int = LATEX_COLUMNS) -> list[pd.DataFrame]:
    """``df`` cut into frames of the row labels and at most ``most`` data columns each, a
    dataset's columns kept together when they fit in one frame."""
    labels, data = list(df.columns[:LABELS]), list(df.columns[LABELS:])
    chunks: list[list[str]] = []
    for _, members in header_groups(data):
        names = [column for column, _ in members]
        if chunks and len(chunks[-1]) + len(names) <= most:
            chunks[-1] += names
        else:
            chunks += [names[i : i + most] for i in range(0, len(names), most)]
    return [df[labels + c] for c in chunks] or [df]


def render_latex(df: pd.DataFrame, notes: list[str], title: str) -> str:
    """A booktabs table float that fits the page: \\small, tabulars of at most LATEX_COLUMNS
    data columns each (latex_parts) scaled down to the line width; the notes print in small
    type below. Needs the booktabs and graphicx packages."""
    lines = [r"\begin{table}", r"\centering", r"\small",
             rf"\caption{{{latex_escape(title)}}}"]  # fmt: skip
    for i, part in enumerate(latex_parts(df)):
        lines += ([r"\par\medskip"] if i else []) + latex_tabular(part)
    lines += [r"\par\smallskip\footnotesize\raggedright"]
    lines += [latex_escape(n) + r"\par" for n in notes]
    return "\n".join(lines + [r"\end{table}"]) + "\n"


def render(df: pd.DataFrame, notes: list[str], title: str, fmt: str) -> str:
    """md or latex: the wide table `df` with its title and notes. csv: `df` as it is, meant to
    be the long `numbers(...)` frame (each row names its own source; no title, no notes)."""
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "md":
        return render_md(df, notes, title)
    if fmt == "latex":
        return render_latex(df, notes, title)
    raise ValueError(f"unknown format {fmt!r}; choose md, latex or csv")
