"""Where dataset files are found and unpacked; training.reader reads them (``read_images``),
training.data splits and preprocesses what they hold.

Lookup order per data root: ``data/root``; else $VAE_DATA_ROOT, then ``<cache>/data`` and the
system dir /usr/share/datasets (training.data's docstring lists each dataset's files). A flat
folder of MNIST-format ``.gz`` files (the Debian package's layout) is unpacked once into
torchvision's layout under ``<cache>/unpacked/<hash of the files' content>/``, so a replaced file
is always unpacked afresh (atomically: concurrent trials may race).

With ``download=True`` (data/download) training.reader has a dataset found under none of the
roots fetched into the first one by training.fetch, the same verified fetching as ``python -m
training data``: from the catalogue's URLs (training.sources), or from $VAE_DATA_MIRROR when
set, each file checked against its published checksums or size and read by its reader before it
is renamed into place. Nothing is downloaded unverified (torchvision's own download is never
used).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import zlib
from pathlib import Path

from training.datasets import DATASETS, AuthorsFiles, DatasetError, MnistLike

SYSTEM_ROOTS = (Path("/usr/share/datasets"),)


def cache_dir() -> Path:
    return Path(os.environ.get("VAE_CACHE", Path.home() / ".cache" / "vae-sweeps"))


def candidate_roots(root: str) -> list[Path]:
    """Where to look: the given root, else $VAE_DATA_ROOT, the cache, the system dirs."""
    if root:
        return [Path(root).expanduser()]
    env = os.environ.get("VAE_DATA_ROOT")
    return ([Path(env)] if env else []) + [cache_dir() / "data", *SYSTEM_ROOTS]


def torchvision_root(spec: MnistLike, roots: list[Path]) -> Path | None:
    """A root in torchvision's layout holding the dataset, unpacking a flat .gz layout if needed."""
    for r in roots:
        if all((r / spec.torchvision_name / "raw" / f).is_file() for f in spec.files):
            return r
        for flat in (r / spec.debian_dir, r):
            if all((flat / f"{f}.gz").is_file() for f in spec.files):
                return _unpack(spec, flat)
    return None


def _unpack(spec: MnistLike, flat: Path) -> Path:
    """Decompress a flat folder of *.gz files into torchvision's layout under the cache, keyed by
    the files' content (never their path or mtime): a replaced .gz, whatever its mtime, gets a
    fresh unpack; identical files anywhere reuse one. Atomic per file (tmp file, then rename)."""
    sources = [flat / f"{f}.gz" for f in spec.files]
    root = cache_dir() / "unpacked" / content_key(sources)
    raw = root / spec.torchvision_name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for f, src in zip(spec.files, sources, strict=True):
        dst = raw / f
        if dst.is_file():  # complete: only ever renamed into place whole
            continue
        tmp = dst.with_suffix(f".tmp{os.getpid()}")
        try:
            with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
        except (OSError, EOFError, zlib.error) as e:  # zlib.error: a damaged deflate stream
            tmp.unlink(missing_ok=True)
            raise DatasetError(f"{src} is corrupt ({e}); reinstall it or delete it") from None
        os.replace(tmp, dst)  # concurrent trials may race here: the rename is atomic
    return root


def content_key(files: list[Path]) -> str:
    """A digest of the files' names and bytes (BLAKE2b, read in 1 MiB chunks)."""
    h = hashlib.blake2b(digest_size=16)
    for path in files:
        try:
            with open(path, "rb") as f:
                h.update(f"{path.name}\0{os.fstat(f.fileno()).st_size}\0".encode())
                while chunk := f.read(1 << 20):
                    h.update(chunk)
        except OSError as e:
            raise DatasetError(f"{path} is unreadable ({e}); check its permissions") from None
    return h.hexdigest()


def authors_folder(spec: AuthorsFiles, roots: list[Path]) -> Path | None:
    """The first folder (ours or the authors' name for it) under the roots holding every file."""
    for r in roots:
        for folder in (r / spec.folder, r / spec.authors_folder):
            if all((folder / f).is_file() for f in spec.files):
                return folder
    return None


def locate(dataset: str, roots: list[Path]) -> Path | None:
    """The folder the loader would read the dataset from, without reading or unpacking anything
    (training.files' lookup: torchvision's layout or the flat .gz files; the authors' folders)."""
    spec = DATASETS[dataset]
    if isinstance(spec, AuthorsFiles):
        return authors_folder(spec, roots)
    for r in roots:
        raw = r / spec.torchvision_name / "raw"  # torchvision's layout; else the flat .gz files
        for folder, gz in ((raw, ""), (r / spec.debian_dir, ".gz"), (r, ".gz")):
            if all((folder / f"{f}{gz}").is_file() for f in spec.files):
                return folder
    return None


def writable(path: Path) -> bool:
    """Whether path is, or could be created as, a folder this process can write in."""
    for p in (path, *path.parents):
        if p.exists():
            return p.is_dir() and os.access(p, os.W_OK | os.X_OK)
    return False


def default_root() -> Path | None:
    """Where ``python -m training data`` fetches to without --root: the first writable data root
    the loader looks in ($VAE_DATA_ROOT, then <cache>/data; never a system dir)."""
    roots = [r for r in candidate_roots("") if r not in SYSTEM_ROOTS]
    return next((r for r in roots if writable(r)), None)
