"""One Tune trial: a configuration trained one epoch per ``step`` (TrainTrial), and the set-up a
trial and a winner's evaluation share.

    trainable(resources, search_seeds=1) -> the name Tune knows TrainTrial by, with these
                                            resources per trial and training seeds per config
    setup(config)        -> (Config, Data, model): a trial's or an evaluation's start

The module a trial's worker process imports: torch, Tune's Trainable and our training package,
not Optuna or the Parquet store (sweeps.engine.searcher, sweeps.engine.parquet_writer), so a new
worker starts a little sooner.
"""

from __future__ import annotations

import functools
import json
import math
import platform
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pyarrow.fs as pafs
import ray
import torch
from ray import tune
from ray.tune.result import SHOULD_CHECKPOINT

from sweeps.engine import node_data
from training import checkpoint as ckpt_io
from training import lockstep
from training.config import Config, ConfigError
from training.data import Data
from training.trainer import DivergedError, build_model, epochs, resolve_device

METRIC = "val_loss"  # per-epoch validation -ELBO: what ASHA compares
NAME = "TrainTrial"
"""The name Tune registers the trainable under: its trial folders are ``TrainTrial_<id>_...``."""


def hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{platform.node()}: {torch.cuda.get_device_name(device)}"
    return f"{platform.node()}: cpu {platform.machine()} x{torch.get_num_threads()} threads"


def setup(config: dict, data: Data | None = None) -> tuple[Config, Data, torch.nn.Module]:
    """A trial's or an evaluation's config, data on its device (the node's copy unless ``data``
    is given), and a freshly built model."""
    cfg = Config.from_dict(config)
    if data is None:
        data = node_data.load_data(cfg.data, resolve_device(cfg.train.device))  # once per node
    model = build_model(cfg, data.x_shape)  # ConfigError: no fit
    return cfg, data, model.to(data.train.device)


class TrainTrial(tune.Trainable):
    """One Tune trial: a configuration trained one epoch per ``step``, checkpointed every epoch.

    A class, not a function, so that Tune reuses its actor: ``step`` runs when Tune calls it,
    so a trial that ASHA stopped has stopped between two epochs, and the cell's next trial
    starts in the same worker process through ``reset_config`` (no process start, no imports,
    the same dataset when its data config is the same). A function trainable runs in a thread
    of its own, and with reuse on, a stopped trial's function ran on and was recorded as
    completed (Ray PR 38284); there is no such thread here.

    With ``search_seeds`` N > 1 (``--search-seeds``: a subclass, ``with_seeds(N)``) each step is
    one epoch of each of N models of the configuration, seeds train/seed .. + N - 1, and the
    reported val_loss is their mean (training.lockstep); the checkpoint holds all N.
    """

    search_seeds = 1

    def setup(self, config: dict) -> None:
        self._epochs = None  # training.trainer.epochs of this trial, started by the first step
        self._loaded: tuple | None = None  # (data config, device, Data) of the last trial
        self._begin(config)

    def _begin(self, config: dict) -> None:
        self.started_at = time.time()  # before the data and the model: the start-up counts
        self._resume: Path | None = None  # a checkpoint copied by load_checkpoint
        self._kept = None  # the TemporaryDirectory holding that copy
        self._ckpt: Path | None = None  # the newest epoch's checkpoint (the generator's folder)
        self._failure: dict | None = None
        try:
            self.cfg, self.data, self.model = setup(config, self._kept_data(config))
        except ConfigError as e:
            # Reported, not raised: Tune would retry it, and the same config fails the same way.
            self._failure = {"config_error": str(e)}
            return
        self._loaded = (self.cfg.data, self.cfg.train.device, self.data)
        n = self.search_seeds
        self.models = [self.model, *lockstep.more_models(self.cfg, self.data.x_shape, n)]
        self.extra = {
            "hardware": hardware(self.data.train.device),
            "node_id": ray.get_runtime_context().get_node_id(),  # which Ray node ran each epoch
            "n_parameters": sum(p.numel() for p in self.model.parameters()),  # papers compare
            "trial_started_at": self.started_at,
            **self._seeds,
        }
        self.config_text = json.dumps(self.cfg.flat(), sort_keys=True)

    def _kept_data(self, config: dict) -> Data | None:
        """The last trial's dataset when this one's data config and device are the same (a
        reused actor; the tensors are never written to), else None (and it is let go)."""
        try:
            cfg = Config.from_dict(config)
        except ConfigError:
            return None  # setup raises it again, and the trial reports it
        if self._loaded is not None and self._loaded[:2] == (cfg.data, cfg.train.device):
            return self._loaded[2]
        self._loaded = None  # the last trial's data go before this one's are loaded
        return None

    @property
    def _seeds(self) -> dict:
        """What a result says of the trial's training seeds: nothing for one (as before)."""
        return {"search_seeds": self.search_seeds} if self.search_seeds > 1 else {}

    def _start(self):
        """The trial's epochs (trainer.epochs, or training.lockstep's over its seeds)."""
        if self.search_seeds == 1:
            return epochs(self.model, self.data, self.cfg.train, self._resume)
        return lockstep.epochs(self.models, self.data, self.cfg.train, self._resume)

    def step(self) -> dict:
        if self._failure is None:
            if self._epochs is None:  # a retried trial (lost node, restart) resumes its epoch
                self._epochs = self._start()
            try:
                metrics, self._ckpt = next(self._epochs)
                return {**metrics, **self.extra, SHOULD_CHECKPOINT: True,
                        "done": metrics["finished"]}  # fmt: skip
            except StopIteration as end:  # restored from a run that had already ended
                return {**end.value, **self.extra, "done": True}
            except DivergedError as e:
                # Reported, not raised: retrying a deterministic divergence would only repeat it.
                self._failure = {"diverged": str(e)}
        return {METRIC: math.inf, **self._failure, **self._seeds, "finished": False,
                "done": True}  # fmt: skip

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        # Every checkpoint carries the full config it was trained with: a row rebuilt from it
        # (python -m results check --repair, results.records.CONFIG_FILE) shows the config
        # that ran.
        if self._ckpt is not None:  # Tune asks after each epoch's step (should_checkpoint)
            shutil.copytree(self._ckpt, checkpoint_dir, dirs_exist_ok=True)
        (Path(checkpoint_dir) / ckpt_io.CONFIG_FILE).write_text(self.config_text)

    def restore(self, checkpoint_path) -> None:
        """Tune's restore, from the newest checkpoint of the trial when the one its saved
        experiment state names is gone: a driver killed after a trial's later checkpoints
        rotated that one away (num_to_keep) left a state that names it."""
        super().restore(newest_if_gone(checkpoint_path))

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        # Copied: the folder Tune gives may be a download that is deleted when this returns,
        # and the first step reads it.
        self._kept = tempfile.TemporaryDirectory(prefix="resume-")
        shutil.copytree(checkpoint_dir, self._kept.name, dirs_exist_ok=True)
        self._resume = Path(self._kept.name)

    def reset_config(self, new_config: dict) -> bool:
        """The cell's next trial in this actor (reuse_actors)."""
        self.cleanup()
        self._begin(new_config)
        return True

    def cleanup(self) -> None:
        if self._epochs is not None:
            self._epochs.close()  # ends its checkpoint folder
            self._epochs = None
        if self._kept is not None:
            self._kept.cleanup()
            self._kept = None
        # a reused GPU actor frees them (_loaded may keep the data)
        self.model = self.models = self.data = None


