"""The one trainer: on-device batches, validation each epoch, early stopping, checkpoints, resume.

    result = fit(model, data, train_cfg, report=print_report)
    for metrics, checkpoint_dir in epochs(model, data, train_cfg): ...   # one epoch at a time

``report(metrics, checkpoint_dir)`` is called once per epoch with a directory holding that epoch's
checkpoint; the caller decides where it goes (a run folder, Ray Tune). The trainer never imports a
tuner or a logger.

``epochs`` is the loop; each part of it is a plain function: ``prepare`` (the optimiser, scaler
and EMA a run steps with), ``begin`` or ``restore`` (a fresh start, or a checkpoint's state),
``train_epoch`` (one shuffle's batches, each a ``train_step``), ``validate``, ``end_epoch``
(early-stopping bookkeeping), ``epoch_metrics`` and ``write_checkpoint``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import tempfile
import time
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

import models
from training import checkpoint, memory, optim
from training.data import Data
from training.evaluate import elbo_terms

Report = Callable[[dict, Path], None]


class DivergedError(RuntimeError):
    """The loss became NaN or infinite; the run cannot continue."""


@dataclass
class TrainState:
    epoch: int = 0
    step: int = 0
    best_val_loss: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    history: list[dict] = field(default_factory=list)


@dataclass
class Stepper:
    """What a run steps with, built once by ``prepare``: the model on its device, the optimiser,
    the AMP scaler, the EMA (None without one), and the epoch's shape."""

    model: torch.nn.Module
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    ema: optim.EMA | None
    divisor: float  # the loss is divided by it before backward (train/loss_scale)
    amp_dtype: torch.dtype | None
    device: torch.device
    steps_per_epoch: int
    epoch_size: int  # images an epoch trains on (several shuffles when over the training set)
    warmup_steps: int  # of the KL weight

    def evaluating(self) -> contextlib.AbstractContextManager:
        """Within it the model's weights are the EMA's, when there is one."""
        return self.ema.weights() if self.ema is not None else contextlib.nullcontext()

    def weights(self) -> dict:
        """A copy of the weights validation sees (the EMA's, when there is one)."""
        with self.evaluating():
            return copy.deepcopy(self.model.state_dict())


@dataclass
class Trained:
    """One epoch's training: its mean loss over the kept steps, the steps skipped, the last
    step's KL weight and learning rate, and when it started."""

    loss: float
    skipped: int
    beta: float
    lr: float
    started: float  # time.perf_counter()
    started_at: float  # time.time(): wall clock, comparable across nodes


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            f"train/device={name} but no CUDA device is visible; use 'cpu' or 'auto'"
        )
    return torch.device(name)


def build_model(cfg, x_shape: tuple[int, ...]) -> torch.nn.Module:
    """The config's model, its initial weights drawn from train/seed (a run is reproducible).

    First, without allocating: ConfigError when the model cannot be built for ``x_shape`` or
    its estimated training memory exceeds the device's (training.memory)."""
    memory.check_fits(cfg, x_shape, resolve_device(cfg.train.device))
    torch.manual_seed(cfg.train.seed)
    return models.build(cfg.family, dataclasses.asdict(cfg.model), x_shape)


def kl_weight(step: int, warmup_steps: int) -> float:
    """KL warm-up (Bowman et al. 2016; Sonderby et al. 2016): beta = min(1, step / warmup_steps)."""
    return 1.0 if warmup_steps <= 0 else min(1.0, step / warmup_steps)


def fit(model, data: Data, cfg, report: Report | None = None, resume: Path | None = None) -> dict:
    """Train ``model`` on ``data`` per TrainConfig ``cfg``; returns the final epoch's metrics.

    ``resume`` is a checkpoint file or folder written by a previous call: model, optimizer, RNG
    and early-stopping state are restored and training continues on the same trajectory.
    """
    run, metrics = epochs(model, data, cfg, resume), {}
    while True:
        try:
            metrics, ckpt_dir = next(run)
        except StopIteration as end:  # its value: the metrics of a run that had already ended
            return metrics or end.value
        if report is not None:
            report(metrics, ckpt_dir)


def epochs(
    model, data: Data, cfg, resume: Path | None = None
) -> Generator[tuple[dict, Path], None, dict]:
    """``fit`` one epoch at a time: yields each epoch's metrics and a folder holding its
    checkpoint, valid until the next epoch is asked for (a Tune class trainable's step)."""
    stepper = prepare(model, data, cfg)
    if resume is not None:
        state, best_model = restore(stepper, resume)
    else:
        state, best_model = begin(stepper, data, cfg)
    resumed_from = state.epoch  # 0 for a fresh run: shows a retried trial did not start over
    while state.epoch < cfg.max_epochs and state.bad_epochs < cfg.patience:
        trained = train_epoch(stepper, data, cfg, state)
        val = validate(stepper, data, cfg)
        if end_epoch(state, trained.loss, val):  # the best validation loss so far
            best_model = stepper.weights()
        metrics = epoch_metrics(state, cfg, trained, val, resumed_from)
        state.history.append({k: v for k, v in metrics.items() if k != "stop_reason"})
        with tempfile.TemporaryDirectory(prefix="ckpt-") as tmp:
            write_checkpoint(Path(tmp), stepper, state, best_model)
            yield metrics, Path(tmp)
    return state.history[-1] if state.history else {}


