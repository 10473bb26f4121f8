"""`python -m results report <paper>`: one HTML page (tables, comparison, figures, each cell's
winner, cost and links) that opens from disk, says what the storage lacks, and renders in
headless Chromium."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import optuna
import pytest
from PIL import Image

from results import samples, store
from results.__main__ import main as results_main
from results.rows import curve_rows, key_sources, trial_row

PAPER = "vlae"
SPACE = {
    "model/latent_dim": optuna.distributions.IntDistribution(2, 64),
    "train/lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
}
FIXED = {"train/max_epochs": "budget", "train/batch_size": "--set"}
T0 = 1_796_000_000.0


def cell_of(family: str) -> dict:
    return {"sweep": f"{PAPER}-{family}-fashion_mnist-gaussian", "paper": PAPER,
            "family": family, "dataset": "fashion_mnist", "likelihood": "gaussian",
            "variant": "-", "protocol": "project"}  # fmt: skip


def add_trial(storage, study, cell, tid, status, params, losses):
    """A trial as the sweep leaves it: its row (with key sources and Optuna number), its curve
    rows and its Optuna trial."""
    history = [{"epoch": e + 1, "train_loss": v + 5, "val_loss": v} for e, v in enumerate(losses)]
    last = {"epoch": len(losses), "time_total_s": 50.0, "n_parameters": 1000 * params.get(
        "model/latent_dim", 1)}  # fmt: skip
    if status == "completed":
        last |= {"finished": True, "stop_reason": "max_epochs", "best_val_loss": min(losses)}
    error = "Traceback ...\nFloatingPointError: the loss is nan" if status == "errored" else None
    config = {**params, "train/max_epochs": 4, "train/batch_size": 128, "train/patience": 10}
    number = len(study.trials)
    times = (T0 + 60 * number, T0 + 60 * number + 50)
    row = trial_row(cell, tid, config, last, history, error=error, retries=0, checkpoint_path="",
                    gpus=0.0, cpus=1.0, provenance={}, times=times, optuna_trial=number,
                    sources=key_sources(config, FIXED, set(params)))  # fmt: skip
    store.write(storage, "trials", cell["sweep"], tid, [row])
    if history:
        store.write(storage, "curves", cell["sweep"], tid, curve_rows(cell["sweep"], tid, history))
    state = {"completed": "COMPLETE", "pruned": "PRUNED"}.get(status, "FAIL")
    study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState[state], params=params, distributions=SPACE,
        value=min(losses) if status == "completed" else None, user_attrs={"tune_trial_id": tid},
        intermediate_values={e + 1: v for e, v in enumerate(losses)},
    ))  # fmt: skip


def study_of(storage, cell):
    path = f"{storage}/optuna/{cell['sweep']}.journal"
    backend = optuna.storages.journal.JournalFileBackend(path)
    return optuna.create_study(
        study_name=cell["sweep"], storage=optuna.storages.JournalStorage(backend)
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A vlae storage with a healthy cell (evaluated, sample grids), a cell of pruned trials
    only, a cell with errored trials, a cell with a record and no rows; the table's VLAE cell
    is missing. Its report, written
    once: (storage, exit code, stdout, stderr, page)."""
    root = tmp_path_factory.mktemp("report")
    s = str(root / "store")
    (root / "store" / "optuna").mkdir(parents=True)
    vae, savae, iaf = (cell_of(f) for f in ("vae", "savae", "vae_iaf"))
    study = study_of(s, vae)
    for i, (dim, lr, start) in enumerate([(8, 1e-3, 300.0), (32, 3e-3, 280.0), (16, 1e-4, 320.0)]):
        losses = [start - 3.0 * e for e in range(4)]
        add_trial(s, study, vae, f"v{i}", "completed", {"model/latent_dim": dim, "train/lr": lr},
                  losses)  # fmt: skip
    add_trial(s, study, vae, "v3", "pruned", {"model/latent_dim": 4, "train/lr": 5e-3}, [400.0])
    evals = [{"trial_id": "v1", "seed": k, "test_log_likelihood": -271.0 - k, "k": 100,
              "cpu_seconds": 30.0} for k in range(2)]  # fmt: skip
    store.write(s, "evaluations", vae["sweep"], "v1-e", evals)
    grid = np.random.default_rng(0).integers(0, 255, (16, 1, 28, 28), dtype=np.uint8)
    samples.write(s, vae["sweep"], "v1", "vae", {"t1.0": grid}, decoder_mean=True)
    study = study_of(s, savae)
    for i in range(2):
        add_trial(s, study, savae, f"s{i}", "pruned",
                  {"model/latent_dim": 8 + i, "train/lr": 1e-3}, [350.0, 349.0])  # fmt: skip
    study = study_of(s, iaf)
    add_trial(s, study, iaf, "i0", "completed", {"model/latent_dim": 8, "train/lr": 1e-3},
              [300.0, 290.0])  # fmt: skip
    add_trial(s, study, iaf, "i1", "errored", {"model/latent_dim": 9, "train/lr": 1e-2}, [310.0])
    hf = cell_of("vae_hf")
    store.write_cell_record(s, hf["sweep"], {"cell": hf})  # started, its rows lost
    capture = io.StringIO(), io.StringIO()
    import contextlib

    with contextlib.redirect_stdout(capture[0]), contextlib.redirect_stderr(capture[1]):
        code = results_main(["report", PAPER, "--storage", s])
    page = root / "store" / "report" / f"{PAPER}.html"
    return s, code, capture[0].getvalue(), capture[1].getvalue(), page


