"""The SPVAE paper's sweeps end to end on a real local Ray instance: the smoke sweep fills the
table, grid replay through Tune, the low-data experiment draws its figure. Their cells, the
authors' grids and the table: tests/unit/test_spvae_sweep.py."""

from __future__ import annotations

import dataclasses

import pytest

import search_spaces
from results import store
from results.__main__ import main as results_main
from results.papers import PAPERS
from results.tables import build_table
from sweeps import spvae, spvae_lowdata
from sweeps.cells import Budget
from sweeps.engine import cli

TINY = Budget(
    trials=1,
    max_epochs=2,
    grace_epochs=1,
    reduction_factor=2,
    patience=2,
    eval_k=3,
    eval_seeds=1,
    fixed={"train/epoch_batches": 2, "data/val_fraction": 0.1, "train/batch_size": 16},
)
SMALL_MLP = {"model/hidden_dims": "8,8", "model/latent_dim": 2}


def smoke_cells(module, families, variants):
    return [
        c
        for c in module.CELLS
        if c.dataset == "fashion_mnist" and c.family in families and c.variant in variants
    ]


@pytest.mark.slow
def test_smoke_sweep_of_both_settings_fills_the_papers_table(ray_local, tmp_path, capsys):
    chosen = smoke_cells(spvae, ("spvae", "spvae_vae"), ("perturbed", "discrete"))
    assert len(chosen) == 4
    budget = dataclasses.replace(TINY, fixed={**TINY.fixed, **SMALL_MLP})
    argv = ["--storage", str(tmp_path), "--datasets", "fashion_mnist"]
    assert cli.main("spvae", chosen, {"smoke": budget}, {}, argv=argv) == 0
    trials = store.load(str(tmp_path), "trials")
    assert len(trials) == 4 and set(trials["status"]) == {"completed"}, trials["reason"]
    sizes = dict(zip(trials["family"] + trials["likelihood"], trials["n_parameters"], strict=True))
    assert sizes["spvae_vaegaussian"] > sizes["spvae_vaebinomial"] > 0  # 2 vs 1 decoder heads
    evals = store.load(str(tmp_path), "evaluations")
    assert len(evals) == 4 and evals["test_log_likelihood"].notna().all()
    df, _ = build_table(str(tmp_path), PAPERS["spvae"])
    row = df[(df["Model"] == "SPVAE") & (df["Variant"].str.startswith("perturbed"))].iloc[0]
    assert "(n=1, k=3)" in row["Fashion-MNIST: ours"]
    assert row["MNIST: paper"] == "2819.22 ‡‡"  # the paper's number in the same row
    out = capsys.readouterr().out
    assert "| SPVAE | discrete (Binomial likelihood) |" in out


@pytest.mark.slow
def test_grid_replay_through_tune_runs_each_point_once_unpruned(ray_local, tmp_path, monkeypatch):
    # a 2-point slice of the real grid (its values are among the space's choices)
    monkeypatch.setitem(search_spaces.GRIDS, "spvae_vae", {"model/latent_dim": [1, 2]})
    (cell,) = smoke_cells(spvae, ("spvae_vae",), ("perturbed",))
    budget = dataclasses.replace(TINY, fixed={**TINY.fixed, "model/hidden_dims": "8,8"})
    argv = ["--storage", str(tmp_path), "--datasets", "fashion_mnist", "--sampler", "grid"]
    assert cli.main("spvae", [cell], {"smoke": budget}, {}, argv=argv) == 0
    trials = store.load(str(tmp_path), "trials")
    assert sorted(trials["config/model/latent_dim"]) == [1, 2]  # the grid, not budget.trials
    assert set(trials["status"]) == {"completed"}


@pytest.mark.slow
def test_low_data_sweep_draws_the_fraction_figure(ray_local, tmp_path):
    chosen = [c for c in smoke_cells(spvae_lowdata, ("spvae_vae",), ("1%", "50%"))]
    chosen = [c for c in chosen if c.likelihood == "gaussian"]
    assert len(chosen) == 2
    budget = dataclasses.replace(TINY, fixed={**TINY.fixed, **SMALL_MLP})
    argv = ["--storage", str(tmp_path), "--datasets", "fashion_mnist"]
    assert cli.main("spvae_lowdata", chosen, {"smoke": budget}, {}, argv=argv) == 0
    trials = store.load(str(tmp_path), "trials")
    assert sorted(trials["config/data/train_fraction"]) == [0.01, 0.5]
    assert results_main(["plot", "spvae_lowdata", "--storage", str(tmp_path)]) == 0
    png = (tmp_path / "plots" / "spvae_lowdata.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
