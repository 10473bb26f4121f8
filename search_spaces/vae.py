"""Define-by-run Optuna search space of the Gaussian VAE (and the VLAE paper's VAE baseline).

Keys are namespaced as in ``training.config`` ("model/...", "train/..."), so a sampled dict is a
config override as it stands. Ranges bracket the VLAE paper's setting (z=50, H=500, Adam 5e-4,
batch 128, no warm-up).
"""

from __future__ import annotations

import optuna


def space(trial: optuna.Trial) -> None:
    trial.suggest_categorical("model/latent_dim", [16, 32, 50, 64])
    trial.suggest_categorical("model/hidden_dim", [256, 500, 512])
    trial.suggest_float("train/lr", 1e-4, 3e-3, log=True)
    trial.suggest_categorical("train/batch_size", [64, 128, 256])
    trial.suggest_float("train/warmup_epochs", 0.0, 10.0)