def prepare(model, data: Data, cfg) -> Stepper:
    """The model moved to the data's device (channels-last for cuDNN where the model asks), and
    the optimiser, AMP scaler and EMA that train it."""
    device = data.train.device
    model.to(device)
    use_cuda = device.type == "cuda"
    if use_cuda and getattr(model, "channels_last", False):  # NHWC: cuDNN's fast conv layout
        model.to(memory_format=torch.channels_last)
    n_train = data.train.shape[0]
    steps_per_epoch, epoch_size = math.ceil(n_train / cfg.batch_size), n_train
    if cfg.epoch_batches:  # a fixed number of batches per epoch, from fresh shuffles
        steps_per_epoch, epoch_size = cfg.epoch_batches, cfg.epoch_batches * cfg.batch_size
    return Stepper(
        model=model,
        # Fused Adam: one kernel over all parameters, on the CPU too. The default per-parameter
        # loop cost ~5 ms of a ~18 ms step of the 784-500-500-50 VAE on 2 cores; fused ~1.4 ms.
        opt=optim.optimizer(model.parameters(), cfg, device),
        ema=optim.EMA(model, cfg.ema_rate) if cfg.ema_rate > 0 else None,
        divisor=optim.loss_divisor(cfg, data.x_shape),
        amp_dtype={"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp),
        scaler=torch.amp.GradScaler("cuda", enabled=use_cuda and cfg.amp == "fp16"),
        device=device,
        steps_per_epoch=steps_per_epoch,
        epoch_size=epoch_size,
        warmup_steps=round(cfg.warmup_epochs * steps_per_epoch),
    )


def begin(stepper: Stepper, data: Data, cfg) -> tuple[TrainState, dict]:
    """A fresh run: the RNG seeded from train/seed, the model's data-dependent initialisation,
    and its initial weights as the best so far."""
    torch.manual_seed(cfg.seed)
    stepper.model.initialise(data.train)
    return TrainState(), copy.deepcopy(stepper.model.state_dict())


def restore(stepper: Stepper, resume: Path) -> tuple[TrainState, dict]:
    """A resumed run: model, optimiser, scaler, EMA and RNG as the checkpoint ``resume`` (a file
    or its folder) left them, its early-stopping state and its best weights."""
    saved = checkpoint.load(resume, stepper.device)
    stepper.model.load_state_dict(saved["model"])
    stepper.opt.load_state_dict(saved["optimizer"])
    stepper.scaler.load_state_dict(saved["scaler"])
    state = TrainState(**saved["train_state"])
    if stepper.ema is not None:
        stepper.ema.load_state_dict(saved["ema"])
    checkpoint.set_rng_state(saved["rng"])
    return state, saved["best_model"]


def train_epoch(stepper: Stepper, data: Data, cfg, state: TrainState) -> Trained:
    """One epoch of steps over fresh shuffles of the training set; ``state.step`` counts them.
    DivergedError when every step was skipped."""
    start, started_at = time.perf_counter(), time.time()
    stepper.model.train()
    loss_sum = torch.zeros((), device=stepper.device)
    perm = shuffle(data.train.shape[0], stepper.epoch_size, stepper.device)
    skipped, kept = 0, 0
    for i in range(0, perm.numel(), cfg.batch_size):
        step_start = time.perf_counter()
        x = data.train_batch(perm[i : i + cfg.batch_size])
        beta = kl_weight(state.step, stepper.warmup_steps)
        lr = optim.learning_rate(cfg, state.epoch, state.step, stepper.steps_per_epoch)
        set_learning_rate(stepper.opt, lr)
        state.step += 1
        loss = train_step(stepper, cfg, x, beta)
        if loss is None:
            skipped += 1
            continue
        loss_sum += loss * x.shape[0]  # summed on the device: no per-step sync
        kept += x.shape[0]
        if cfg.step_seconds > 0:  # benchmarks only (TrainConfig.step_seconds)
            time.sleep(max(0.0, step_start + cfg.step_seconds - time.perf_counter()))
    if kept == 0:
        raise DivergedError(
            f"every one of the {skipped} steps of epoch {state.epoch + 1} was skipped (a "
            "non-finite loss, or a gradient norm over train/grad_skip); lower train/lr or "
            "raise train/grad_skip"
        )
    return Trained(loss_sum.item() / kept, skipped, beta, lr, start, started_at)


def shuffle(n_train: int, epoch_size: int, device: torch.device) -> torch.Tensor:
    """An epoch's order of the training images: one shuffle per pass, an epoch longer than the
    training set taking several passes."""
    passes = -(-epoch_size // n_train)
    perm = torch.cat([torch.randperm(n_train, device=device) for _ in range(passes)])
    return perm[:epoch_size]


def set_learning_rate(opt: torch.optim.Optimizer, lr: float) -> None:
    if lr != opt.param_groups[0]["lr"]:  # a constant rate never touches the optimiser
        for group in opt.param_groups:
            group["lr"] = lr


def train_step(stepper: Stepper, cfg, x: torch.Tensor, beta: float) -> torch.Tensor | None:
    """One optimiser step on batch ``x`` with KL weight ``beta`` (AMP, clipping, the EMA's
    update); its loss, detached, or None for a skipped step: a non-finite loss under
    train/skip_nan_steps, or a gradient norm over train/grad_skip."""
    model, opt, scaler = stepper.model, stepper.opt, stepper.scaler
    amp_dtype = stepper.amp_dtype
    with torch.autocast(stepper.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        terms = model(x)
        loss = -(terms.log_px_z - beta * terms.kl).mean()
    if cfg.skip_nan_steps and not torch.isfinite(loss):  # a sync, only when asked for
        return None
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss / stepper.divisor).backward()
    if cfg.grad_clip > 0 or cfg.grad_skip > 0:
        scaler.unscale_(opt)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or math.inf)
        if cfg.grad_skip > 0 and not norm <= cfg.grad_skip:  # NaN norms are skipped too
            scaler.update()
            return None
    scaler.step(opt)
    scaler.update()
    if stepper.ema is not None:
        stepper.ema.update()
    return loss.detach()


def validate(stepper: Stepper, data: Data, cfg) -> dict[str, float]:
    """The validation set's mean ELBO, log p(x|z) and KL, with the EMA's weights when there is
    one."""
    with stepper.evaluating():
        return elbo_terms(stepper.model, data.val, cfg.eval_batch_size)


def end_epoch(state: TrainState, train_loss: float, val: dict[str, float]) -> bool:
    """Count the epoch in ``state`` and its validation loss in the early-stopping state; True
    when that loss is the best so far. DivergedError when either loss is not finite."""
    state.epoch += 1
    if not (math.isfinite(train_loss) and math.isfinite(val["elbo"])):
        raise DivergedError(
            f"loss became {train_loss if not math.isfinite(train_loss) else val['elbo']} "
            f"in epoch {state.epoch}; lower train/lr, set train/grad_clip, or add "
            f"train/warmup_epochs"
        )
    val_loss = -val["elbo"]
    if val_loss < state.best_val_loss:
        state.best_val_loss, state.best_epoch, state.bad_epochs = val_loss, state.epoch, 0
        return True
    state.bad_epochs += 1
    return False


def epoch_metrics(
    state: TrainState, cfg, trained: Trained, val: dict[str, float], resumed_from: int
) -> dict:
    """The metrics an epoch reports (and its history keeps, all but stop_reason)."""
    done = state.epoch >= cfg.max_epochs or state.bad_epochs >= cfg.patience
    reason = "early_stopping" if state.bad_epochs >= cfg.patience else "max_epochs" if done else ""
    return {
        "epoch": state.epoch,
        "train_loss": trained.loss,
        "val_loss": -val["elbo"],
        "val_log_px_z": val["log_px_z"],
        "val_kl": val["kl"],
        "beta": trained.beta,
        "lr": trained.lr,
        "skipped_steps": trained.skipped,
        "best_val_loss": state.best_val_loss,
        "best_epoch": state.best_epoch,
        "epoch_seconds": time.perf_counter() - trained.started,
        "epoch_started_at": trained.started_at,
        "resumed_from": resumed_from,
        "finished": done,
        "stop_reason": reason,
    }


def write_checkpoint(folder: Path, stepper: Stepper, state: TrainState, best_model: dict) -> None:
    """Everything ``restore`` needs to continue the run exactly, and the learning curve so far
    (checkpoint.HISTORY_FILE), into ``folder``."""
    checkpoint.save(
        folder / checkpoint.CHECKPOINT_FILE,
        {
            "model": stepper.model.state_dict(),
            "optimizer": stepper.opt.state_dict(),
            "scaler": stepper.scaler.state_dict(),
            "train_state": asdict(state),
            "best_model": best_model,
            "ema": None if stepper.ema is None else stepper.ema.state_dict(),
            "param_names": [name for name, _ in stepper.model.named_parameters()],
            "rng": checkpoint.rng_state(),
        },
    )
    checkpoint.save_history(folder, state.history)
