"""Printed tables: ± only over several seeds, one mark per source, LaTeX notes, a numeric CSV."""

from __future__ import annotations

import io
import re

import pandas as pd
import pytest

from results import store
from results.papers import PAPERS, PaperTable
from results.reference import mark
from results.tables import NUMBERS, build_table, format_ours, latex_escape, numbers, render

TOY = PaperTable(
    key="toy",
    paper="Toy (2020)",
    title="Toy: LL & the 5% rule",
    metrics={"test_log_likelihood": ("LL", "LL")},
    models={"vae": "VAE", "iwae": "IWAE"},
    datasets={("mnist", "bernoulli"): "MNIST"},
)
POSTER = "author-artefact: poster A"
SPECIAL = r"secondary: blog_1 & 50% #2 $x$ {y} ~z ^w \v"


def paper_row(model, variant, value, std, source, confidence="recalled"):
    return {
        **{"paper": TOY.paper, "table": "Table 1", "dataset": "MNIST", "model": model},
        **{"variant": variant, "metric": "LL (IS K=5000)", "value": value, "std": std},
        **{"unit": "nats", "higher_is_better": True, "source": source, "confidence": confidence},
    }


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A store with VAE (3 seeds, k=100) and IWAE (1 seed, k=5000), and the toy paper's numbers:
    two sources (one used twice), a confirmed and a recalled value."""
    reference = pd.DataFrame(
        [
            paper_row("VAE", "-", -85.0, 0.5, POSTER),
            paper_row("IWAE", "-", -84.0, None, SPECIAL),
            paper_row("VAE", "d=2", -90.0, None, POSTER),
            paper_row("IWAE", "d=2", -89.0, None, "the paper", confidence="confirmed"),
            paper_row("VAE", "d=5", -95.0, None, "recalled, unconfirmed: memory"),
        ]
    )
    monkeypatch.setattr("results.tables.paper_numbers", lambda: reference)
    seeds = {"vae": [-86.0, -85.0, -87.5], "iwae": [-85.125]}
    for family, values in seeds.items():
        sweep = f"toy-{family}-mnist-bernoulli"
        trial = {"sweep": sweep, "paper": "toy", "family": family, "dataset": "mnist"}
        trial |= {"likelihood": "bernoulli", "variant": "-", "trial_id": f"t-{family}"}
        trial |= {"status": "completed", "reason": "", "best_val_loss": 1.0}
        store.write(str(tmp_path), "trials", sweep, f"t-{family}", [trial])
        k = 100 if family == "vae" else 5000
        evals = [
            {"trial_id": f"t-{family}", "seed": s, "test_log_likelihood": v, "k": k}
            for s, v in enumerate(values)
        ]
        store.write(str(tmp_path), "evaluations", sweep, f"t-{family}-e", evals)
    return str(tmp_path)


def cell(df, model, variant, column):
    return df[(df["Model"] == model) & (df["Variant"] == variant)].iloc[0][column]


def test_a_single_seed_has_no_plus_minus_and_shows_n_equals_1(toy):
    df, _ = build_table(toy, TOY)
    assert cell(df, "IWAE", "-", "MNIST: ours") == "-85.12 (n=1, k=5000)"
    one = pd.Series({"mean": -85.123, "std": float("nan"), "n": 1, "k": 5000})
    assert format_ours(one, 2) == "-85.12 (n=1, k=5000)"


def test_several_seeds_show_mean_plus_minus_std(toy):
    df, _ = build_table(toy, TOY)
    assert cell(df, "VAE", "-", "MNIST: ours") == "-86.17 ± 1.26 (n=3, k=100)"


def test_each_reference_source_has_its_own_mark_and_note(toy):
    df, notes = build_table(toy, TOY)
    assert cell(df, "VAE", "-", "MNIST: paper") == "-85.00 ± 0.50 †"
    assert cell(df, "VAE", "d=2", "MNIST: paper") == "-90.00 †"  # the same source, the same mark
    assert cell(df, "IWAE", "-", "MNIST: paper") == "-84.00 ‡"
    assert cell(df, "IWAE", "d=2", "MNIST: paper") == "-89.00"  # confirmed: no mark
    assert cell(df, "VAE", "d=5", "MNIST: paper") == "-95.00 (unverified)"
    assert notes[1:] == [f"† {POSTER}", f"‡ {SPECIAL}"]


def test_marks_go_on_after_the_five_symbols_and_never_repeat():
    assert [mark(i) for i in range(12)] == [*"†‡§¶‖", "††", "‡‡", "§§", "¶¶", "‖‖", "†††", "‡‡‡"]
    assert len({mark(i) for i in range(200)}) == 200


def test_the_vlae_table_marks_its_three_sources_apart():
    df, notes = build_table("unused-storage", PAPERS["vlae"])
    assert cell(df, "VAE", "-", "MNIST (binarized): paper") == "-85.37 †"
    assert cell(df, "VAE", "-", "CIFAR-10: paper") == "2364.00 ‡"
    assert cell(df, "VLAE", "n_update=4", "MNIST (continuous; logit transform): paper") == (
        "-381.20 §"
    )
    assert [n[0] for n in notes[1:]] == ["†", "‡", "§"]


def test_latex_escape_handles_every_special():
    assert latex_escape(r"a_b & 5% #1 $x$ {y} ~ ^ \z") == (
        r"a\_b \& 5\% \#1 \$x\$ \{y\} \textasciitilde{} \textasciicircum{} \textbackslash{}z"
    )
    assert latex_escape("1 ± 2 – x ††") == r"1 \ensuremath{\pm} 2 -- x \textsuperscript{\dag\dag}"


def test_latex_prints_the_notes_below_the_tabular_with_specials_escaped(toy):
    df, notes = build_table(toy, TOY)
    tex = render(df, notes, TOY.title, "latex")
    assert not re.search(r"(?<!\\)%", tex)  # no comment: every % is an escaped, printed one
    assert tex.isascii()  # every mark and symbol spelled in LaTeX
    assert r"\caption{Toy: LL \& the 5\% rule}" in tex
    assert r"-84.00 \textsuperscript{\ddag}" in tex
    below = tex[tex.index(r"\end{tabular}") : tex.index(r"\end{table}")]
    assert r"\textsuperscript{\dag} author-artefact: poster A\par" in below
    escaped = (
        r"blog\_1 \& 50\% \#2 \$x\$ \{y\} \textasciitilde{}z \textasciicircum{}w \textbackslash{}v"
    )
    assert rf"\textsuperscript{{\ddag}} secondary: {escaped}\par" in below
    assert "ours: best-by-validation" in below
    plain = re.sub(r"\\[{}$]", "", tex)
    assert plain.count("{") == plain.count("}") and plain.count("$") % 2 == 0


def test_csv_is_a_long_table_of_numbers_for_ours_and_the_paper(toy):
    df, notes = build_table(toy, TOY)
    back = pd.read_csv(io.StringIO(render(numbers(toy, TOY), notes, "T", "csv")))
    assert list(back.columns) == NUMBERS
    for column in ("mean", "std", "n", "k"):
        assert pd.api.types.is_numeric_dtype(back[column]), column
    rows = back.set_index(["model", "variant", "who"])
    vae = rows.loc[("VAE", "-", "ours")]
    assert vae["mean"] == pytest.approx(-86.1666667) and vae["std"] == pytest.approx(1.2583057)
    assert (vae["n"], vae["k"], vae["trial_id"]) == (3, 100, "t-vae") and pd.isna(vae["trust"])
    iwae = rows.loc[("IWAE", "-", "ours")]
    assert (iwae["mean"], iwae["n"], iwae["k"]) == (-85.125, 1, 5000) and pd.isna(iwae["std"])
    paper = rows.loc[("VAE", "-", "paper")]
    assert (paper["mean"], paper["std"], paper["k"]) == (-85.0, 0.5, 5000) and pd.isna(paper["n"])
    assert (paper["source"], paper["trust"], paper["dataset"]) == (POSTER, "reference", "MNIST")
    assert rows.loc[("IWAE", "d=2", "paper"), "trust"] == "confirmed"
    assert len(back) == 2 + 5  # one row per (model, variant, dataset, metric, who)


def test_an_empty_table_still_renders(tmp_path):
    df, notes = build_table(str(tmp_path), PAPERS["psvae19"])  # no results, no paper numbers
    assert list(df.columns) == ["Model", "Variant", "Protocol"] and df.empty
    assert r"\end{tabular}" in render(df, notes, "T", "latex")
    csv = render(numbers(str(tmp_path), PAPERS["psvae19"]), notes, "T", "csv")
    assert list(pd.read_csv(io.StringIO(csv)).columns) == NUMBERS
