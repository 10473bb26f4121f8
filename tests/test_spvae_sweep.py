"""The SPVAE paper's sweeps: cells, the authors' grids (TPE and grid replay), the table, the
low-data experiment and its figure; end to end on a real local Ray instance."""

from __future__ import annotations

import dataclasses
import itertools
import math

import optuna
import pytest

import search_spaces
from results import store
from results.__main__ import main as results_main
from results.papers import PAPERS
from results.plots import fraction
from results.tables import build_table
from sweeps import cli, spvae, spvae_lowdata
from sweeps.cells import Budget
from training.config import Config

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


def grid_points(family: str, fixed: dict) -> list[dict]:
    grid = search_spaces.grid_for(family, fixed)
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def test_the_cells_are_four_models_by_six_settings_plus_the_smoke_settings():
    paper = [c for c in spvae.CELLS if c.dataset != "fashion_mnist"]
    assert len(paper) == 24 and len(spvae.CELLS) == 32
    assert {(c.dataset, c.variant) for c in paper} == {
        (d, v) for d in ("mnist", "svhn", "cifar10") for v in ("perturbed", "discrete")
    }
    names = [c.name for c in spvae.CELLS]
    assert len(names) == len(set(names))
    for c in spvae.CELLS:
        lr = c.fixed["train/lr"]
        assert lr == (1e-2 if c.family in ("spvae", "convspvae") else 1e-3)  # spec section 4
        assert c.likelihood == {"perturbed": "gaussian", "discrete": "binomial"}[c.variant]
    cell_sizes = {c.dataset: c.fixed["model/cell_size"] for c in paper if c.family == "spvae"}
    assert cell_sizes == {"mnist": 7, "svhn": 8, "cifar10": 8}


@pytest.mark.parametrize("module", [spvae, spvae_lowdata], ids=["spvae", "lowdata"])
def test_every_cell_with_every_budget_and_a_grid_point_is_a_valid_config(module):
    for cell, budget in itertools.product(module.CELLS, module.BUDGETS.values()):
        base = cell.base_config(budget)
        point = grid_points(cell.family, base)[0]
        cfg = Config.from_dict({**base, **point})
        assert cfg.data.pixels == ("perturbed" if cell.likelihood == "gaussian" else "discrete")
        assert cfg.data.minmax and not cfg.data.center


@pytest.mark.parametrize(
    "family, size", [("spvae", 48), ("spvae_vae", 32), ("convspvae", 15), ("spvae_convvae", 24)]
)
def test_grid_replay_visits_every_configuration_of_the_authors_grid_once(family, size):
    """--sampler grid: Optuna's GridSampler over the family's space, trial count = grid size."""
    grid = search_spaces.grid_for(family, {"train/lr": 1e-3})
    assert math.prod(map(len, grid.values())) == size
    study = optuna.create_study(sampler=optuna.samplers.GridSampler(grid, seed=0))
    space = search_spaces.space_for(family, {"train/lr": 1e-3})
    study.optimize(lambda t: space(t) or 0.0, n_trials=size)
    seen = {tuple(sorted(t.params.items())) for t in study.trials}
    assert len(seen) == size == len(study.trials)


def test_a_fixed_key_leaves_the_grid():
    grid = search_spaces.grid_for("spvae", {"model/latent_dim": 25})
    assert list(grid) == ["model/hidden_dims"]
    with pytest.raises(ValueError, match="family 'vae' has no authors' grid.*--sampler tpe"):
        search_spaces.grid_for("vae")


def test_grid_sampler_on_a_family_without_a_grid_fails_before_ray(tmp_path, capsys):
    from sweeps import vlae

    argv = ["--storage", str(tmp_path), "--sampler", "grid"]
    assert cli.main("vlae", vlae.CELLS, vlae.BUDGETS, {}, argv=argv) == 2
    assert "has no authors' grid" in capsys.readouterr().err


def test_fraction_variants_parse():
    assert fraction("1%") == 0.01 and fraction("90%") == 0.9
    with pytest.raises(ValueError, match="not a training fraction"):
        fraction("d=5")
    assert [c.variant for c in spvae_lowdata.CELLS[:3]] == ["1%", "2%", "3%"]
    assert len([c for c in spvae_lowdata.CELLS if c.dataset == "mnist"]) == 2 * 2 * 18


# --- end to end on a real local Ray instance --------------------------------------------------


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