def sources(html: str, tag: str, attribute: str) -> list[str]:
    return re.findall(rf'<{tag}\b[^>]*\b{attribute}="([^"]+)"', html)


def test_the_page_holds_the_tables_notes_cells_and_what_is_missing(report):
    s, code, out, err, page = report
    assert code == 0, err
    assert out.strip().splitlines()[-1] == f"wrote {page}"
    html = page.read_text()
    assert "<h2>Table: VLAE (Park et al., ICML 2019)" in html and "FashionMNIST: ours" in html
    assert "ours: best-by-validation configuration per cell" in html  # the table's notes
    assert "<h2>Comparison</h2>" in html and "<h2>What is missing</h2>" in html
    iaf, savae = cell_of("vae_iaf")["sweep"], cell_of("savae")["sweep"]
    for line in [
        f"cell {savae}: only pruned trials (2): no winner to mark",
        f"cell {iaf}: 1 errored trial",  # (s): results.figures' wording
        "the first: FloatingPointError: the loss is nan",
    ]:
        assert line in html, line
        assert line in err, line
    hf = cell_of("vae_hf")["sweep"]
    assert f"cell {hf}: no trial rows in the storage" in err and f"<h3>{hf}</h3>" in html
    missing = r"no rows for [^<]*\bvlae on fashion_mnist \(gaussian\)"  # the VLAE cell: none
    assert re.search(missing, html) and re.search(missing, err)
    assert "1 × FloatingPointError: the loss is nan" in html  # the errored cell's reason
    # the healthy cell's winner: its config with each key's source, its Optuna trial, its cost
    assert "Winner: trial v1, Optuna trial 1</h4>" in html
    for key, source in [("model/latent_dim", "search"), ("train/lr", "search"),
                        ("train/max_epochs", "budget"), ("train/batch_size", "--set"),
                        ("train/patience", "default")]:  # fmt: skip
        assert re.search(rf"<td>{re.escape(key)}</td>\s*<td>[^<]+</td>\s*<td>{re.escape(source)}"
                         "</td>", html), key  # fmt: skip
    assert "2026-11-30 00:54:20 UTC → 2026-11-30 00:55:10 UTC (50 s)" in html
    assert re.search(r"<th>CPU core-h</th><td>0.0722</td>", html)  # 4 trials x 50 s + 2 x 30 s
    # the Pareto fronts (results.pareto): VAE+IAF i0 (8,000 parameters, beating v0) and v1
    assert "<h2>Pareto fronts: validation loss against size and GPU-hours</h2>" in html
    assert "FashionMNIST: validation loss vs parameters: 2 of 4 completed trials" in html
    assert "VAE trial v1: val loss 271.00, parameters 32,000  test LL -271.50  &lt;- table " \
           "pick (validation)" in html  # fmt: skip
    assert 'src="../plots/vlae-pareto.png"' in html


def test_every_image_and_link_resolves_relative_to_the_page(report):
    s, _, _, _, page = report
    html = page.read_text()
    images = sources(html, "img", "src")
    assert all(src.startswith("../") for src in images)
    assert {Path(src).name for src in images} >= {
        f"{cell_of('vae')['sweep']}-{kind}.png" for kind in ("curves", "history", "importances")
    } | {f"{cell_of('vae')['sweep']}.png"}  # the winner's sample grid
    for src in images:
        target = (page.parent / src).resolve()
        assert target.is_file() and target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", src
    links = [h for h in sources(html, "a", "href") if not h.startswith("#")]
    assert f"../optuna/{cell_of('vae')['sweep']}.journal" in links
    assert f"../results/trials/{cell_of('vae')['sweep']}/" in links
    assert "../tables/vlae.md" in links
    assert all((page.parent / h).resolve().exists() for h in links)
    assert "<script" not in html and "http" not in html.replace("http-equiv", "")


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("no chromium binary (apt-get install chromium; make test installs it)")
    return found


def test_headless_chromium_renders_the_tables_and_images(report, tmp_path):
    _, _, _, _, page = report
    flags = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    shot = tmp_path / "shot.png"
    url = page.resolve().as_uri()
    subprocess.run([*flags, "--window-size=1400,3000", f"--screenshot={shot}", url],
                   capture_output=True, timeout=120, check=True)  # fmt: skip
    image = Image.open(shot).convert("L")
    assert image.size == (1400, 3000)
    blank = io.BytesIO()
    Image.new("L", image.size, 255).save(blank, format="PNG")
    assert shot.stat().st_size > 20 * len(blank.getvalue())
    inked = np.asarray(image) < 200
    assert inked.mean() > 0.02  # text, table rules and figures, not an empty page
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True,
                         timeout=120, check=True).stdout  # fmt: skip
    assert dom.count("<table") >= 4 and "FashionMNIST: ours" in dom
    images = sources(dom, "img", "src")
    assert len(images) >= 6
    assert all((page.parent / src).resolve().is_file() for src in images)


def test_an_unknown_paper_and_a_path_without_a_sweep_are_one_line_each(report, tmp_path, capsys):
    s = report[0]
    assert results_main(["report", "vlea", "--storage", s]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown paper 'vlea'" in err and "'vlae'" in err
    empty = tmp_path / "nothing"
    assert results_main(["report", PAPER, "--storage", str(empty)]) == 2
    assert capsys.readouterr().err.strip() == f"error: no sweep under {empty}"
    assert not empty.exists()
