"""The VLAE paper's sweep (Park, Kim, Kim, ICML 2019). For now its VAE cells.

    python sweeps/vlae.py --budget smoke                 # minutes on a laptop CPU, Fashion-MNIST
    ray submit cluster/gpu.yaml sweeps/vlae.py --budget paper

Cells: the VAE baseline on each of the paper's settings that have a loader here. Budgets: ``smoke``
runs 8 short trials under ASHA; ``paper`` trains up to the paper's 2000 epochs and evaluates the
winner with k = 5000 importance samples over 3 seeds.
"""

import sys

from sweeps.cells import Budget, Cell
from sweeps.cli import main

PAPER = "vlae"

CELLS = [
    Cell(PAPER, "vae", "fashion_mnist", "gaussian"),
    Cell(PAPER, "vae", "mnist", "bernoulli", fixed={"data/binarize": True}),
]

BUDGETS = {
    "smoke": Budget(
        trials=8,
        max_epochs=4,
        grace_epochs=1,
        reduction_factor=2,
        patience=4,
        eval_k=100,
        eval_seeds=2,
    ),
    "paper": Budget(
        trials=64,
        max_epochs=2000,
        grace_epochs=50,
        reduction_factor=3,
        patience=100,
        eval_k=5000,
        eval_seeds=3,
    ),
}

DEFAULT_DATASETS = {"smoke": ["fashion_mnist"]}

if __name__ == "__main__":
    sys.exit(main(PAPER, CELLS, BUDGETS, DEFAULT_DATASETS))
