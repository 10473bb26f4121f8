"""The hyperspherical papers' sweep: S-VAE vs N-VAE (Davidson et al., UAI 2018) and the
product-space S-VAE (Davidson, Tomczak, Gavves, 2019).

    python sweeps/hyperspherical.py --budget smoke      # minutes on a CPU, Fashion-MNIST
    ray submit cluster/gpu.yaml sweeps/hyperspherical.py --budget paper

Cells (docs/specs/hyperspherical.md, sections 6 and 7):
- ``svae18``: N-VAE and S-VAE at latent (manifold) dimension d = 2, 5, 10, 20, 40 on dynamically
  binarised MNIST (the UAI table); the same grid on Fashion-MNIST is the smoke run.
- ``psvae19``: every integer partition of d = 5 and d = 9 into spheres on static MNIST; the
  ambient- and degree-of-freedom-matched partitions of z = 2, 5, 10, 20 on dynamic MNIST; the
  N-VAE with single, diagonal and full covariance at d = 1 ... 40 on static MNIST. The smoke run
  takes the partitions of 5 on Fashion-MNIST.
"""

import sys

from sweeps.cells import Budget, Cell, Protocol
from sweeps.engine.cli import main

PAPER = "hyperspherical"  # feeds the tables svae18 and psvae19 (results.papers.GROUPS)
BINARY = {"data/binarize": True}


def partitions(n: int, largest: int | None = None) -> list[tuple[int, ...]]:
    """The integer partitions of n, parts in decreasing order: 5 -> (5,), (4, 1), ..., (1,)*5."""
    largest = n if largest is None else largest
    if n == 0:
        return [()]
    return [
        (first, *rest)
        for first in range(min(n, largest), 0, -1)
        for rest in partitions(n - first, first)
    ]


def uai_cells(dataset: str) -> list[Cell]:
    return [
        Cell(
            "svae18",
            family,
            dataset,
            "bernoulli",
            variant=f"d={d}",
            fixed={**BINARY, "model/latent_dim": d},
        )  # fmt: skip
        for family in ("nvae", "svae")
        for d in (2, 5, 10, 20, 40)
    ]


def product_cell(dataset: str, parts: tuple[int, ...], label: str) -> Cell:
    spheres = ",".join(map(str, parts))
    return Cell(
        "psvae19",
        "psvae",
        dataset,
        "bernoulli",
        variant=f"{label} {'+'.join(map(str, parts))}",
        fixed={**BINARY, "model/latent_dim": sum(parts), "model/spheres": spheres},
    )


# Ambient- and degree-of-freedom-matched partitions of the authors' run_files/ambient_match.
MATCHED = {2: [(1, 1)], 5: [(1,) * 5, (2, 1)], 10: [(1,) * 10, (2, 1, 1, 1, 1)],
           20: [(1,) * 20, (2,) + (1,) * 9]}  # fmt: skip

CELLS = [
    *uai_cells("mnist"),
    *uai_cells("fashion_mnist"),
    *[product_cell("static_mnist", p, f"d={n}") for n in (5, 9) for p in partitions(n)],
    *[product_cell("mnist", p, f"z={z}") for z, ps in MATCHED.items() for p in ps],
    *[
        Cell(
            "psvae19",
            "nvae",
            "static_mnist",
            "bernoulli",
            variant=f"d={d} {cov}",
            fixed={**BINARY, "model/latent_dim": d, "model/covariance": cov},
        )  # fmt: skip
        for d in (1, 2, 5, 10, 20, 40)
        for cov in ("single", "diagonal", "full")
    ],
    *[product_cell("fashion_mnist", p, "d=5") for p in partitions(5)],
]

BUDGETS = {
    "smoke": Budget(
        trials=2,
        max_epochs=2,
        grace_epochs=1,
        reduction_factor=2,
        patience=2,
        eval_k=100,
        eval_seeds=1,
    ),
    "paper": Budget(  # the authors' protocol: up to 500 epochs, look-ahead 50, LL with 500 IS
        trials=16,
        max_epochs=500,
        grace_epochs=100,
        reduction_factor=3,
        patience=50,
        eval_k=500,
        eval_seeds=3,
        winner_seeds=3,  # the winner trained with 3 seeds (sweeps.engine.seeds)
    ),
}

DEFAULT_DATASETS = {"smoke": ["fashion_mnist"], "paper": ["mnist", "static_mnist"]}


def unscaled_pixels(cell: Cell) -> dict:
    """The authors' MNIST-format loaders skip the /255: binarisation is the threshold x > 0."""
    if cell.dataset in ("mnist", "fashion_mnist") and cell.fixed.get("data/binarize"):
        return {"data/svae_no_rescale_255": True}
    return {}


def product_space_code(cell: Cell) -> dict:
    """authors, and the product-space code's approximate Bessel ratio in its product cells."""
    approx = {"model/bessel_ratio": "approx"} if cell.family == "psvae" else {}
    return {**unscaled_pixels(cell), **approx}


PROTOCOLS = {  # docs/specs/hyperspherical.md#8-deviations-from-the-authors-code
    "authors": Protocol(
        "the S-VAE authors' data use: MNIST and Fashion-MNIST binarised by the fixed threshold "
        "x > 0 of unscaled pixels (data/svae_no_rescale_255)",
        extra=unscaled_pixels,
    ),
    "authors-code": Protocol(
        "authors, and the product-space code's approximate Bessel ratio (model/bessel_ratio)",
        extra=product_space_code,
    ),
}

if __name__ == "__main__":
    sys.exit(main(PAPER, CELLS, BUDGETS, DEFAULT_DATASETS, protocols=PROTOCOLS))
