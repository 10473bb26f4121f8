"""Checkpoints: everything needed to continue a run exactly where it stopped, written atomically.

A run folder (``python -m training --run-dir``) belongs to one config: CONFIG_FILE records the
config it was started with, and check_run_dir / resume_point refuse a folder that holds another
config's run, a checkpoint without a config record, or a checkpoint that is damaged or does not
fit the model, instead of resuming it silently.

Every file here is written atomically (write_atomically: a temporary file, then a rename), and
every checkpoint is read through ``load``, which brings the project's older formats to the
current one (``migrate``; the formats are listed in FORMATS).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch

from training.config import flatten

CHECKPOINT_FILE = "state.pt"
HISTORY_FILE = "history.json"  # the per-epoch metrics so far, readable without torch
CONFIG_FILE = "config.json"  # a run folder's config, Config.to_dict(), written before training
PREVIOUS_PREFIX = "previous-"  # move_aside's folders inside a run folder
MAY_GROW = ("train/max_epochs",)
"""Keys a resumed run may raise: a longer budget continues the same trajectory (the trainer's
resume test), so the recorded config is then the one a straight run of the new budget has."""
STATE_KEYS = ("model", "optimizer", "scaler", "train_state", "best_model", "rng")
FORMATS = {
    1: STATE_KEYS,  # 2026-11-22, the first trainer
    2: (*STATE_KEYS, "ema"),  # 2026-12-02, train/ema_rate: the EMA's tensors, or None
    3: (*STATE_KEYS, "ema", "param_names"),  # 2026-12-03, train/test_last_epoch
}
"""The checkpoint formats the trainer has written, by the keys each holds (a checkpoint records
no version: the keys it lacks tell its format). ``migrate`` brings formats 1 and 2 to the
current one, FORMAT. Run folders have changed too, outside the checkpoint: one without
CONFIG_FILE (written before 2026-12-02) is refused by check_run_dir, since the config it ran
cannot be known; a checkpoint folder without HISTORY_FILE (the first trainer's, format 1) is
read by its readers (results.records, sweeps.engine.parquet_writer) as a run without a learning
curve."""
FORMAT = max(FORMATS)


class RunDirError(ValueError):
    """A run folder cannot serve this run; the message says which file and why, in one line."""


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` to a temporary file beside ``path``, then rename it to ``path``: a reader
    never sees half a file (the rename is atomic), and two processes never share a tmp file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)
    return path


def save(path: Path, state: dict) -> Path:
    """torch.save, atomically: a reader never sees half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomically(path, lambda tmp: torch.save(state, tmp))


def save_history(ckpt_dir: Path, history: list[dict]) -> Path:
    """The learning curve beside the state: a resumed run's curve is whole, not from its restart."""
    text = json.dumps(history)
    return write_atomically(Path(ckpt_dir) / HISTORY_FILE, lambda tmp: tmp.write_text(text))


def publish(ckpt_dir: Path, path: Path) -> Path:
    """Atomically copy the checkpoint a trainer reported into ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    source = Path(ckpt_dir) / CHECKPOINT_FILE
    return write_atomically(path, lambda tmp: shutil.copyfile(source, tmp))


def load(path: Path, device: torch.device | str = "cpu") -> dict:
    """The checkpoint in ``path`` (its file, or the folder holding it) in the current format
    (migrate)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    # weights_only=False: the state holds RNG tensors and plain dicts we wrote ourselves.
    return migrate(torch.load(path, map_location=device, weights_only=False))


def format_of(saved) -> int | None:
    """The format (FORMATS) of the checkpoint ``saved``; None when it is no checkpoint of this
    trainer (not a dict, or one without all of STATE_KEYS)."""
    if not isinstance(saved, dict):
        return None
    return max((n for n, keys in FORMATS.items() if all(k in saved for k in keys)), default=None)


def migrate(saved):
    """The checkpoint ``saved`` in the current format: the one place that knows the older ones.

    Format 1 kept no EMA: ``ema`` becomes None. Formats 1 and 2 named no parameters:
    ``param_names`` becomes None, so test_weights refuses the last epoch's EMA weights (it cannot
    place them) while the best weights, and a resume, read as ever. A checkpoint of the current
    format is returned as it is (the same object), an older one as a new dict (the one given is
    left unchanged), and what is no checkpoint of this trainer as it is, for resume_point to
    refuse."""
    version = format_of(saved)
    if version is None or version == FORMAT:
        return saved
    saved = dict(saved)
    if version < 2:
        saved["ema"] = None  # train/ema_rate did not exist: no EMA was kept
    if version < 3:
        saved["param_names"] = None  # not recorded
    return saved


def test_weights(saved: dict, last_epoch: bool = False) -> dict:
    """The state dict a test evaluates: the best-validation weights (EMA weights when the run
    kept an EMA), or with ``last_epoch`` the last epoch's, its EMA applied."""
    saved = migrate(saved)
    if not last_epoch:
        return saved["best_model"]
    state = dict(saved["model"])
    if saved["ema"] is not None:  # the EMA's tensors, in named_parameters() order
        if saved["param_names"] is None:  # a format before 3 (FORMATS)
            raise RunDirError(
                "this checkpoint names no parameters for its EMA (written before "
                "train/test_last_epoch existed); test its best weights instead"
            )
        state.update(zip(saved["param_names"], saved["ema"], strict=True))
    return state


def check_run_dir(run_dir: Path, config: dict) -> None:
    """Refuse a run folder that holds another config's run (its CONFIG_FILE differs, beyond a
    raised MAY_GROW key) or a checkpoint without a config record."""
    run_dir = Path(run_dir)
    recorded = read_config(run_dir)
    if recorded is None and (run_dir / CHECKPOINT_FILE).exists():
        raise RunDirError(
            f"{run_dir} holds a checkpoint but no {CONFIG_FILE} (a run from before configs were "
            "recorded), so it cannot tell whether that run had this config"
        )
    diffs = config_differences(recorded, config, str(run_dir)) if recorded is not None else []
    if diffs:
        more = f" and {len(diffs) - 6} more" if len(diffs) > 6 else ""
        raise RunDirError(f"{run_dir} holds a run of another config: {'; '.join(diffs[:6])}{more}")


def read_config(run_dir: Path) -> dict | None:
    """The config recorded in a run folder; None if there is none."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.exists():
        return None
    try:
        recorded = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunDirError(f"{path} is unreadable ({_one_line(e)})") from None
    if not isinstance(recorded, dict):
        raise RunDirError(f"{path} is not a config record (a JSON object)")
    return recorded


def config_differences(recorded: dict, config: dict, where: str) -> list[str]:
    """["model/latent_dim: 50 in <where>, 20 now", ...]: the keys whose values differ (compared
    as JSON, so a tuple equals its list); a key of MAY_GROW may be raised."""
    old, new = flatten(recorded), flatten(json.loads(json.dumps(config)))
    diffs = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, _ABSENT), new.get(key, _ABSENT)
        grows = key in MAY_GROW and isinstance(a, int) and isinstance(b, int) and a <= b
        if a != b and not grows:
            diffs.append(f"{key}: {_show(a)} in {where}, {_show(b)} now")
    return diffs


def record_config(run_dir: Path, config: dict) -> Path:
    """Write the run folder's config record atomically (tmp file, then rename)."""
    text = json.dumps(config, indent=1, sort_keys=True)
    return write_atomically(Path(run_dir) / CONFIG_FILE, lambda tmp: tmp.write_text(text))


def move_aside(run_dir: Path) -> Path | None:
    """Move a run folder's files into <run_dir>/previous-<time>/ (nothing is deleted), so that a
    fresh run can start in it; returns that folder, or None when there was nothing to move."""
    run_dir = Path(run_dir)
    entries = [p for p in run_dir.iterdir() if not p.name.startswith(PREVIOUS_PREFIX)]
    if not entries:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest, n = run_dir / f"{PREVIOUS_PREFIX}{stamp}", 1
    while dest.exists():  # two restarts within a second
        dest, n = run_dir / f"{PREVIOUS_PREFIX}{stamp}-{n}", n + 1
    dest.mkdir()
    for p in entries:
        os.replace(p, dest / p.name)
    return dest


def resume_point(run_dir: Path, model: torch.nn.Module) -> Path | None:
    """The run folder's checkpoint to resume from (None if it has none), once it is known to be
    readable and to fit ``model``: a damaged or foreign checkpoint is a RunDirError, never
    loaded half-way or into the wrong shapes."""
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.exists():
        return None
    try:
        state = load(path)
        missing = [k for k in STATE_KEYS if k not in state]
    except Exception as e:  # torch.load raises RuntimeError, UnpicklingError, EOFError, ...
        raise RunDirError(f"{path} is damaged or unreadable ({_one_line(e)})") from None
    if missing:
        raise RunDirError(f"{path} is not a checkpoint of this trainer (no {missing})")
    for part in ("model", "best_model"):
        misfits = _misfits(model.state_dict(), state[part])
        if misfits:
            raise RunDirError(f"{path} does not fit the model ({part}: {'; '.join(misfits)})")
    return path


def _misfits(expected: dict, saved: dict, limit: int = 3) -> list[str]:
    """Parameters missing, unexpected or of another shape in ``saved``, at most ``limit``."""
    out = [f"{k} missing" for k in expected if k not in saved]
    out += [f"{k} unexpected" for k in saved if k not in expected]
    out += [
        f"{k} {list(saved[k].shape)} saved, {list(v.shape)} now"
        for k, v in expected.items()
        if k in saved and tuple(saved[k].shape) != tuple(v.shape)
    ]
    return out[:limit] + ([f"{len(out) - limit} more"] if len(out) > limit else [])


_ABSENT = object()


def _show(value) -> str:
    return "absent" if value is _ABSENT else json.dumps(value)


def _one_line(e: BaseException) -> str:
    """'RuntimeError: <its first sentence>' on one line (torch's messages run to paragraphs)."""
    first = " ".join(str(e).split()).split(". ")[0]
    return f"{type(e).__name__}: {first}"
