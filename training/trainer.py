"""The one trainer: on-device batches, validation each epoch, early stopping, checkpoints, resume.

    result = fit(model, data, train_cfg, report=print_report)
    for metrics, checkpoint_dir in epochs(model, data, train_cfg): ...   # one epoch at a time

``report(metrics, checkpoint_dir)`` is called once per epoch with a directory holding that epoch's
checkpoint; the caller decides where it goes (a run folder, Ray Tune). The trainer never imports a
tuner or a logger.
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
    device = data.train.device
    model.to(device)
    use_cuda = device.type == "cuda"
    if use_cuda and getattr(model, "channels_last", False):  # NHWC: cuDNN's fast conv layout
        model.to(memory_format=torch.channels_last)
    # Fused Adam: one kernel over all parameters, on the CPU too. The default per-parameter loop
    # cost ~5 ms of a ~18 ms step of the 784-500-500-50 VAE on 2 cores; fused ~1.4 ms.
    opt = optim.optimizer(model.parameters(), cfg, device)
    ema = optim.EMA(model, cfg.ema_rate) if cfg.ema_rate > 0 else None
    divisor = optim.loss_divisor(cfg, data.x_shape)
    evaluating = ema.weights if ema is not None else contextlib.nullcontext
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=use_cuda and cfg.amp == "fp16")
    n_train = data.train.shape[0]
    steps_per_epoch = math.ceil(n_train / cfg.batch_size)
    epoch_size = n_train
    if cfg.epoch_batches:  # a fixed number of batches per epoch, from fresh shuffles
        steps_per_epoch, epoch_size = cfg.epoch_batches, cfg.epoch_batches * cfg.batch_size
    warmup_steps = round(cfg.warmup_epochs * steps_per_epoch)

    if resume is not None:
        saved = checkpoint.load(resume, device)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        scaler.load_state_dict(saved["scaler"])
        state = TrainState(**saved["train_state"])
        best_model = saved["best_model"]
        if ema is not None:
            ema.load_state_dict(saved["ema"])
        checkpoint.set_rng_state(saved["rng"])
    else:
        torch.manual_seed(cfg.seed)
        model.initialise(data.train)
        state, best_model = TrainState(), copy.deepcopy(model.state_dict())

    metrics: dict = {}
    resumed_from = state.epoch  # 0 for a fresh run: shows a retried trial did not start over
    while state.epoch < cfg.max_epochs and state.bad_epochs < cfg.patience:
        start, started_at = time.perf_counter(), time.time()  # wall clock: comparable across nodes
        model.train()
        loss_sum = torch.zeros((), device=device)
        # one shuffle per pass; an epoch longer than the training set takes several passes
        passes = -(-epoch_size // n_train)
        perm = torch.cat([torch.randperm(n_train, device=device) for _ in range(passes)])
        perm = perm[:epoch_size]
        skipped, kept = 0, 0
        for i in range(0, perm.numel(), cfg.batch_size):
            step_start = time.perf_counter()
            x = data.train_batch(perm[i : i + cfg.batch_size])
            beta = kl_weight(state.step, warmup_steps)
            lr = optim.learning_rate(cfg, state.epoch, state.step, steps_per_epoch)
            if lr != opt.param_groups[0]["lr"]:  # a constant rate never touches the optimiser
                for group in opt.param_groups:
                    group["lr"] = lr
            state.step += 1
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                terms = model(x)
                loss = -(terms.log_px_z - beta * terms.kl).mean()
            if cfg.skip_nan_steps and not torch.isfinite(loss):  # a sync, only when asked for
                skipped += 1
                continue
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss / divisor).backward()
            if cfg.grad_clip > 0 or cfg.grad_skip > 0:
                scaler.unscale_(opt)
                norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or math.inf)
                if cfg.grad_skip > 0 and not norm <= cfg.grad_skip:  # NaN norms are skipped too
                    scaler.update()
                    skipped += 1
                    continue
            scaler.step(opt)
            scaler.update()
            if ema is not None:
                ema.update()
            loss_sum += loss.detach() * x.shape[0]  # summed on the device: no per-step sync
            kept += x.shape[0]
            if cfg.step_seconds > 0:  # benchmarks only (TrainConfig.step_seconds)
                time.sleep(max(0.0, step_start + cfg.step_seconds - time.perf_counter()))
        if kept == 0:
            raise DivergedError(
                f"every one of the {skipped} steps of epoch {state.epoch + 1} was skipped (a "
                "non-finite loss, or a gradient norm over train/grad_skip); lower train/lr or "
                "raise train/grad_skip"
            )
        train_loss = loss_sum.item() / kept
        with evaluating():
            val = elbo_terms(model, data.val, cfg.eval_batch_size)
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
            with evaluating():  # the EMA's weights, when there is one
                best_model = copy.deepcopy(model.state_dict())
        else:
            state.bad_epochs += 1
        done = state.epoch >= cfg.max_epochs or state.bad_epochs >= cfg.patience
        metrics = {
            "epoch": state.epoch,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_log_px_z": val["log_px_z"],
            "val_kl": val["kl"],
            "beta": beta,
            "lr": lr,
            "skipped_steps": skipped,
            "best_val_loss": state.best_val_loss,
            "best_epoch": state.best_epoch,
            "epoch_seconds": time.perf_counter() - start,
            "epoch_started_at": started_at,
            "resumed_from": resumed_from,
            "finished": done,
            "stop_reason": (
                "early_stopping"
                if state.bad_epochs >= cfg.patience
                else "max_epochs"
                if done
                else ""
            ),
        }
        state.history.append({k: v for k, v in metrics.items() if k != "stop_reason"})
        with tempfile.TemporaryDirectory(prefix="ckpt-") as tmp:
            checkpoint.save(
                Path(tmp) / checkpoint.CHECKPOINT_FILE,
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scaler": scaler.state_dict(),
                    "train_state": asdict(state),
                    "best_model": best_model,
                    "ema": None if ema is None else ema.state_dict(),
                    "param_names": [name for name, _ in model.named_parameters()],
                    "rng": checkpoint.rng_state(),
                },
            )
            checkpoint.save_history(Path(tmp), state.history)
            yield metrics, Path(tmp)
    return state.history[-1] if state.history else {}