def newest_if_gone(result):
    """A Tune training result (checkpoint and metrics) whose checkpoint folder is gone, with the
    newest ``checkpoint_*`` beside it that holds a state instead; anything else as it is."""
    ckpt = getattr(result, "checkpoint", None)
    if ckpt is None:
        return result
    fs = ckpt.filesystem
    if fs.get_file_info(ckpt.path).type != pafs.FileType.NotFound:
        return result
    folder = ckpt.path.rstrip("/").rsplit("/", 1)[0]
    found = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    newest = sorted(i.path for i in found if i.base_name.startswith("checkpoint_"))
    for path in reversed(newest):
        if fs.get_file_info(f"{path}/{ckpt_io.CHECKPOINT_FILE}").type == pafs.FileType.File:
            print(f"trial checkpoint {ckpt.path} is gone: resuming from {path}")
            return type(result)(checkpoint=tune.Checkpoint(path, filesystem=fs),
                                metrics=result.metrics)  # fmt: skip
    return result


_registering = threading.Lock()


@functools.cache
def with_seeds(n: int) -> type[TrainTrial]:
    """TrainTrial training each configuration with ``n`` seeds (TrainTrial itself for one)."""
    if n == 1:
        return TrainTrial
    return type(f"{NAME}Seeds{n}", (TrainTrial,), {"search_seeds": n, "__module__": __name__})


def trainable(resources: dict, search_seeds: int = 1) -> str:
    """TrainTrial asking for ``resources`` per trial, registered with Tune by name; with
    ``search_seeds`` N > 1, ``with_seeds(N)`` under a name of its own (``TrainTrialSeeds<N>``,
    its trial folders' prefix), so that a winner's re-trainings (sweeps.engine.seeds: one seed)
    registered meanwhile by a cell in flight do not replace it.

    A Tuner given a class registers it in Tune's registry, which is not thread-safe: cells in
    flight run their Tuners in threads of one process (sweeps.engine.in_flight), and two registering
    at once failed ("dictionary changed size during iteration"). A Tuner given a name
    registers nothing. The cells of a sweep ask for the same resources.
    """
    name = NAME if search_seeds == 1 else f"{NAME}Seeds{search_seeds}"
    with _registering:
        tune.register_trainable(name, tune.with_resources(with_seeds(search_seeds), resources))
    return name
