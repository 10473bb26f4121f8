"""A printed table that reads: only the datasets the storage has results for (a note names the
paper's others, --all-datasets shows them), a note when a cell was too small to rank, Markdown
wrapped to the terminal's width, LaTeX cut into tabulars that fit a page (a structure check:
no TeX here to compile it)."""

from __future__ import annotations

import io
import json
import re

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from results import store
from results.__main__ import main as results_main
from results.papers import PAPERS
from results.table_scope import RANKED
from results.table_text import LABELS, LATEX_COLUMNS, render_terminal, terminal_width
from results.tables import build_table, shown, write_files

VLAE = PAPERS["vlae"]
HIDDEN = "MNIST (binarized), CIFAR-10, MNIST (continuous; logit transform)"


def write_trial(storage, family, variant, trial_id, status="completed", lr=1e-3, seed=0, ll=None):
    """A search trial of VLAE's Fashion-MNIST cell of ``family`` at ``variant`` (its T), and a
    test evaluation when ``ll`` is given."""
    sweep = f"vlae-{family}-fashion_mnist-gaussian" + (f"-{variant}" if variant != "-" else "")
    config = {"train/lr": lr, "train/seed": seed}
    row = {"sweep": sweep, "paper": "vlae", "family": family, "dataset": "fashion_mnist",
           "likelihood": "gaussian", "variant": variant, "protocol": "project", "role": "search",
           "seed_of": "", "trial_id": trial_id, "status": status, "reason": "",
           "best_val_loss": 40.0 + lr, "seed": seed, "cpu_seconds": 60.0,
           "config_json": json.dumps(config, sort_keys=True)}  # fmt: skip
    store.write(storage, "trials", sweep, trial_id, [row])
    if ll is not None:
        evals = [{"sweep": sweep, "trial_id": trial_id, "seed": 0, "test_log_likelihood": ll,
                  "k": 100, "cpu_seconds": 6.0}]  # fmt: skip
        store.write(storage, "evaluations", sweep, f"{trial_id}-e", evals)
    return sweep


@pytest.fixture
def smoke(tmp_path):
    """As a smoke budget leaves it: VAE ranked two configurations; SA-VAE T=1 completed one of
    three trials (two pruned); VLAE T=4 completed two trials of one configuration (two seeds)."""
    s = str(tmp_path / "store")
    write_trial(s, "vae", "-", "vae-a", lr=1e-3, ll=-30.0)
    write_trial(s, "vae", "-", "vae-b", lr=3e-3)
    write_trial(s, "savae", "T=1", "sa-a", ll=-31.0)
    for i in (1, 2):
        write_trial(s, "savae", "T=1", f"sa-p{i}", status="pruned")
    write_trial(s, "vlae", "T=4", "vlae-a", seed=0, ll=-29.0)
    write_trial(s, "vlae", "T=4", "vlae-b", seed=1)
    return s


def test_the_table_shows_the_datasets_with_results_and_names_the_others(smoke, capsys):
    assert results_main(["table", "vlae", "--storage", smoke]) == 0
    out = capsys.readouterr().out
    assert "FashionMNIST: ours" in out and "MNIST (binarized)" not in out.split("\n- ")[0]
    assert f"paper numbers for {HIDDEN} not shown: no results here; `python -m results" in (
        " ".join(out.split())  # the note as one line, however it was wrapped
    )
    with open(f"{smoke}/tables/vlae.md") as f:
        written = f.read()
    (header,) = [line for line in written.splitlines() if line.startswith("| Model")]  # 1 block
    assert "FashionMNIST: ours" in header and "MNIST (binarized)" not in header
    assert f"- paper numbers for {HIDDEN} not shown: no results here;" in written
    # the sweep's end prints write_files(storage, table)["md"]: the same default
    assert "MNIST (binarized): paper" not in write_files(smoke, VLAE)["md"]


