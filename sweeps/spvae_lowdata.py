"""The SPVAE paper's low-data experiment (docs/specs/spvae.md#8-low-data-experiment): SPVAE and the
VAE trained on the first 1% ... 90% of the training set, with the configuration fixed per setting.

    python sweeps/spvae_lowdata.py --budget smoke            # Fashion-MNIST at 4 fractions
    ray submit cluster/gpu.yaml sweeps/spvae_lowdata.py --budget paper
    python -m results plot spvae_lowdata                      # the PNG: test bound vs fraction

One cell per (setting, model, fraction), one trial each: nothing is searched (the authors did not
re-tune per fraction). The metric is the K = 5 test bound of the best-validation checkpoint, as in
the authors' figure, not the K = 5000 estimate of the main table.
"""

import dataclasses
import sys

from sweeps import spvae
from sweeps.cells import Cell
from sweeps.engine.cli import main
from sweeps.spvae import SETTINGS, setting_config

PAPER = "spvae_lowdata"

FRACTIONS = [i / 100 for i in range(1, 10)] + [i / 10 for i in range(1, 10)]
"""take_frac: 0.01, 0.02, ..., 0.09, 0.1, 0.2, ..., 0.9 (18 values)."""
SMOKE_FRACTIONS = [0.01, 0.1, 0.5]

CONFIGS = {
    # (dataset, variant): {family: (hidden_dims, latent_dim)}, the table of
    # docs/specs/spvae.md#8-low-data-experiment
    ("mnist", "perturbed"): {"spvae_vae": ("300,300", 200), "spvae": ("32,32", 25)},
    ("mnist", "discrete"): {"spvae_vae": ("300,300", 200), "spvae": ("32,32", 25)},
    ("svhn", "perturbed"): {"spvae_vae": ("300,300", 100), "spvae": ("32,32", 50)},
    ("svhn", "discrete"): {"spvae_vae": ("600,600", 100), "spvae": ("32,32", 25)},
    ("cifar10", "perturbed"): {"spvae_vae": ("300,300", 50), "spvae": ("32,32", 25)},
    ("cifar10", "discrete"): {"spvae_vae": ("600,600", 200), "spvae": ("32,32", 25)},
    # the smoke setting borrows MNIST's
    ("fashion_mnist", "perturbed"): {"spvae_vae": ("300,300", 200), "spvae": ("32,32", 25)},
    ("fashion_mnist", "discrete"): {"spvae_vae": ("300,300", 200), "spvae": ("32,32", 25)},
}


def lowdata_cell(dataset: str, variant: str, family: str, fraction: float) -> Cell:
    likelihood, pixels = SETTINGS[variant]
    hidden, nz = CONFIGS[dataset, variant][family]
    return Cell(
        PAPER,
        family,
        dataset,
        likelihood,
        variant=f"{fraction:.0%}",
        fixed={
            **setting_config(family, dataset, pixels),
            "model/hidden_dims": hidden,
            "model/latent_dim": nz,
            "data/train_fraction": fraction,
        },
    )


CELLS = [
    lowdata_cell(dataset, variant, family, fraction)
    for (dataset, variant), families in CONFIGS.items()
    for family in families
    for fraction in (SMOKE_FRACTIONS if dataset == "fashion_mnist" else FRACTIONS)
]

BUDGETS = {  # the main sweep's, with one trial per cell (nothing is searched), the K = 5 bound
    "smoke": dataclasses.replace(spvae.BUDGETS["smoke"], trials=1, grace_epochs=2),
    "paper": dataclasses.replace(
        spvae.BUDGETS["paper"], trials=1, grace_epochs=1000, eval_k=5, eval_seeds=3
    ),
}

DEFAULT_DATASETS = {"smoke": ["fashion_mnist"], "paper": ["mnist", "svhn", "cifar10"]}

if __name__ == "__main__":
    sys.exit(main(PAPER, CELLS, BUDGETS, DEFAULT_DATASETS, protocols=spvae.PROTOCOLS))
