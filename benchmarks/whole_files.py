"""What writing Tune's files whole costs: a checkpoint folder copied to a local storage the way
Tune copies it (pyarrow.fs.copy_files, 64 MiB chunks), through pyarrow's LocalFileSystem (Tune's
default, each file written in place) and through results.whole_files (each file under a
temporary name, then renamed), in one run, alternating, the best of ``--repeats`` each.

Figures: seconds per copy and MB/s for each, and the ratio whole/local.

Run:  python benchmarks/whole_files.py [--mb 256] [--files 4] [--repeats 5]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs

from results.whole_files import tune_filesystem


def copy_seconds(src: Path, dst: Path, fs: pafs.FileSystem) -> float:
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir()
    start = time.perf_counter()
    pafs.copy_files(str(src), str(dst), destination_filesystem=fs, chunk_size=64 << 20)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=256, help="the checkpoint's size in MB")
    parser.add_argument("--files", type=int, default=4, help="files it is split into")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp, "checkpoint"), Path(tmp, "storage")
        src.mkdir()
        rng = np.random.default_rng(0)
        for i in range(args.files):
            (src / f"part{i}.bin").write_bytes(rng.bytes(args.mb * 10**6 // args.files))
        filesystems = {"local": pafs.LocalFileSystem(), "whole": tune_filesystem(str(dst))}
        best = dict.fromkeys(filesystems, float("inf"))
        for _ in range(args.repeats):
            for name, fs in filesystems.items():
                best[name] = min(best[name], copy_seconds(src, dst, fs))
    print(f"a {args.mb} MB checkpoint in {args.files} files, best of {args.repeats}:")
    for name, seconds in best.items():
        print(f"  {name:6s} {seconds:7.3f} s  {args.mb / seconds:8.0f} MB/s")
    print(f"  whole/local: {best['whole'] / best['local']:.2f}")


if __name__ == "__main__":
    main()