def test_all_datasets_shows_every_paper_column_and_no_note(smoke, capsys):
    assert results_main(["table", "vlae", "--storage", smoke, "--all-datasets"]) == 0
    out = capsys.readouterr().out
    assert "MNIST (binarized): paper" in out and "-85.37 †" in out
    assert "not shown: no results here" not in out
    _, wide, notes = shown(smoke, VLAE, all_datasets=True)
    assert list(wide.columns) == list(build_table(smoke, VLAE)[0].columns)  # as build_table


def test_a_storage_with_no_result_of_ours_shows_only_the_row_labels(tmp_path):
    s = str(tmp_path / "store")
    write_trial(s, "vae", "-", "only-pruned", status="pruned")
    long, wide, notes = shown(s, VLAE)
    assert list(wide.columns) == ["Model", "Variant", "Protocol"] and long.empty
    (left_out,) = [n for n in notes if n.startswith("paper numbers for ")]
    assert left_out.startswith(f"paper numbers for {HIDDEN} not shown")


def test_the_cells_too_small_to_rank_are_named_under_the_rule(smoke):
    _, _, notes = shown(smoke, VLAE)
    (small,) = [n for n in notes if n.startswith("too small to rank")]
    assert RANKED == 2 and "2 of 3 cells" in small
    assert "vlae-savae-fashion_mnist-gaussian-T=1 (1 of 3 search trials completed)" in small
    assert "vlae-vlae-fashion_mnist-gaussian-T=4 (2 of 2 search trials completed, 1 " in small
    assert "vlae-vae-fashion_mnist-gaussian " not in small  # two configurations: ranked


def test_a_budget_that_ranked_nothing_says_so_and_one_that_ranked_all_says_nothing(tmp_path):
    s = str(tmp_path / "store")
    write_trial(s, "vae", "-", "vae-a", ll=-30.0)
    _, _, notes = shown(s, VLAE)
    assert any(n.startswith("too small to rank: no cell ranked anything (") for n in notes)
    write_trial(s, "vae", "-", "vae-b", lr=0.1)
    assert not [n for n in shown(s, VLAE)[2] if n.startswith("too small to rank")]


@pytest.fixture(scope="module")
def wide_vlae(tmp_path_factory):
    """The VLAE table with every dataset: 3 row labels and 14 data columns."""
    s = str(tmp_path_factory.mktemp("wide") / "store")
    write_trial(s, "vlae", "T=4", "vlae-a", ll=-29.0)
    _, wide, notes = shown(s, VLAE, all_datasets=True)
    return wide, notes


UNCUT = re.compile(r"(?:`[^`]*`|[^\s`])+")
"""What a note's wrapping never cuts: a word, or a `command` with its spaces."""


@settings(max_examples=60, deadline=None)
@given(width=st.integers(min_value=10, max_value=400), aligned=st.booleans())
def test_the_printed_table_wraps_to_the_width_in_blocks_repeating_the_row_labels(
    wide_vlae, width, aligned
):
    wide, notes = wide_vlae
    text = render_terminal(wide, notes, VLAE.title, width, aligned)
    columns = list(wide.columns)
    widths = [max(len(str(v)) for v in [c, *wide[c]]) for c in columns]
    labels = sum(widths[:LABELS]) + 3 * LABELS + 1
    # a line is longer than the width only when the row labels and one data column are wider,
    # or a note holds one word (a path) or `command` (never cut) longer than the width
    words = max(len(w) for line in [VLAE.title, *notes] for w in UNCUT.findall(line)) + 4
    limit = max(width, labels + 3 + max(widths[LABELS:]), words)
    assert max(len(line) for line in text.splitlines()) <= limit
    heads = [line for line in text.splitlines() if line.startswith("| Model ")]
    shown_columns = [c.strip() for h in heads for c in h.strip("|").split("|")]
    data = [c for c in shown_columns if c not in ("Model", "Variant", "Protocol")]
    assert data == columns[LABELS:]  # each data column once, in order; labels in every block
    assert len(heads) == shown_columns.count("Model") == shown_columns.count("Protocol")
    if width >= labels + sum(w + 3 for w in widths[LABELS:]):
        assert len(heads) == 1  # wide enough: one block, as the file
    pairs = [a + b + 6 for a, b in zip(widths[LABELS:], widths[LABELS + 1 :], strict=False)]
    if width < labels + min(pairs):
        assert len(heads) == len(columns) - LABELS  # no two data columns fit: one per block


