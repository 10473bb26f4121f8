"""The VLAE paper's sweep: every model x T x dataset as cells, their configs, the table. End to
end on Ray: tests/e2e/test_vlae_sweep_journeys.py."""

from __future__ import annotations

import itertools

import optuna

import search_spaces
from results.papers import PAPERS
from results.tables import build_table
from sweeps import vlae
from training.config import Config


def test_cells_are_every_model_at_every_t_on_every_dataset():
    grid = {(c.family, c.dataset, c.variant) for c in vlae.CELLS}
    for dataset in ("mnist", "omniglot", "svhn", "cifar10"):
        assert ("vae", dataset, "-") in grid
        for family, t in itertools.product(vlae.STEPS, (1, 2, 3, 4, 8)):
            assert (family, dataset, f"T={t}") in grid
    names = [c.name for c in vlae.CELLS]
    assert len(names) == len(set(names))
    assert vlae.CELLS[0].name == "vlae-vae-fashion_mnist-gaussian"  # the spine's cell names stay
    assert {c.likelihood for c in vlae.CELLS if c.dataset == "mnist" and "T=" in c.variant} == {
        "bernoulli"
    }


def test_every_cell_with_every_budget_and_a_sampled_point_is_a_valid_config():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for cell, budget in itertools.product(vlae.CELLS, vlae.BUDGETS.values()):
        base = cell.base_config(budget)
        trial = study.ask()
        search_spaces.space_for(cell.family, base)(trial)
        cfg = Config.from_dict({**base, **trial.params})
        if cell.family in vlae.STEPS and cell.variant.startswith("T="):
            steps = {"savae": "svi_steps", "vae_hf": "flows", "vae_iaf": "flows", "vlae": "updates"}
            assert getattr(cfg.model, steps[cell.family]) == int(cell.variant[2:])
        study.tell(trial, 0.0)


def test_the_readme_run_cells_line_up_with_the_authors_numbers(tmp_path):
    df, _ = build_table(str(tmp_path), PAPERS["vlae"])
    column = "MNIST (continuous; logit transform): paper"
    readme = {(r["Model"], r["Variant"]): r[column] for _, r in df.iterrows() if r[column] != "–"}
    ours = {(PAPERS["vlae"].models[c.family], c.variant) for c in vlae.README_CELLS}
    assert set(readme) == ours and readme[("VLAE", "n_update=4")] == "-381.20 §"
    for c in vlae.README_CELLS:
        assert Config.from_dict(c.base_config(vlae.BUDGETS["paper"])).data.logit
