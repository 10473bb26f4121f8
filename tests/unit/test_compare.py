"""`python -m results compare`: the equal-budget comparison, checked against hand computations on
a small stored sweep of the VLAE paper's table (MNIST, Bernoulli), with a cell of only pruned
trials, a cell of errored trials, a cell not evaluated and cells the table has but the storage
lacks."""

from __future__ import annotations

import math
import statistics

import matplotlib.image
import pandas as pd
import pytest
from scipy import stats

from results import compare, store
from results.__main__ import main
from results.papers import PAPERS

CELL = {"paper": "vlae", "dataset": "mnist", "likelihood": "bernoulli", "variant": "-"}


def write_trial(storage, family, trial_id, lls=(), **row):
    """A completed search trial of ``family``'s MNIST cell (unless ``row`` says otherwise) and
    its test evaluations, one per importance-sampling seed, each costing 36 CPU-s and 18 GPU-s."""
    sweep = f"vlae-{family}-{row.get('dataset', 'mnist')}-{row.get('likelihood', 'bernoulli')}"
    trial = {"sweep": sweep, "family": family, **CELL, "trial_id": trial_id, "role": "search"}
    trial |= {"seed_of": "", "status": "completed", "reason": "", "best_val_loss": 90.0}
    trial |= {"epochs": 10, "seed": 0, "gpu_seconds": 1800.0, "cpu_seconds": 3600.0} | row
    store.write(storage, "trials", sweep, trial_id, [trial])
    evals = [
        {"sweep": sweep, "trial_id": trial_id, "seed": s, "test_log_likelihood": v, "k": 100,
         "cpu_seconds": 36.0, "gpu_seconds": 18.0}
        for s, v in enumerate(lls)
    ]  # fmt: skip
    if evals:
        store.write(storage, "evaluations", sweep, f"{trial_id}-e", evals)


@pytest.fixture
def sweep(tmp_path):
    """VAE and VLAE: each a winner and two re-trainings (role=seed), two IS seeds per run.
    VAE's search also has a worse completed trial and a pruned one; its search trials ended in
    the order t-vae-2, t-vae-3 (pruned), t-vae (ended_at). VAE+HF: only pruned trials; VAE+IAF:
    an errored and a pruned trial; SA-VAE: no rows; VAE on Fashion-MNIST: not evaluated."""
    s = str(tmp_path / "store")
    write_trial(s, "vae", "t-vae", [-86.0, -86.5], ended_at=300.0)
    write_trial(s, "vae", "t-vae-2", [], best_val_loss=95.0, epochs=8, gpu_seconds=900.0,
                cpu_seconds=1800.0, ended_at=100.0)  # fmt: skip
    write_trial(s, "vae", "t-vae-3", [], status="pruned", best_val_loss=99.0, epochs=2,
                gpu_seconds=360.0, cpu_seconds=720.0, ended_at=200.0)  # fmt: skip
    for i, lls in ((1, [-85.0, -85.5]), (2, [-87.5, -88.0])):
        write_trial(s, "vae", f"t-vae-s{i}", lls, role="seed", seed_of="t-vae", seed=i)
    write_trial(s, "vlae", "t-vlae", [-84.0, -84.2], best_val_loss=88.0)
    for i, lls in ((1, [-84.4, -84.6]), (2, [-83.8, -84.0])):
        write_trial(s, "vlae", f"t-vlae-s{i}", lls, role="seed", seed_of="t-vlae", seed=i)
    for i in (1, 2):
        write_trial(s, "vae_hf", f"t-hf-{i}", [], status="pruned", epochs=1)
    write_trial(s, "vae_iaf", "t-iaf-1", [], status="errored", best_val_loss=math.nan,
                reason="RuntimeError: the loss is NaN at step 12")  # fmt: skip
    write_trial(s, "vae_iaf", "t-iaf-2", [], status="pruned", epochs=1)
    write_trial(s, "vae", "t-fm", [], dataset="fashion_mnist", likelihood="gaussian")
    return s


def row_of(rows, family, dataset="mnist"):
    return next(r for r in rows if r["family"] == family and r["dataset"] == dataset)


def test_welch_t_and_p_equal_a_hand_computation(sweep):
    rows, _ = compare.comparison(sweep, PAPERS["vlae"])
    vae, vlae = row_of(rows, "vae"), row_of(rows, "vlae")
    # per training run: the mean over its two IS seeds
    a, b = [-86.25, -85.25, -87.75], [-84.1, -84.5, -83.9]
    assert vae["values"] == pytest.approx(a) and vlae["values"] == pytest.approx(b)
    # Welch by hand: t = (mean_a - mean_b) / sqrt(va/na + vb/nb); Welch–Satterthwaite df
    va, vb = statistics.variance(a) / 3, statistics.variance(b) / 3
    t = (statistics.mean(a) - statistics.mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)
    p = 2 * stats.t.sf(abs(t), df)
    assert vae["t"] == pytest.approx(t) and vae["df"] == pytest.approx(df)
    assert vae["p"] == pytest.approx(p)
    assert vae["ll_mean"] == pytest.approx(-86.41667, abs=1e-5)
    assert vae["ll_std"] == pytest.approx(statistics.stdev(a))
    assert vlae["verdict"] == "best" and vae["n"] == vlae["n"] == 3
    assert vae["verdict"] == f"{'worse' if p < 0.05 else 'not distinguishable'} (p={p:.2g})"


