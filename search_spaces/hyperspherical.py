"""Define-by-run search space of the hyperspherical families (S-VAE, product-space S-VAE, N-VAE).

The papers fix the architecture (MLP 256-128), Adam at 1e-3, batch 64 or 100 and a 100-epoch KL
warm-up (docs/specs/hyperspherical.md, sections 3 and 6); what a cell compares (the latent
dimension, the partition into spheres, the Gaussian covariance) is fixed by the cell. The search
brackets the authors' training settings.
"""

from __future__ import annotations

import optuna


def space(trial: optuna.Trial) -> None:
    trial.suggest_float("train/lr", 3e-4, 3e-3, log=True)
    trial.suggest_categorical("train/batch_size", [64, 100])
    trial.suggest_float("train/warmup_epochs", 0.0, 100.0)
