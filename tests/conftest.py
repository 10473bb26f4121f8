"""Shared fixtures: tiny datasets in the real on-disk formats, and a private Ray instance."""

from __future__ import annotations

import gzip
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    """Write an IDX file (the MNIST format): magic 0x0000080{ndim}, big-endian dims, uint8 data."""
    header = struct.pack(">I", 0x800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def make_mnist_like(
    root: Path,
    layout: str,
    n_train: int = 300,
    n_test: int = 100,
    folder: str = "FashionMNIST",
    seed: int = 0,
) -> Path:
    """Write a small MNIST-format dataset: 'torchvision' (root/<folder>/raw/*-ubyte) or 'debian'
    (root/*.gz). Images are blurry blobs so a VAE has something to learn."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:28, :28]

    def images(n):
        cy, cx = rng.uniform(8, 20, (2, n, 1, 1))
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 30.0)
        return (255 * blob * rng.uniform(0.5, 1.0, (n, 1, 1))).astype(np.uint8)

    out = root / folder / "raw" if layout == "torchvision" else root
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx(out / f"{split}-images-idx3-ubyte", images(n), compress=layout == "debian")
        write_idx(
            out / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, n), compress=layout == "debian"
        )
    return root


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """Our loader's cache and data-root lookups confined to the test's temp dir."""
    monkeypatch.setenv("VAE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("VAE_DATA_ROOT", raising=False)
    monkeypatch.delenv("VAE_DATA_MIRROR", raising=False)  # downloads only from the test's own
    from training.data import read_images

    read_images.cache_clear()
    yield tmp_path
    read_images.cache_clear()


@pytest.fixture
def tiny_data_root(isolated_cache) -> Path:
    """A torchvision-layout root holding small FashionMNIST and MNIST datasets."""
    root = isolated_cache / "data"
    make_mnist_like(root, "torchvision", folder="FashionMNIST", seed=0)
    make_mnist_like(root, "torchvision", folder="MNIST", seed=1)
    return root


@pytest.fixture
def ray_local(monkeypatch, tiny_data_root):
    """A private local Ray instance (own temp dir, so no stale cluster file can interfere) whose
    workers see the tiny datasets through $VAE_DATA_ROOT; shut down and removed afterwards."""
    import ray

    monkeypatch.setenv("VAE_DATA_ROOT", str(tiny_data_root))
    monkeypatch.setenv("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: unix socket paths are limited
    ray.init(
        num_cpus=2, num_gpus=0, _temp_dir=temp_dir, include_dashboard=False, configure_logging=False
    )
    try:
        yield tiny_data_root
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


def kill_process_group(pgid: int) -> None:
    """SIGKILL a driver or `ray start` run with start_new_session=True and every Ray process it
    spawned, and wait until they are gone. Ray's workers and actors run in process groups of their
    own inside the driver's session, so the session is what is killed (daemons rename themselves,
    so their command lines cannot be matched); an actor left alive a moment kept writing into a
    folder the test was deleting. What a crashed driver or a test's cluster leaves behind must not
    outlive the test."""
    import os
    import signal
    import time

    deadline = time.monotonic() + 30
    while (left := _session_processes(pgid)) and time.monotonic() < deadline:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # gone already
        time.sleep(0.1)


def _session_processes(sid: int) -> list[int]:
    """The live (not zombie) processes in session or process group `sid`, from /proc."""
    from pathlib import Path

    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended while listed
        state, pgrp, session = fields[0], int(fields[2]), int(fields[3])
        if state not in "ZX" and sid in (pgrp, session):
            found.append(int(stat.parent.name))
    return found
