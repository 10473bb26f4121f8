"""The SPVAE paper's sweep (Tan & Peharz, ICML 2019): SPVAE, ConvSPVAE and the VAE / ConvVAE
baselines on six settings (docs/specs/spvae.md).

    python sweeps/spvae.py --budget smoke                    # minutes on a CPU, Fashion-MNIST
    ray submit cluster/gpu.yaml sweeps/spvae.py --budget paper
    ray submit cluster/gpu.yaml sweeps/spvae.py --budget paper --sampler grid   # authors' grid

Cells: 4 models x 6 settings, a setting being a dataset (MNIST, SVHN and CIFAR-10 in greyscale)
with a likelihood: "perturbed" (Gaussian on noise-perturbed pixels) or "discrete" (Binomial(255)
on pixels rounded to 256 levels), every image min-max scaled
(docs/specs/spvae.md#3-data-and-preprocessing). Fashion-MNIST in both settings is the smoke run.
What the authors fixed, the cells fix: Adam at 1e-2 for the SP models and 1e-3 for the baselines,
batch 128, K = 5, sumK = leafK = 2 (docs/specs/spvae.md#4-training-protocol); the search space is
the authors' grid (search_spaces.spvae). The ``paper`` budget keeps the authors' epoch of 128
batches and their early stopping after 11 epochs without improvement, and evaluates the winner with
5,000 importance samples per leaf (docs/specs/spvae.md#5-evaluation).
"""

import sys

from sweeps.cells import Budget, Cell, Protocol
from sweeps.engine.cli import main

PAPER = "spvae"

MODELS = {"spvae_vae": 1e-3, "spvae": 1e-2, "spvae_convvae": 1e-3, "convspvae": 1e-2}
"""The four models and the learning rate the authors fixed for each
(docs/specs/spvae.md#4-training-protocol)."""

SP_MODELS = ("spvae", "convspvae")

DATASETS = {
    # dataset: (cell side of the 4x4 grid, data keys of its split rule and colour)
    "mnist": (7, {"data/val_fraction": 10_000 / 60_000}),  # 50k / 10k / 10k
    "svhn": (8, {"data/greyscale": True}),  # validation: the first 26,032 of extra
    "cifar10": (8, {"data/greyscale": True, "data/val_fraction": 0.2}),  # 40k / 10k / 10k
    "fashion_mnist": (7, {}),  # the smoke run's: its budget sets the validation split
}

SETTINGS = {"perturbed": ("gaussian", "perturbed"), "discrete": ("binomial", "discrete")}
"""variant: (likelihood, data/pixels)."""


def setting_config(family: str, dataset: str, pixels: str) -> dict:
    """The fixed config of a model on a dataset setting: preprocessing, the authors' training."""
    cell_size, data_keys = DATASETS[dataset]
    fixed = {
        **data_keys,
        "data/minmax": True,
        "data/center": False,
        "data/pixels": pixels,
        "train/lr": MODELS[family],
        "train/batch_size": 128,
    }
    if family in SP_MODELS:
        fixed["model/cell_size"] = cell_size
    return fixed


CELLS = [
    Cell(
        PAPER,
        family,
        dataset,
        likelihood,
        variant=variant,
        fixed=setting_config(family, dataset, pixels),
    )
    for dataset in DATASETS
    for variant, (likelihood, pixels) in SETTINGS.items()
    for family in MODELS
]

BUDGETS = {
    "smoke": Budget(  # 10-batch epochs and a 2% validation split: minutes on 2 CPU cores
        trials=2,
        max_epochs=2,
        grace_epochs=1,
        reduction_factor=2,
        patience=2,
        eval_k=5,
        eval_seeds=1,
        fixed={"train/epoch_batches": 10, "data/val_fraction": 0.02},
    ),
    "paper": Budget(  # the authors' protocol: 128-batch epochs, stop after 11 without progress
        trials=24,
        max_epochs=1000,
        grace_epochs=20,
        reduction_factor=3,
        patience=11,
        eval_k=5000,
        eval_seeds=1,
        winner_seeds=3,  # the winner trained with 3 seeds (sweeps.engine.seeds)
        fixed={"train/epoch_batches": 128},
    ),
}

DEFAULT_DATASETS = {"smoke": ["fashion_mnist"], "paper": ["mnist", "svhn", "cifar10"]}


def svhn_unrounded(cell: Cell) -> dict:
    """The authors' SVHN script leaves 'discrete' SVHN off the 1/255 grid
    (docs/specs/spvae.md#3-data-and-preprocessing)."""
    discrete_svhn = cell.dataset == "svhn" and cell.fixed.get("data/pixels") == "discrete"
    return {"data/spvae_svhn_skip_discretise": True} if discrete_svhn else {}


# docs/specs/spvae.md#9-deviations-from-the-authors-code
PROTOCOLS = {  # the MLPs start as theirs (TF1 variance scaling)
    "authors": Protocol(
        "the SPVAE authors' data use: training only ever reads the first ~17.4k rows of the "
        "shuffled training array (data/spvae_train_subset), discrete SVHN not rounded",
        {"data/spvae_train_subset": True},
        svhn_unrounded,
    ),
}

if __name__ == "__main__":
    sys.exit(main(PAPER, CELLS, BUDGETS, DEFAULT_DATASETS, protocols=PROTOCOLS))
