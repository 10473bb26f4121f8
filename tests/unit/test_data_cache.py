"""The unpacked copy of a flat folder of .gz files (the Debian layout) is keyed by content."""

from __future__ import annotations

import gzip
import os
import shutil
import zlib
from pathlib import Path

import pytest
import torch

from tests.conftest import make_mnist_like
from training.data import read_images
from training.datasets import DatasetError


def unpacked_files(cache: Path) -> dict[str, tuple[int, int]]:
    """Every file under <cache>/unpacked with its (inode, mtime_ns): a new unpack changes both."""
    return {
        str(p.relative_to(cache)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in sorted((cache / "unpacked").rglob("*"))
        if p.is_file()
    }


def test_a_replaced_gz_with_an_older_mtime_is_unpacked_afresh(isolated_cache):
    root = make_mnist_like(isolated_cache / "flat", "debian", n_train=30, n_test=10, seed=0)
    first, _ = read_images("fashion_mnist", str(root))
    other = make_mnist_like(isolated_cache / "other", "debian", n_train=30, n_test=10, seed=1)
    gz = root / "train-images-idx3-ubyte.gz"
    old = gz.stat().st_mtime - 3600  # the repaired file carries an older mtime (cp -p, a package)
    gz.write_bytes((other / gz.name).read_bytes())
    os.utime(gz, (old, old))
    read_images.cache_clear()  # a new process
    again, _ = read_images("fashion_mnist", str(root))
    expected, _ = read_images("fashion_mnist", str(other))
    assert torch.equal(again, expected) and not torch.equal(again, first)


def test_identical_gz_content_is_not_unpacked_again(isolated_cache):
    root = make_mnist_like(isolated_cache / "flat", "debian", n_train=30, n_test=10)
    first, _ = read_images("fashion_mnist", str(root))
    cache = isolated_cache / "cache"
    unpacked = unpacked_files(cache)
    assert len(unpacked) == 4
    for gz in root.glob("*.gz"):  # newer mtimes, same bytes: reinstalled, touched, copied
        os.utime(gz, (gz.stat().st_mtime + 3600,) * 2)
    copy = isolated_cache / "copy"
    shutil.copytree(root, copy)  # the same files in another folder
    for folder in (root, copy):
        read_images.cache_clear()
        again, _ = read_images("fashion_mnist", str(folder))
        assert torch.equal(again, first)
        assert unpacked_files(cache) == unpacked


def test_a_damaged_deflate_stream_is_a_clear_error(isolated_cache):
    """A flipped byte inside the compressed data raises zlib.error, not an OSError."""
    root = make_mnist_like(isolated_cache / "flipped", "debian", n_train=20, n_test=10)
    gz = root / "train-images-idx3-ubyte.gz"
    data = gz.read_bytes()
    for pos in range(10, len(data)):  # the first flip that zlib itself rejects
        damaged = data[:pos] + bytes([data[pos] ^ 0x55]) + data[pos + 1 :]
        try:
            gzip.decompress(damaged)
        except zlib.error:
            break
        except (OSError, EOFError):
            continue
    else:
        pytest.fail("no flip gave a zlib.error")
    gz.write_bytes(damaged)
    with pytest.raises(DatasetError, match=f"{gz.name} is corrupt"):
        read_images("fashion_mnist", str(root))
    assert not list((isolated_cache / "cache" / "unpacked").rglob("*.tmp*"))  # no half files
