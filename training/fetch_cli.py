"""Fetch the papers' datasets into a data root, verified (training.fetch, training.sources).

    python -m training data --datasets NAME [NAME ...] [--root DIR] [--mirror URL]
    python -m training data --all [--root DIR] [--mirror URL]
    python -m training data --list [--datasets NAME ...] [--root DIR]

One line per published file: what it was verified by, and whether it was downloaded (bytes, URL)
or already present. The root is --root, else the first writable data root the loader looks in
($VAE_DATA_ROOT, then <cache>/data); the first line says which. The mirror is --mirror, else
$VAE_DATA_MIRROR: <mirror>/<dataset>/<file>, checked against <mirror>/SHA256SUMS.

Exit code 0 when every dataset asked for is in place and verified; 2 on bad input (before
anything is written) or a failed download: one ``error:`` line each.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from training import fetch, files, sources
from training.datasets import DATASETS, DatasetError
from training.download import Mirror
from training.files import candidate_roots, default_root, locate, writable


class UsageError(ValueError):
    """Bad input: the message is the whole ``error:`` line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one "error:" line from main(), not usage text + SystemExit
        raise UsageError(f"{message} (see python -m training data --help)")


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m training data",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument("--datasets", nargs="+", metavar="NAME", help=f"of {', '.join(DATASETS)}")
    what.add_argument("--all", action="store_true", help="every dataset")
    p.add_argument("--list", action="store_true", help="a table of the datasets; fetch nothing")
    p.add_argument("--root", default=None, help="the data root (default: see below)")
    p.add_argument("--mirror", default=None, help=f"mirror URL (default ${fetch.MIRROR_ENV})")
    return p


def main(argv: list[str]) -> int:
    try:
        args = parser().parse_args(argv)
        names = chosen(args)
        root, why = data_root(args.root, must_write=not args.list)
    except UsageError as e:
        return error(str(e))
    if args.list:
        print(f"data root: {root} ({why})")
        print(table(names, root, others=[] if args.root else candidate_roots("")))
        return 0
    mirror = args.mirror or os.environ.get(fetch.MIRROR_ENV) or None
    print(f"data root: {root} ({why})")
    if mirror:
        print(f"mirror: {mirror} (its SHA256SUMS replace the pinned checksums and sizes)")
    source = Mirror(mirror) if mirror else None  # its SHA256SUMS read once
    failed = 0
    for name in names:
        try:
            for done in fetch.fetch(name, root, source, [] if args.root else candidate_roots("")):
                print(done, flush=True)
        except DatasetError as e:
            failed += 1
            error(str(e))
    return 2 if failed else 0


def error(message: str) -> int:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def chosen(args: argparse.Namespace) -> list[str]:
    """The datasets asked for, every one of them known (checked before anything is written)."""
    if args.all or (args.list and not args.datasets):
        return list(DATASETS)
    if not args.datasets:
        raise UsageError("say which datasets: --datasets NAME [NAME ...], --all or --list")
    for name in args.datasets:
        if not sources.known(name):
            raise UsageError(str(sources.unknown(name)))
    return list(dict.fromkeys(args.datasets))


def data_root(root: str | None, must_write: bool) -> tuple[Path, str]:
    """The root to fetch into, and why it is that one (for the first line of output)."""
    if root:
        path = Path(root).expanduser()
        if must_write and not writable(path):
            raise UsageError(f"--root {path} is not a folder this process can write in")
        return path, "--root"
    path = default_root()
    if path is None:
        tried = ", ".join(str(r) for r in candidate_roots("") if r not in files.SYSTEM_ROOTS)
        if must_write:
            raise UsageError(f"no writable data root ({tried}); pass --root DIR")
        path = candidate_roots("")[0]
    why = "$VAE_DATA_ROOT" if os.environ.get("VAE_DATA_ROOT") == str(path) else "<cache>/data"
    return path, f"{why}, the first writable data root the loader looks in"


def table(names: list[str], root: Path, others: list[Path]) -> str:
    """Each dataset's files, source hosts, total size, checksum kinds and status under root;
    then where each checksum and size was published."""
    rows = [("dataset", "files", "size", "source", "checksum", "status")]
    for name in names:
        srcs = sources.CATALOGUE[name]
        rows.append(
            (name, str(len(srcs)), size_of(srcs), sources.hosts(name),
             sources.checksum_summary(name), status(name, root, others))
        )  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines += ["", "checksums and sizes as published in:"]
    lines += [f"  {n}: {sources.CATALOGUE[n][0].provenance}" for n in names]
    return "\n".join(line.rstrip() for line in lines)


def size_of(srcs) -> str:
    if any(s.size is None for s in srcs):
        return "unknown"
    total = sum(s.size for s in srcs)
    return f"{total / 1e9:.2f} GB" if total >= 1e9 else f"{total / 1e6:.1f} MB"


def status(dataset: str, root: Path, others: list[Path]) -> str:
    """present / present in <folder> (another data root) / partial (k of n files) / missing;
    existence and size only, nothing is read."""
    try:
        fetch.check_available(dataset, str(root))
        return "present"
    except DatasetError as e:
        if "bytes, but" in str(e):  # check_available's size check
            return "damaged (a file's size is not the published one)"
    folder = locate(dataset, [r for r in others if r != root])
    if folder is not None:
        return f"present in {folder}"
    place = fetch.place(dataset, root)
    n = sum((place / s.name).is_file() for s in sources.CATALOGUE[dataset])
    return f"partial ({n} of {len(sources.CATALOGUE[dataset])} files)" if n else "missing"