def test_budget_sums_equal_hand_sums(sweep):
    rows, _ = compare.comparison(sweep, PAPERS["vlae"])
    vae = row_of(rows, "vae")
    # trials: 1800 + 900 + 360 + 1800 + 1800 GPU-s; evaluations: 6 x 18 GPU-s
    assert vae["gpu_hours"] == pytest.approx((6660 + 108) / 3600)
    # trials: 3600 + 1800 + 720 + 3600 + 3600 CPU-s; evaluations: 6 x 36 CPU-s
    assert vae["cpu_hours"] == pytest.approx((13320 + 216) / 3600)
    assert vae["epochs"] == 10 + 8 + 2 + 10 + 10
    assert (vae["search_completed"], vae["search_pruned"], vae["search_errored"]) == (2, 1, 0)


def test_anytime_curve_follows_the_order_the_trials_ended(sweep):
    trials = store.load(sweep, "trials")
    search = trials[(trials["family"] == "vae") & (trials["dataset"] == "mnist")]
    search = search[search["role"] == "search"]
    assert compare.resource(search) == "gpu_seconds"
    x, y = compare.anytime(search, "gpu_seconds")
    # t-vae-2 (900 s, 95), t-vae-3 (pruned, 360 s), t-vae (1800 s, 90)
    assert list(x) == pytest.approx([900 / 3600, 1260 / 3600, 3060 / 3600])
    assert list(y) == [95.0, 95.0, 90.0]
    cpu_only = search.assign(gpu_seconds=0.0)
    assert compare.resource(cpu_only) == "cpu_seconds"
    assert "no GPU used" in compare.RESOURCES["cpu_seconds"]


def test_cli_names_what_is_missing_and_writes_tables_and_pngs(sweep, capsys):
    assert main(["compare", "vlae", "--storage", sweep]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()

    def line(model):
        return next(ln for ln in lines if ln.startswith(f"| {model} |"))

    assert "only pruned trials (2)" in line("VAE+HF")
    assert "errored trials: RuntimeError: the loss is NaN at step 12" in line("VAE+IAF")
    assert "no cell in the storage" in line("SA-VAE")
    assert "not evaluated" in out
    assert "SVHN: svhn (gaussian): no cell in the storage" in out
    assert "a cell with no completed search trial is not drawn" in out
    pngs = [
        ln.removeprefix("wrote ") for ln in lines if ln.startswith("wrote ") and ln.endswith(".png")
    ]
    assert [p.rsplit("/", 1)[1] for p in pngs] == [
        "compare-mnist-bernoulli.png",
        "compare-fashion_mnist-gaussian.png",
    ]
    for path in pngs:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        height, width, _ = matplotlib.image.imread(path).shape
        assert (width, height) == (840, 540)  # 7 x 4.5 in at dpi 120
    csv = pd.read_csv(f"{sweep}/tables/vlae-compare.csv")
    vae = csv[(csv["family"] == "vae") & (csv["dataset"] == "mnist")].iloc[0]
    assert vae["gpu_hours"] == pytest.approx(6768 / 3600) and vae["n"] == 3
    with open(f"{sweep}/tables/vlae-compare.md") as f:
        assert f.read() in out


def test_unknown_paper_names_the_choices(sweep, capsys):
    assert main(["compare", "nope", "--storage", sweep]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'nope'" in err and "spvae" in err and "vlae" in err


def test_no_sweep_under_the_path_creates_nothing(tmp_path, capsys):
    missing = tmp_path / "nothing-here"
    assert main(["compare", "vlae", "--storage", str(missing)]) == 2
    assert capsys.readouterr().err.strip() == f"error: no sweep under {missing}"
    assert not missing.exists()


def test_the_legend_names_each_cell_by_its_model_and_t_and_never_twice(tmp_path):
    """VLAE and SA-VAE at T=1 and T=4: four lines, four entries, each naming its T."""
    s = str(tmp_path / "store")
    for family in ("vlae", "savae"):
        for t in (1, 4):
            write_trial(s, family, f"t-{family}-{t}", [-84.0], variant=f"T={t}",
                        sweep=f"vlae-{family}-mnist-bernoulli-T{t}", ended_at=float(t))  # fmt: skip
    rows, _ = compare.comparison(s, PAPERS["vlae"])
    here = [r for r in rows if r["dataset"] == "mnist" and r["sweep"]]
    lines, _, _ = compare.anytime_lines(s, here)
    labels = [label for label, _, _ in lines]
    assert len(labels) == len(set(labels)) == 4
    assert sorted(label.split(":")[0] for label in labels) == [
        "SA-VAE T=1", "SA-VAE T=4", "VLAE T=1", "VLAE T=4"]  # fmt: skip
    assert all(label.endswith(": 1 trial, 10 epochs") for label in labels)
