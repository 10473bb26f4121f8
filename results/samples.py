"""Sample grids beside the evaluations: ``<storage>/samples/<cell>/<trial_id>.npz``.

    write(storage, cell, trial_id, family, grids, decoder_mean) -> path   atomically
    stored(storage, cell, trial_id) -> bool
    latest(storage, cell=None) -> ({cell: Grids}, {damaged path: why})

A winner's evaluation (sweeps.engine.winners.evaluate_winner) draws the grids with
training.evaluate.sample_grids and writes one file per winner: ``np.savez_compressed`` with one
uint8 array [n, C, H, W] per temperature, keyed "t1.0", "t0.8", ..., beside plain fields:
``temperatures`` (float64, the keys' order), ``family``, ``cell``, ``trial_id``, ``decoder_mean``
(True: the decoder's mean image; False: a draw of pixels), ``written_at`` (Unix seconds) and
``schema_version`` (1, the one format these files have had: results.migrate). Only numpy
reads them back (no pickles, no torch), so ``python -m results plot samples`` draws them
anywhere. A file is written to a temporary name and moved into place, so a re-run replaces a
trial's file whole and a reader never sees half of one. A family that cannot sample leaves no
file.
"""

from __future__ import annotations

import io
import time
import uuid
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from results import store

FOLDER = "samples"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Grids:
    """One winner's sample grids, as read back: ``images[t]`` is uint8 [n, C, H, W]."""

    cell: str
    trial_id: str
    family: str
    temperatures: tuple[float, ...]
    images: dict[float, np.ndarray]
    decoder_mean: bool
    written_at: float
    path: str


def key(temperature: float) -> str:
    """The array name of a temperature's grid: 1.0 -> "t1.0"."""
    return f"t{float(temperature)}"


def path(storage: str, cell: str, trial_id: str) -> str:
    _, root = store.filesystem(storage)
    return f"{root}/{FOLDER}/{store._safe(cell)}/{store._safe(trial_id)}.npz"


def stored(storage: str, cell: str, trial_id: str) -> bool:
    """Whether this trial's grids are stored (a re-run need not draw them again)."""
    fs, _ = store.filesystem(storage)
    return fs.get_file_info(path(storage, cell, trial_id)).type == pafs.FileType.File


def write_bytes(storage: str, target: str, payload: bytes) -> str:
    """Write a file under the storage atomically (a temporary name, then a move)."""
    fs, _ = store.filesystem(storage)
    folder, name = target.rsplit("/", 1)
    tmp = f"{folder}/.{name}.{uuid.uuid4().hex}.tmp"
    try:
        fs.create_dir(folder, recursive=True)
        with fs.open_output_stream(tmp) as f:
            f.write(payload)
        fs.move(tmp, target)
    except (OSError, pa.ArrowException) as e:
        raise store.StorageError(f"cannot write {target}: {e}") from None
    return target


def write(
    storage: str,
    cell: str,
    trial_id: str,
    family: str,
    grids: dict[str, np.ndarray],
    decoder_mean: bool,
) -> str:
    """Store a winner's grids ({"t1.0": uint8 [n, C, H, W], ...}); returns the file's path."""
    temperatures = [float(k[1:]) for k in grids]
    for k, g in grids.items():
        if k != key(float(k[1:])) or g.dtype != np.uint8 or g.ndim != 4 or g.shape[1] not in (1, 3):
            raise ValueError(f"grid {k!r}: want uint8 [n, 1 or 3, H, W], got {g.dtype} {g.shape}")
    fields = {
        "temperatures": np.array(temperatures, dtype=np.float64),
        "family": np.array(family),
        "cell": np.array(cell),
        "trial_id": np.array(trial_id),
        "decoder_mean": np.array(bool(decoder_mean)),
        "written_at": np.array(time.time()),
        "schema_version": np.array(SCHEMA_VERSION),
    }
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **grids, **fields)
    return write_bytes(storage, path(storage, cell, trial_id), buffer.getvalue())


def read(storage: str, file: str) -> Grids:
    """One stored file; ValueError saying why for a damaged or foreign one."""
    fs, _ = store.filesystem(storage)
    try:
        with fs.open_input_stream(file) as f:
            payload = f.read()
        with np.load(io.BytesIO(payload), allow_pickle=False) as z:
            temperatures = tuple(float(t) for t in z["temperatures"])
            images = {t: z[key(t)] for t in temperatures}
            meta = {k: z[k].item() for k in ("family", "cell", "trial_id", "decoder_mean")}
            written_at = float(z["written_at"])
    except Exception as e:  # zipfile, zlib and numpy's reader each fail their own way on a bad file
        raise ValueError(f"{type(e).__name__}: {e}") from None
    bad = [t for t, g in images.items() if g.dtype != np.uint8 or g.ndim != 4 or not len(g)]
    if not temperatures or bad or any(g.shape[1] not in (1, 3) for g in images.values()):
        raise ValueError("not uint8 [n, 1 or 3, H, W] grids")
    return Grids(
        meta["cell"], meta["trial_id"], meta["family"], temperatures, images,
        bool(meta["decoder_mean"]), written_at, file,
    )  # fmt: skip


def files(storage: str, cell: str | None = None) -> dict[str, list[str]]:
    """{cell: [its .npz files]} of every cell (or one) with stored grids, in a stable order."""
    fs, root = store.filesystem(storage)
    base = f"{root}/{FOLDER}" + (f"/{store._safe(cell)}" if cell else "")
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    out: dict[str, list[str]] = {}
    for i in sorted(infos, key=lambda i: i.path):
        if i.type == pafs.FileType.File and i.path.endswith(".npz") and i.base_name[0] != ".":
            out.setdefault(i.path.rsplit("/", 2)[-2], []).append(i.path)
    return out


def latest(storage: str, cell: str | None = None) -> tuple[dict[str, Grids], dict[str, str]]:
    """({cell: its most recently written readable grids}, {damaged file: why}).

    A cell holds one file per winner it had; the newest is its current winner's (a sweep given
    more trials may have chosen another), so that one is drawn."""
    newest: dict[str, Grids] = {}
    damaged: dict[str, str] = {}
    for name, paths in files(storage, cell).items():
        for p in paths:
            try:
                g = read(storage, p)
            except ValueError as e:
                damaged[p] = str(e)
                continue
            if name not in newest or g.written_at > newest[name].written_at:
                newest[name] = g
    return newest, damaged
