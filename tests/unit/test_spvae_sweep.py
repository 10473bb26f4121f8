"""The SPVAE paper's sweeps: cells, the authors' grids (TPE and grid replay), the table, the
low-data experiment's fractions. End to end on a real local Ray instance:
tests/e2e/test_spvae_sweep_journeys.py."""

from __future__ import annotations

import itertools
import math

import optuna
import pytest

import search_spaces
from results.plots import fraction
from sweeps import spvae, spvae_lowdata
from sweeps.engine import cli
from training.config import Config


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
        # docs/specs/spvae.md#4-training-protocol
        assert lr == (1e-2 if c.family in ("spvae", "convspvae") else 1e-3)
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
