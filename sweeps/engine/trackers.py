"""The experiment trackers a researcher already uses, fed by Tune's own callbacks.

    python sweeps/vlae.py --log-to wandb --log-to mlflow ...

Every trial of a cell becomes a run of the tracker, with its config and each epoch's metrics:
W&B (``wandb``: a project per sweep storage, a group per cell; ``WANDB_MODE=offline`` writes the
runs under ``./wandb`` for a later ``wandb sync``) and MLflow (``mlflow``: an experiment per cell
at ``MLFLOW_TRACKING_URI``, else the SQLite database ``<storage>/mlflow.db`` for a local
storage: ``mlflow ui --backend-store-uri sqlite:///<storage>/mlflow.db``). TensorBoard needs no
flag: Tune writes each trial's event files beside its checkpoints (``tensorboard --logdir
<storage>/ray``). The packages are optional: a tracker asked for whose package is missing is a
refusal before anything starts.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

TRACKERS = {"wandb": "wandb", "mlflow": "mlflow"}
"""--log-to NAME: the package it needs."""


def check(names: tuple[str, ...]) -> None:
    """Refuse a tracker whose package is not installed (sweeps.engine.preflight.Refusal)."""
    from sweeps.engine.preflight import Refusal

    for name in names:
        if importlib.util.find_spec(TRACKERS[name]) is None:
            raise Refusal(f"--log-to {name} needs the {TRACKERS[name]} package: pip install "
                          f"{TRACKERS[name]} (or drop --log-to {name})")  # fmt: skip


def project(storage: str) -> str:
    """The W&B project of a storage: its folder's name (a bucket's prefix for an object store)."""
    name = storage.rstrip("/").rsplit("/", 1)[-1]
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name) or "vae-sweeps"


def mlflow_uri(storage: str) -> str | None:
    """MLFLOW_TRACKING_URI if set, else the database ``<storage>/mlflow.db`` for a local storage
    (None, MLflow's default, for an object store: set MLFLOW_TRACKING_URI to a server)."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return None if "://" in storage else f"sqlite:///{Path(storage) / 'mlflow.db'}"


def callbacks(names: tuple[str, ...], storage: str, cell: str) -> list:
    """Tune's logger callbacks for the trackers ``names``, one run per trial."""
    made = []
    for name in names:
        if name == "wandb":
            from ray.air.integrations.wandb import WandbLoggerCallback

            made.append(WandbLoggerCallback(project=project(storage), group=cell, log_config=True))
        elif name == "mlflow":
            from ray.air.integrations.mlflow import MLflowLoggerCallback

            made.append(MLflowLoggerCallback(tracking_uri=mlflow_uri(storage),
                                             experiment_name=cell))  # fmt: skip
    return made
