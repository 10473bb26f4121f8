"""Downloading one file, verified: atomic (temp file, then rename), checked against what was
published about it (size, sha256, md5, git blob id) or against a mirror's SHA256SUMS; and the
format check of a dataset's files (read by its own reader; an archive unpacked safely first).

A failure (no network, HTTP error, refused connection, a connection that ends before the announced
length, a size or checksum that differs) is a DatasetError of one line naming the URL and the
cause, and leaves no file behind. training.fetch uses it for whole datasets.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from training.datasets import AuthorsFiles, DatasetError

CHUNK = 1 << 20
TIMEOUT = 60  # seconds without a byte before a download is given up


@dataclass(frozen=True)
class Expected:
    """What a file must be: its checksums by kind and its size (None: not published)."""

    checksums: dict[str, str]
    size: int | None
    origin: str  # who says so: "the catalogue" or the mirror's SHA256SUMS URL

    @property
    def kinds(self) -> str:
        return "+".join([*self.checksums, *(["size"] if self.size is not None else [])])

    def check(self, path: Path) -> None:
        """Raise ValueError naming the first difference from what was published."""
        actual = path.stat().st_size
        if self.size is not None and actual != self.size:
            raise ValueError(
                f"it is {actual:,} bytes, but {self.size:,} were published (truncated, or not "
                "the published file)"
            )
        got = digests(path, self.checksums)
        for kind, want in self.checksums.items():
            if got[kind] != want.lower():
                raise ValueError(
                    f"its {kind} is {got[kind]}, but {self.origin} has {want}: not the published "
                    "file (damaged or tampered with)"
                )


def digests(path: Path, kinds) -> dict[str, str]:
    """The file's checksums of the given kinds (sha256, md5, git-blob-sha1), in one read."""
    hashes = {}
    for kind in kinds:
        if kind == "git-blob-sha1":  # git's object id: the header holds the size
            h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode(), usedforsecurity=False)
        else:
            h = hashlib.new(kind, usedforsecurity=False)
        hashes[kind] = h
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            for h in hashes.values():
                h.update(chunk)
    return {kind: h.hexdigest() for kind, h in hashes.items()}


class Mirror:
    """A copy of the catalogue's files at ``<url>/<dataset>/<file>``, listed with their sha256
    in ``<url>/SHA256SUMS`` (read once, when the first file is looked up)."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.sums_url = f"{self.url}/SHA256SUMS"
        self._sums: dict[str, str] | None = None

    def file_url(self, dataset: str, name: str) -> str:
        return f"{self.url}/{dataset}/{name}"

    def sha256(self, dataset: str, name: str) -> str:
        if self._sums is None:
            self._sums = parse_sums(
                self.sums_url, read_url(self.sums_url).decode("utf-8", "replace")
            )
        key = f"{dataset}/{name}"
        if key not in self._sums:
            raise DatasetError(
                f"{self.sums_url} does not list {key}: a mirror must list the sha256 of every "
                f"file it serves (add the line of `sha256sum {key}` to it)"
            )
        return self._sums[key]


SUMS_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](\S.*)$")


def parse_sums(url: str, text: str) -> dict[str, str]:
    """``sha256sum`` output ("<hex>  <path>" per line) as {path: hex}; a bad line is an error."""
    sums = {}
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = SUMS_LINE.match(line.rstrip("\r"))
        if match is None:
            raise DatasetError(f"{url} line {i} is not '<sha256>  <dataset>/<file>': {line!r}")
        sums[match[2].removeprefix("./")] = match[1].lower()
    return sums


def _cause(e: BaseException) -> str:
    """Why a download failed, in a few words (HTTP 404 Not Found, Connection refused, ...)."""
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        e = e.reason if isinstance(e.reason, BaseException) else ValueError(e.reason)
    if isinstance(e, TimeoutError):
        return f"no data for {TIMEOUT} s (timed out)"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"


def read_url(url: str) -> bytes:
    """A small file's bytes (a mirror's SHA256SUMS); a DatasetError naming the URL and cause."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return response.read()
    except (OSError, ValueError, http.client.HTTPException) as e:  # URLError is an OSError
        raise DatasetError(f"could not download {url}: {_cause(e)}") from None


def download(url: str, dest: Path, check: Callable[[Path], None] | None = None) -> int:
    """Fetch url to dest atomically: into a temp file beside it, checked by ``check`` (which
    raises ValueError with the cause), then renamed; returns its size in bytes. A failure is a
    DatasetError naming the URL and the cause, and leaves no file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.part{os.getpid()}")
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response, open(tmp, "wb") as f:
            announced = response.headers.get("Content-Length")
            n = 0
            while chunk := response.read(CHUNK):
                f.write(chunk)
                n += len(chunk)
        if announced is not None and n != int(announced):  # the connection ended early
            raise ValueError(f"truncated: received {n:,} of the {int(announced):,} bytes announced")
        if check is not None:
            check(tmp)
    except (OSError, ValueError, http.client.HTTPException) as e:  # URLError is an OSError
        tmp.unlink(missing_ok=True)
        raise DatasetError(f"could not download {url}: {_cause(e)}") from None
    except BaseException:  # Ctrl-C included: never leave a partial file
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, dest)
    return n


# ---- Format checks: a dataset's files read by its own reader ----


def check_format(spec, paths: list[Path]) -> None:
    """Read the files with the dataset's own reader; a DatasetError when they are not readable."""
    if isinstance(spec, AuthorsFiles):
        spec.read(spec, tuple(paths))
        return
    from torchvision.datasets import mnist  # here: slow to import, only needed for these

    for path in paths:
        with tempfile.TemporaryDirectory(prefix="idx-") as scratch:  # the unpacked file
            _check_idx(path, Path(scratch) / path.stem, mnist)


def _check_idx(path: Path, raw: Path, mnist) -> None:
    try:
        with gzip.open(path, "rb") as fin, open(raw, "wb") as fout:
            shutil.copyfileobj(fin, fout, CHUNK)
        read = mnist.read_image_file if "-images-" in path.name else mnist.read_label_file
        read(str(raw))
    except Exception as e:  # gzip, zlib and torchvision raise assorted errors on bad files
        problem = f"{path.name} is not a gzipped IDX file ({type(e).__name__}: {e})"
        raise DatasetError(f"{path}: {problem}", problem=problem) from None


def unpack(archive: Path, out: Path, spec: AuthorsFiles) -> Path:
    """Unpack a .tar.gz into out, safely (tarfile's "data" filter: no absolute paths, no "..", no
    links out, no devices), and read the files it must hold; returns out/<folder>/."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(out, filter="data")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:  # FilterError is a TarError
        problem = f"not a safe, readable .tar.gz ({type(e).__name__}: {e})"
        raise DatasetError(f"{archive} is {problem}", problem=problem) from None
    missing = [f for f in spec.files if not (out / spec.folder / f).is_file()]
    if missing:
        problem = f"the archive does not hold {spec.folder}/{missing}"
        raise DatasetError(f"{archive}: {problem}", problem=problem)
    spec.read(spec, tuple(out / spec.folder / f for f in spec.files))
    return out / spec.folder
