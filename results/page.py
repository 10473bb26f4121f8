"""HTML building blocks of the report page (results.report): escaped text, sections, tables,
lists, figures and links relative to the page, which lives in ``<storage>/report/``. Plain HTML
with inline CSS and no script, so the page opens from disk with no server.
"""

from __future__ import annotations

import html
import re
from urllib.parse import quote

import pandas as pd
import pyarrow.fs as pafs

from results import store

CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; padding: 1em 2em; max-width: 1500px;
       color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.1em; }
h2 { border-bottom: 2px solid #ccc; margin-top: 2em; }
h3 { margin-top: 1.6em; background: #eef3f8; padding: 0.2em 0.4em; font-size: 1.05em; }
h4 { margin: 0.8em 0 0.3em; font-size: 1em; }
.sub { color: #666; margin-top: 0; } .scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } tr:nth-child(even) td { background: #fafafa; }
table.facts th { width: 14em; } table.config td:nth-child(2) { font-family: monospace; }
.missing, ul.missing li { color: #8a4b00; } .files { font-size: 13px; }
.gallery { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; flex: 1 1 560px; max-width: 720px; } figure.wide { max-width: 100%; }
figure img { width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 12px; color: #555; }
nav ol { columns: 2; font-size: 14px; } nav li.l3 { margin-left: 1.5em; }
code { background: #f4f4f4; padding: 0 3px; }
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def section(anchor: str, title: str, body: str, level: int = 2) -> str:
    return f'<section id="{esc(anchor)}"><h{level}>{esc(title)}</h{level}>{body}</section>'


def frame(df: pd.DataFrame, kind: str) -> str:
    """A DataFrame as an HTML table, its text escaped, scrolling sideways when wide."""
    table = df.to_html(index=False, escape=True, border=0, classes=kind, na_rep="–")
    return f'<div class="scroll">{table}</div>'


def bullets(lines, kind: str = "", escape: bool = True) -> str:
    items = "".join(f"<li>{esc(x) if escape else x}</li>" for x in lines)
    return f'<ul class="{kind}">{items}</ul>' if items else ""


def details(summary: str, body: str) -> str:
    return f"<details><summary>{esc(summary)}</summary>{body}</details>"


def facts_table(rows: list[tuple[str, str]]) -> str:
    """Label / value rows; the values are HTML already."""
    body = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="facts">{body}</table>'


def gallery(figures_html) -> str:
    shown = "".join(f for f in figures_html if f)
    return f'<div class="gallery">{shown}</div>' if shown else ""


def listing(storage: str, folder: str, prefix: str, suffix: str) -> list[str]:
    """The files of a storage folder (paths relative to its root) with this prefix and suffix."""
    fs, root = store.filesystem(storage)
    infos = fs.get_file_info(pafs.FileSelector(f"{root}/{folder}", allow_not_found=True))
    names = sorted(i.base_name for i in infos if i.type == pafs.FileType.File)
    return [f"{folder}/{n}" for n in names if n.startswith(prefix) and n.endswith(suffix)]


HEADINGS = re.compile(r'<section id="([^"]+)"><h([23])>(.*?)</h[23]>')


def document(title: str, subtitle: str, sections: list[str]) -> str:
    """The page: a title, a contents list of the sections' headings, the sections."""
    heads = HEADINGS.findall("".join(sections))
    toc = "".join(f'<li class="l{lv}"><a href="#{a}">{t}</a></li>' for a, lv, t in heads)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}'
            f"</title><style>{CSS}</style></head><body><h1>{esc(title)}</h1>"
            f'<p class="sub">{esc(subtitle)}</p><nav><h2>Contents</h2><ol>{toc}</ol></nav>'
            + "".join(sections) + "</body></html>\n")  # fmt: skip


def exists(storage: str, relative_path: str) -> bool:
    """Whether a file or folder is under the storage (relative to its root)."""
    fs, root = store.filesystem(storage)
    return fs.get_file_info(f"{root}/{relative_path}").type != pafs.FileType.NotFound


def href(relative_path: str) -> str:
    """A link from the page (``<storage>/report/``) to a path relative to the storage's root."""
    return "../" + quote(relative_path)


def link(storage: str, relative_path: str, text: str | None = None) -> str:
    """An <a> to the path if it exists, else its name and "(absent)"."""
    name = esc(text or relative_path)
    if not exists(storage, relative_path):
        return f"{name} <span class=missing>(absent)</span>"
    return f'<a href="{href(relative_path)}">{name}</a>'


def figure(storage: str, relative_path: str, caption: str, kind: str = "") -> str:
    """An <img> of a PNG under the storage, only if the file is there."""
    if not exists(storage, relative_path):
        return ""
    target, text = href(relative_path), esc(caption)
    return (f'<figure class="{kind}"><a href="{target}"><img src="{target}" alt="{text}"></a>'
            f"<figcaption>{text}</figcaption></figure>")  # fmt: skip
