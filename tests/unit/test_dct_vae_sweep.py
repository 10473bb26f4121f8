"""DCT-VAE's sweep: the cells, their configs, the table with the authors' numbers. End to end on
Ray: tests/e2e/test_dct_vae_sweep_journeys.py."""

from __future__ import annotations

import itertools

import optuna

import search_spaces
from results.papers import PAPERS
from results.tables import build_table
from sweeps import dct_vae
from training.config import Config


def test_cells_are_both_families_on_every_dataset_with_the_authors_settings():
    grid = {(c.family, c.dataset, c.likelihood) for c in dct_vae.CELLS}
    for family in ("ladder", "dct_vae"):
        for dataset, likelihood in (("mnist", "bernoulli"), ("omniglot", "bernoulli"),
                                    ("cifar10", "logistic_mixture"), ("svhn", "logistic_mixture"),
                                    ("fashion_mnist", "bernoulli")):  # fmt: skip
            assert (family, dataset, likelihood) in grid
    mnist = next(c for c in dct_vae.CELLS if (c.family, c.dataset) == ("dct_vae", "mnist"))
    cfg = Config.from_dict(mnist.base_config(dct_vae.BUDGETS["paper"]))
    assert (cfg.data.val_size, cfg.data.split_seed, cfg.data.binarize) == (5000, 123, True)
    assert (cfg.train.optimizer, cfg.train.lr_schedule, cfg.train.max_epochs) == (
        "adamw",
        "cosine",
        600,
    )
    assert (cfg.model.latent_scales, cfg.model.ctx_size, cfg.model.ctx_bits) == ("4,3", 7, 2)
    cifar = next(c for c in dct_vae.CELLS if (c.family, c.dataset) == ("dct_vae", "cifar10"))
    cfg = Config.from_dict(cifar.base_config(dct_vae.BUDGETS["paper"]))
    assert cfg.data.hflip and cfg.data.pixels == "discrete" and cfg.train.amp == "fp16"
    assert cfg.train.loss_scale == "bpd_per_dim" and cfg.train.grad_clip == 0.2


def test_every_cell_with_every_budget_and_a_sampled_point_is_a_valid_config():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for cell, budget in itertools.product(dct_vae.CELLS, dct_vae.BUDGETS.values()):
        base = cell.base_config(budget)
        trial = study.ask()
        search_spaces.space_for(cell.family, base)(trial)
        cfg = Config.from_dict({**base, **trial.params})
        if cell.dataset != "fashion_mnist":  # the authors' architecture is never searched
            assert not {k for k in trial.params if k.startswith("model/")}, trial.params
            assert cfg.model.latent_scales == dct_vae.ARCH[cell.dataset, cell.family][
                "model/latent_scales"]  # fmt: skip
        study.tell(trial, 0.0)


def test_the_table_lines_up_the_authors_numbers_and_the_baselines(tmp_path):
    df, notes = build_table(str(tmp_path), PAPERS["dct_vae"])
    rows = {(r["Model"], r["Variant"]): r for _, r in df.iterrows()}
    dct = rows[("DCT-VAE", "-")]
    assert dct["MNIST (dyn. binarized) NLL: paper"].startswith("76.62 ")
    assert dct["CIFAR-10 bpd: paper"].startswith("3.26 ")
    assert dct["MNIST (dyn. binarized) AU %: paper"].startswith("49.00 ")
    assert dct["CIFAR-10 params (M): paper"].startswith("18.76 ")
    baseline = rows[("hierarchical VAE baseline (no context)", "-")]
    assert baseline["MNIST (dyn. binarized) AU %: paper"].startswith("34.00 ")
    assert rows[("VDVAE", "39M params; mean of 4 seeds (2.879, 2.842, 2.898, 2.864)")][
        "CIFAR-10 bpd: paper"] == "2.87"  # fmt: skip
    assert any("AKuzina/dct_vae README" in n for n in notes)
