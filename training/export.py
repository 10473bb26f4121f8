"""A trained model as a folder that loads anywhere: no Ray, no storage, no dataset.

    from training.export import load
    model, config = load("winner/")          # a torch model in eval mode, on the CPU; a Config

    write(out, checkpoint, record=None) -> out    a training checkpoint folder (a Tune trial's
                                                  checkpoint_NNNNNN/, a --run-dir) exported
    read(folder) -> Exported                      its records, each checked

An export folder (SCHEMA_VERSION 1) holds three files:

    config.json   the full flat config that trained the model (Config.flat(), as a trial's row)
    weights.pt    torch.save of the model's state_dict, tensors only (weights_only=True loads
                  it): the weights its test evaluation used (training.checkpoint.test_weights)
    export.json   {"schema_version", "family", "x_shape" [C, H, W], "weights_sha256",
                   "provenance" (the checkpoint folder, "exported_at" in Unix seconds), and what
                   the exporter adds: "validation", "test", more "provenance" (python -m
                   results export: the storage, cell, trial id, Optuna number, code version)}

``python -m results export`` writes one for a cell's winner, ``python -m training export`` for
any checkpoint folder; ``python -m training sample`` and ``evaluate`` read one
(training/exported.py). A folder of another schema version, a damaged file (its SHA-256 or its
JSON) or a missing one is an ExportError saying which file and what to do.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch

import models
from training import checkpoint as ckpt_io
from training.config import Config, ConfigError, flatten
from training.data import image_shape

SCHEMA_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.pt"
RECORD_FILE = "export.json"
FILES = (CONFIG_FILE, WEIGHTS_FILE, RECORD_FILE)


class ExportError(ValueError):
    """An export folder cannot be written or read; the message is one line saying why and what
    to do."""


@dataclass(frozen=True)
class Exported:
    """An export folder's records, read and checked (the weights are checked, not loaded)."""

    folder: Path
    config: Config
    x_shape: tuple[int, ...]
    record: dict


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write(out: Path, checkpoint: Path, record: dict | None = None) -> Path:
    """Export the checkpoint folder ``checkpoint`` (its state.pt, and its config.json unless
    ``record`` holds the "config") into the new folder ``out``, atomically (a temporary folder
    beside it, then a rename). ``record``: "config", "validation", "test", "provenance", as the
    exporter knows them."""
    out, checkpoint, record = Path(out), Path(checkpoint), dict(record or {})
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} exists and is not an empty folder; choose another --out")
    config = record.pop("config", None) or _checkpoint_config(checkpoint)
    try:
        cfg = Config.from_dict(config)
    except ConfigError as e:
        raise ExportError(f"the config of {checkpoint} does not parse: {e}") from None
    try:
        saved = ckpt_io.load(checkpoint)
        weights = ckpt_io.test_weights(saved, cfg.train.test_last_epoch)
    except FileNotFoundError:
        raise ExportError(f"no checkpoint in {checkpoint} (no {ckpt_io.CHECKPOINT_FILE})") from None
    except Exception as e:  # torch.load's many ways to fail on a damaged file
        why = ckpt_io._one_line(e)
        raise ExportError(f"{checkpoint} is damaged or unreadable ({why})") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex}.tmp"
    tmp.mkdir()  # with the umask's permissions, as the folder a person makes
    try:
        torch.save({k: v.detach().cpu().contiguous() for k, v in weights.items()},
                   tmp / WEIGHTS_FILE)  # fmt: skip
        (tmp / CONFIG_FILE).write_text(json.dumps(cfg.flat(), indent=1, sort_keys=True))
        head = {
            "schema_version": SCHEMA_VERSION,
            "family": cfg.family,
            "x_shape": list(image_shape(cfg.data)),
            "weights_sha256": sha256(tmp / WEIGHTS_FILE),
        }
        record["provenance"] = {**record.get("provenance", {}), "exported_at": time.time(),
                                "checkpoint": str(checkpoint.resolve())}  # fmt: skip
        text = json.dumps({**head, **record}, indent=1, sort_keys=True, default=str)
        (tmp / RECORD_FILE).write_text(text)
        if out.is_dir():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _checkpoint_config(checkpoint: Path) -> dict:
    """The config a checkpoint folder records (a Tune checkpoint's flat config.json, or a run
    folder's nested one)."""
    try:
        recorded = ckpt_io.read_config(checkpoint)
    except ckpt_io.RunDirError as e:
        raise ExportError(str(e)) from None
    if recorded is None:
        raise ExportError(f"{checkpoint} records no config ({ckpt_io.CONFIG_FILE}); cannot "
                          "export a model whose config is unknown")  # fmt: skip
    return flatten(recorded)


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise ExportError(f"{path} is missing: export the model again") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        why = " ".join(str(e).split())[:200]
        raise ExportError(f"{path} is damaged ({why}): export the model again") from None
    if not isinstance(data, dict):
        raise ExportError(f"{path} is damaged (not a JSON object): export the model again")
    return data


