"""Search spaces of the hierarchical VAEs (docs/specs/hierarchical.md#7-search-space).

The authors published no search procedure; the ranges are this project's, anchored on their values.
A cell's fixed keys (sweeps/dct_vae.py, sweeps/dvp_vae.py: the authors' architecture and training
settings per dataset) keep their value, so on CIFAR-10 and SVHN only the optimiser is searched.

    all       lr (log) AdamW 2e-4 ... 2e-3 (DCT-VAE's optimiser) or Adamax 1e-3 ... 1e-2
              (DVP-VAE's; the optimiser is searched too unless a cell fixes it, as every paper
              cell does), weight decay {1e-6, 1e-2}, gradient clip {1, 2, 5} (of the
              bits-per-dim loss), EMA {0, 0.999}, batch {128, 250}; num_ch {32, 64, 80},
              block_ch_mult {0.5, 1}, latent_scales {4,4 / 4,3 / 6,6}, latent_width {1, 2},
              encoder blocks {1, 3}
    DCT-VAE   context size {5, 6, 7, 8}, bits {2, 3, 5}, diffusion T {7, 25, 50}, UNet channels
              {16, 32}
    DVP-VAE   context size {5, 6, 7, 8}, diffusion T {7, 25, 50}, gamma_min {-6, -10}, UNet
              channels {16, 32}, min log-variance {-8, -10}
"""

from __future__ import annotations

import optuna

LR_RANGES = {"adamw": (2e-4, 2e-3), "adamax": (1e-3, 1e-2)}


def ladder_space(trial: optuna.Trial) -> None:
    optimizer = trial.suggest_categorical("train/optimizer", list(LR_RANGES))
    low, high = LR_RANGES.get(optimizer, LR_RANGES["adamw"])
    trial.suggest_float("train/lr", low, high, log=True)
    trial.suggest_categorical("train/weight_decay", [1e-6, 1e-2])
    trial.suggest_categorical("train/grad_clip", [1.0, 2.0, 5.0])
    trial.suggest_categorical("train/ema_rate", [0.0, 0.999])
    trial.suggest_categorical("train/batch_size", [128, 250])
    trial.suggest_categorical("model/num_ch", [32, 64, 80])
    trial.suggest_categorical("model/block_ch_mult", [0.5, 1.0])
    trial.suggest_categorical("model/latent_scales", ["4,4", "4,3", "6,6"])
    trial.suggest_categorical("model/latent_width", [1, 2])
    trial.suggest_categorical("model/enc_blocks", [1, 3])


def dct_vae_space(trial: optuna.Trial) -> None:
    ladder_space(trial)
    trial.suggest_categorical("model/ctx_size", [5, 6, 7, 8])
    trial.suggest_categorical("model/ctx_bits", [2, 3, 5])
    trial.suggest_categorical("model/diffusion_steps", [7, 25, 50])
    trial.suggest_categorical("model/unet_channels", [16, 32])


def dvp_vae_space(trial: optuna.Trial) -> None:
    ladder_space(trial)
    trial.suggest_categorical("model/ctx_size", [5, 6, 7, 8])
    trial.suggest_categorical("model/diffusion_steps", [7, 25, 50])
    trial.suggest_categorical("model/gamma_min", [-6.0, -10.0])
    trial.suggest_categorical("model/unet_channels", [16, 32])
    trial.suggest_categorical("model/logvar_min", [-8.0, -10.0])


SPACES = {"ladder": ladder_space, "dct_vae": dct_vae_space, "dvp_vae": dvp_vae_space}