def test_the_width_is_the_terminals_else_100(monkeypatch, smoke, capsys):
    monkeypatch.setenv("COLUMNS", "72")
    assert terminal_width() == 72
    assert results_main(["table", "vlae", "--storage", smoke]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all(len(ln) <= 72 or re.fullmatch(r" *`[^`]*`\S*", ln) for ln in lines)  # a command
    assert sum(ln.startswith("| Model ") for ln in lines) > 1
    # piped (not a terminal), the rows read as the file's: grep finds "| VAE | - | project |"
    assert any(ln.startswith("| VAE | - | project | -30.00 (n=1, k=100) |") for ln in lines)
    aligned = write_files(smoke, VLAE, width=72, aligned=True)["md"].split("\n\n")
    for block in [b.splitlines() for b in aligned if b.startswith("| Model ")]:
        bars = {tuple(i for i, c in enumerate(ln) if c == "|") for ln in block}
        assert len(bars) == 1  # in a terminal: every row's "|" under the header's
    monkeypatch.delenv("COLUMNS")
    monkeypatch.setattr("sys.__stdout__", io.StringIO())  # not a terminal
    assert terminal_width() == 100


def test_the_latex_cuts_the_table_into_scaled_tabulars_that_repeat_the_row_labels(wide_vlae):
    wide, notes = wide_vlae
    tex = write_latex(wide, notes)
    assert tex.isascii() and not re.search(r"(?<!\\)%", tex)
    assert tex.count(r"\begin{table}") == 1 and r"\small" in tex
    bodies = re.findall(r"\\begin\{tabular\}\{(l+)\}(.*?)\\end\{tabular\}\}", tex, re.S)
    starts = re.findall(r"\\resizebox\{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi\}"
                        r"\{!\}\{\\begin\{tabular\}", tex)  # fmt: skip
    assert len(bodies) == len(starts) >= 2  # every tabular scaled down (never up) to the line
    data = 0
    for spec, body in bodies:
        assert LABELS < len(spec) <= LABELS + LATEX_COLUMNS
        assert body.split(r"\toprule")[1].lstrip().startswith("Model & Variant & Protocol")
        groups = re.findall(r"\\multicolumn\{(\d)\}\{c\}", body)
        rules = re.findall(r"\\cmidrule\(lr\)\{(\d+)-(\d+)\}", body)
        assert [int(g) for g in groups] == [int(b) - int(a) + 1 for a, b in rules]
        data += len(spec) - LABELS
    assert data == len(wide.columns) - LABELS
    assert r"\multicolumn{2}{c}{MNIST (binarized)}" in tex and "ours & paper" in tex
    # a dataset's columns of ours alone sit under its name too
    assert r"\multicolumn{5}{c}{FashionMNIST}" in tex
    assert " & ours & paper & LL IS s.d. & GPU-h & CPU core-h \\\\" in tex
    plain = re.sub(r"\\[{}$]", "", tex)
    assert plain.count("{") == plain.count("}")


def write_latex(wide, notes):
    from results.table_text import render_latex

    return render_latex(wide, notes, VLAE.title)


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=10, max_value=140))
def test_a_command_in_a_note_is_never_cut_across_lines(width):
    """A note's `command` stays on one line, whole, so it can be copied (it may pass the width
    alone, as a long path does)."""
    from results.table_text import wrap

    command = "python -m results table svae18 --all-datasets"
    text = f"paper numbers for MNIST (binarized) not shown: no results here; `{command}`"
    lines = wrap(text + " shows them", width, "- ")
    assert sum(f"`{command}`" in line for line in lines) == 1
    assert " ".join(line[2:] for line in lines) == text + " shows them"
    assert all(len(line) <= width or f"`{command}`" in line or len(line.split()) == 1
               for line in lines)  # fmt: skip
