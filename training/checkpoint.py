"""Checkpoints: everything needed to continue a run exactly where it stopped, written atomically."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

CHECKPOINT_FILE = "state.pt"
HISTORY_FILE = "history.json"  # the per-epoch metrics so far, readable without torch


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: Path, state: dict) -> Path:
    """torch.save to a temporary file, then rename: a reader never sees half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def save_history(ckpt_dir: Path, history: list[dict]) -> Path:
    """The learning curve beside the state: a resumed run's curve is whole, not from its restart."""
    path = Path(ckpt_dir) / HISTORY_FILE
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(history))
    os.replace(tmp, path)
    return path


def publish(ckpt_dir: Path, path: Path) -> Path:
    """Atomically copy the checkpoint a trainer reported into ``path`` (tmp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    shutil.copyfile(Path(ckpt_dir) / CHECKPOINT_FILE, tmp)
    os.replace(tmp, path)
    return path


def load(path: Path, device: torch.device | str = "cpu") -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    # weights_only=False: the state holds RNG tensors and plain dicts we wrote ourselves.
    return torch.load(path, map_location=device, weights_only=False)
