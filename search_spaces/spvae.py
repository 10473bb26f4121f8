"""Search spaces of the SPVAE paper's four models: the authors' grids
(docs/specs/spvae.md#6-search-space-and-model-selection).

The authors ran an exhaustive grid per (dataset, likelihood) pair, with encoder and decoder of the
same size and the learning rate, batch size and SPN sizes fixed (the sweep's cells fix those). Here
the grid's values are Optuna categoricals: TPE searches them (``--sampler tpe``), or
``--sampler grid`` replays every configuration once, as the authors did.

    SPVAE      nnodes (16,16) (30,30) (32,32) (100,100) (300,300) (600,600) x nz 1 ... 200  (48)
    VAE        nnodes (30,30) (100,100) (300,300) (600,600) x nz 1 ... 200                  (32)
    ConvSPVAE  n_dense 8, 32, 64 x nz 1, 2, 5, 25, 50                                       (15)
    ConvVAE    n_dense 32, 64, 128 x nz 1 ... 200                                           (24)
"""

from __future__ import annotations

import optuna

NZ = [1, 2, 5, 25, 50, 100, 150, 200]

GRIDS: dict[str, dict[str, list]] = {
    "spvae": {
        "model/hidden_dims": ["16,16", "30,30", "32,32", "100,100", "300,300", "600,600"],
        "model/latent_dim": NZ,
    },
    "spvae_vae": {
        "model/hidden_dims": ["30,30", "100,100", "300,300", "600,600"],
        "model/latent_dim": NZ,
    },
    "convspvae": {"model/n_dense": [8, 32, 64], "model/latent_dim": [1, 2, 5, 25, 50]},
    "spvae_convvae": {"model/n_dense": [32, 64, 128], "model/latent_dim": NZ},
}


class GridSpace:
    """Define-by-run space over a grid's values, one categorical per key (a class, not a
    closure: Tune pickles the searcher)."""

    def __init__(self, grid: dict[str, list]):
        self.grid = grid

    def __call__(self, trial: optuna.Trial) -> None:
        for key, values in self.grid.items():
            trial.suggest_categorical(key, values)


SPACES = {family: GridSpace(grid) for family, grid in GRIDS.items()}
