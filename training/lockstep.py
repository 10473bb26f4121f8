"""One configuration trained with several training seeds in lockstep: each step one epoch of every
seed, the run's validation loss their mean (a sweep's ``--search-seeds N``).

    seeds(first, n)               -> [first, first + 1, ..., first + n - 1]
    more_models(cfg, x_shape, n)  -> the models of seeds first + 1 .. first + n - 1
    for metrics, folder in epochs(models, data, train_cfg, resume): ...   # as trainer.epochs

Seed i is trained by training.trainer.epochs as a lone run with train/seed = first + i is: the
global RNG is swapped to seed i's own stream around each of its epochs, so its batches,
binarisation and noise are the lone run's (a unit test compares the weights). The seeds run one
after another within a step, in one process: one stream of work, N times as long.

Early stopping is the mean's: a seed's own patience never binds, and the run stops when the mean
validation loss has not improved for ``patience`` epochs, or at ``max_epochs``, so every seed
trains the same epochs. Each epoch's metrics are the seeds' means (losses), sums (epoch seconds,
skipped steps) or seed 0's (KL weight, learning rate, start time), with ``val_loss_std`` (the
sample standard deviation over the seeds) and ``seed_val_losses`` (each seed's, in seed order).

A checkpoint folder holds seed 0's checkpoint where a lone run keeps its own (what reads one, a
winner's test evaluation or an export, sees the first seed's model: the run's own train/seed),
seed i's under ``seed-<i>/``, and the run's curve of means as checkpoint.HISTORY_FILE.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import statistics
import tempfile
from collections.abc import Generator
from pathlib import Path

import torch

from training import checkpoint, trainer
from training.data import Data

SEED_FOLDER = "seed-{}"
"""Where seed i > 0 keeps its checkpoint inside the run's checkpoint folder."""
MEANED = ("train_loss", "val_loss", "val_log_px_z", "val_kl")
SUMMED = ("epoch_seconds", "skipped_steps")


def seeds(first: int, n: int) -> list[int]:
    """The training seeds of ``n`` trainings of one configuration: its own and the next n - 1
    (sweeps.engine.seeds re-trains a winner with the same rule)."""
    return [first + i for i in range(n)]


def with_seed(cfg, seed: int):
    """The Config ``cfg`` with train/seed ``seed``."""
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=seed))


def more_models(cfg, x_shape: tuple[int, ...], n: int) -> list[torch.nn.Module]:
    """The models of the seeds after cfg's own (seeds(cfg.train.seed, n)[1:]), each with its
    initial weights drawn from its seed (trainer.build_model)."""
    return [trainer.build_model(with_seed(cfg, s), x_shape) for s in seeds(cfg.train.seed, n)[1:]]


def seed_folder(folder: Path, i: int) -> Path:
    """Seed i's checkpoint folder inside a run's checkpoint ``folder`` (seed 0's is ``folder``)."""
    return Path(folder) if i == 0 else Path(folder) / SEED_FOLDER.format(i)


def read_history(folder: Path) -> list[dict]:
    """The run's curve of means in a checkpoint folder ([] when it has none)."""
    path = Path(folder) / checkpoint.HISTORY_FILE
    return json.loads(path.read_text()) if path.exists() else []


def epochs(
    models: list[torch.nn.Module], data: Data, cfg, resume: Path | None = None
) -> Generator[tuple[dict, Path], None, dict]:
    """trainer.epochs over ``models`` (seed i's: seeds(cfg.seed, n)[i]) in lockstep: yields each
    epoch's metrics of the mean and a folder holding every seed's checkpoint, valid until the
    next epoch is asked for; ``resume`` is such a folder."""
    n = len(models)
    history = read_history(resume) if resume is not None else []
    if history and history[-1]["finished"]:  # restored from a run that had already ended
        return history[-1]
    never = cfg.max_epochs + 1  # a seed's own patience: the mean's stops the run
    runs = [
        trainer.epochs(m, data, dataclasses.replace(cfg, seed=s, patience=never),
                       None if resume is None else seed_folder(resume, i))
        for i, (m, s) in enumerate(zip(models, seeds(cfg.seed, n), strict=True))
    ]  # fmt: skip
    rng: list[dict | None] = [None] * n  # each seed's RNG state after its last epoch
    resumed_from = len(history)
    try:
        while True:
            out = []
            for i, run in enumerate(runs):
                if rng[i] is not None:
                    checkpoint.set_rng_state(rng[i])
                try:
                    out.append(next(run))
                except StopIteration:  # max_epochs reached before: every seed ends alike
                    return history[-1] if history else {}
                rng[i] = checkpoint.rng_state()
            metrics = mean_metrics([m for m, _ in out], history, cfg, resumed_from)
            history.append({k: v for k, v in metrics.items() if k != "stop_reason"})
            with tempfile.TemporaryDirectory(prefix="ckpt-seeds-") as tmp:
                for i, (_, folder) in enumerate(out):  # valid until each run's next epoch
                    into = seed_folder(Path(tmp), i)
                    into.mkdir(exist_ok=True)
                    shutil.move(Path(folder) / checkpoint.CHECKPOINT_FILE,
                                into / checkpoint.CHECKPOINT_FILE)  # fmt: skip
                checkpoint.save_history(Path(tmp), history)
                yield metrics, Path(tmp)
            if metrics["finished"]:
                return history[-1]
    finally:
        for run in runs:
            run.close()


def mean_metrics(each: list[dict], history: list[dict], cfg, resumed_from: int) -> dict:
    """One epoch's metrics of the run from its seeds' (``each``, seed order) and the run's
    curve so far (``history``): the keys trainer.epoch_metrics gives, and the spread."""
    vals = [m["val_loss"] for m in each]
    out = {**each[0], **{k: statistics.fmean(m[k] for m in each) for k in MEANED}}
    out.update({k: sum(m[k] for m in each) for k in SUMMED})
    curve = [h["val_loss"] for h in history] + [out["val_loss"]]
    best = min(curve)
    best_epoch = curve.index(best) + 1  # the first epoch at the best: the trainer's strict "<"
    bad = len(curve) - best_epoch
    done = len(curve) >= cfg.max_epochs or bad >= cfg.patience
    out.update(
        epoch=len(curve),
        best_val_loss=best,
        best_epoch=best_epoch,
        resumed_from=resumed_from,
        finished=done,
        stop_reason="early_stopping" if bad >= cfg.patience else "max_epochs" if done else "",
        val_loss_std=statistics.stdev(vals) if len(vals) > 1 else 0.0,
        seed_val_losses=vals,
    )
    return out
