"""DVP-VAE's sweep: the cells, their configs, the table beside DCT-VAE's. End to end on Ray:
tests/e2e/test_dvp_vae_sweep_journeys.py."""

from __future__ import annotations

import itertools

import optuna

import search_spaces
from results.papers import PAPERS
from results.tables import build_table
from sweeps import dvp_vae
from training.config import Config


def test_cells_are_both_families_on_every_dataset_with_the_authors_settings():
    grid = {(c.family, c.dataset, c.likelihood) for c in dvp_vae.CELLS}
    for family in ("ladder", "dvp_vae"):
        for dataset, likelihood in (("mnist", "bernoulli"), ("omniglot", "bernoulli"),
                                    ("cifar10", "logistic_mixture"),
                                    ("fashion_mnist", "bernoulli")):  # fmt: skip
            assert (family, dataset, likelihood) in grid
    mnist = next(c for c in dvp_vae.CELLS if (c.family, c.dataset) == ("dvp_vae", "mnist"))
    cfg = Config.from_dict(mnist.base_config(dvp_vae.BUDGETS["paper"]))
    assert (cfg.data.val_size, cfg.data.split_seed, cfg.data.binarize) == (5000, 123, True)
    assert (cfg.train.optimizer, cfg.train.ema_rate, cfg.train.lr_warmup_epochs) == (
        "adamax", 0.999, 2)  # fmt: skip
    assert (cfg.train.max_epochs, cfg.train.patience, cfg.train.loss_scale) == (300, 150, "bpd")
    assert (cfg.model.ctx_size, cfg.model.diffusion_steps, cfg.model.gamma_min) == (7, 25, -6.0)
    assert not cfg.train.test_last_epoch  # the project tests the best-validation EMA weights
    ladder = next(c for c in dvp_vae.CELLS if (c.family, c.dataset) == ("ladder", "omniglot"))
    cfg = Config.from_dict(ladder.base_config(dvp_vae.BUDGETS["paper"]))
    assert cfg.train.patience == 150 and cfg.model.aggregate_latents and cfg.model.num_ch == 80
    cifar = next(c for c in dvp_vae.CELLS if (c.family, c.dataset) == ("dvp_vae", "cifar10"))
    cfg = Config.from_dict(cifar.base_config(dvp_vae.BUDGETS["paper"]))
    assert cfg.model.mix_coeffs and cfg.model.mix_scale == "log" and not cfg.data.hflip
    assert (cfg.train.grad_clip, cfg.train.lr_cosine_epochs, cfg.model.gamma_min) == (
        150.0, 3000, -10.0)  # fmt: skip


def test_every_cell_with_every_budget_and_a_sampled_point_is_a_valid_config():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for cell, budget in itertools.product(dvp_vae.CELLS, dvp_vae.BUDGETS.values()):
        base = cell.base_config(budget)
        trial = study.ask()
        search_spaces.space_for(cell.family, base)(trial)
        cfg = Config.from_dict({**base, **trial.params})
        assert 1e-3 <= cfg.train.lr <= 1e-2  # Adamax's range
        if cell.dataset != "fashion_mnist":  # the authors' architecture is never searched
            assert not {k for k in trial.params if k.startswith("model/")}, trial.params
        study.tell(trial, 0.0)


def test_the_table_says_what_is_not_transcribed_and_shows_dct_vae_beside(tmp_path):
    df, notes = build_table(str(tmp_path), PAPERS["dvp_vae"])
    rows = {(r["Model"], r["Variant"]): r for _, r in df.iterrows()}
    dvp = rows[("DVP-VAE", "-")]
    assert dvp["MNIST (dyn. binarized) NLL: paper"] == "not transcribed"
    assert dvp["CIFAR-10 bpd: paper"] == "not transcribed"
    assert dvp["MNIST (dyn. binarized) params (M): paper"].startswith("0.65 ")
    assert dvp["CIFAR-10 params (M): paper"].startswith("19.48 ")
    assert rows[("DCT-VAE", "-")]["MNIST (dyn. binarized) NLL: paper"].startswith("76.62 ")
    assert rows[("Ladder VAE (DVP-VAE form)", "-")]["OMNIGLOT params (M): paper"].startswith("1.06")
    assert any("AKuzina/dvp_vae" in n for n in notes)
