"""Search spaces of the VLAE paper's models beyond the VAE
(docs/specs/vlae.md#10-cells-and-search-space).

Every model searches what the VAE searches (search_spaces.vae: z, H, Adam's lr, batch, KL
warm-up; the paper budget fixes z = 50, H = 500 and batch 128) plus its own knob. The number of
steps T (SVI steps, flows, mode updates) is what the paper's table compares: each cell fixes it.

    SA-VAE   svi_lr, the SVI step size alpha: the paper's grid 1, 0.1, 1e-3, 5e-4, 1e-4
    VLAE     update_lr, eta_0 of the damped mode update: around the authors' 0.5
    VAE+HF, VAE+IAF  nothing of their own (the authors' iaf_dim 500 is the default)
"""

from __future__ import annotations

import optuna

from search_spaces import vae


def savae_space(trial: optuna.Trial) -> None:
    vae.space(trial)
    trial.suggest_categorical("model/svi_lr", [1.0, 0.1, 1e-3, 5e-4, 1e-4])


def vlae_space(trial: optuna.Trial) -> None:
    vae.space(trial)
    trial.suggest_categorical("model/update_lr", [0.25, 0.5, 0.75, 1.0])


SPACES = {"savae": savae_space, "vlae": vlae_space, "vae_hf": vae.space, "vae_iaf": vae.space}