def read(folder) -> Exported:
    """An export folder's records, checked: its schema version, its config, the SHA-256 of its
    weights. ExportError (one line) when it is missing, of another version or damaged."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ExportError(f"no exported model at {folder} (no such folder); "
                          "python -m results export writes one")  # fmt: skip
    if not (folder / RECORD_FILE).exists():
        raise ExportError(f"{folder} is not an exported model (no {RECORD_FILE}); "
                          "python -m results export writes one")  # fmt: skip
    record = _json(folder / RECORD_FILE)
    version = record.get("schema_version")
    if version != SCHEMA_VERSION:
        code = (record.get("provenance") or {}).get("git_sha", "unknown")
        raise ExportError(
            f"{folder / RECORD_FILE} has schema version {version!r}; this code reads version "
            f"{SCHEMA_VERSION}: export it again with this code (or load it with the code that "
            f"wrote it, git {code})"
        )
    shape = record.get("x_shape")
    if not (isinstance(shape, list) and len(shape) == 3 and all(type(n) is int for n in shape)):
        raise ExportError(f"{folder / RECORD_FILE} is damaged (x_shape {shape!r} is not [C, H, W])"
                          ": export the model again")  # fmt: skip
    try:
        config = Config.from_dict(_json(folder / CONFIG_FILE))
    except ConfigError as e:
        raise ExportError(f"{folder / CONFIG_FILE} does not parse here ({e})") from None
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise ExportError(f"{weights} is missing: export the model again")
    if sha256(weights) != record.get("weights_sha256"):
        raise ExportError(f"{weights} is damaged (its SHA-256 is not the one {RECORD_FILE} "
                          "records): export the model again")  # fmt: skip
    return Exported(folder, config, tuple(shape), record)


def load(folder, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, Config]:
    """(the exported model with its weights, in eval mode on ``device``; its Config).

    The model is built from the config (the family's class, as training.trainer.build_model, but
    without its training-memory check: a model that trained on a GPU loads on a laptop) and the
    caller's random state is left as it was."""
    exported = read(folder)
    return load_read(exported, device), exported.config


def load_read(exported: Exported, device: torch.device | str = "cpu") -> torch.nn.Module:
    """``load`` of a folder already ``read`` (its weights hashed once): the model alone."""
    cfg = exported.config
    try:
        state = torch.load(exported.folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    except Exception as e:  # the SHA-256 matched: a file written by other code
        why = ckpt_io._one_line(e)
        raise ExportError(f"{exported.folder / WEIGHTS_FILE} does not load ({why}): export the "
                          "model again") from None  # fmt: skip
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ExportError(f"{exported.folder / WEIGHTS_FILE} is not a state dict of tensors")
    with torch.random.fork_rng(devices=[]):  # building draws initial weights from the global RNG
        torch.manual_seed(cfg.train.seed)
        model = models.build(cfg.family, dataclasses.asdict(cfg.model), exported.x_shape)
    misfits = ckpt_io._misfits(model.state_dict(), state)
    if misfits:
        raise ExportError(f"{exported.folder / WEIGHTS_FILE} does not fit the {cfg.family} model "
                          f"its config builds ({'; '.join(misfits)})")  # fmt: skip
    model.load_state_dict(state)
    return model.to(device).eval()
