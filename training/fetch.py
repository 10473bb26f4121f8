"""Fetching the datasets' files into a data root, verified (python -m training data; data/download).

For each published file of a dataset (training.sources.CATALOGUE) that is not in place yet:

  1. download it from its first URL (the next one on failure) into a staging folder beside its
     place (``.fetch-*``); fewer bytes than the server announced is a failure (truncated);
  2. check it against what was published: its size, then every pinned checksum (sha256, md5, git
     blob id); with a mirror, against the mirror's SHA256SUMS instead;
  3. read the dataset with its own reader (training.datasets; torchvision's IDX parser for the
     MNIST files) as a format check; CIFAR-10's archive is first unpacked safely, in staging;
  4. only then rename the files into place (atomic: concurrent trials may race).

Any failure is a DatasetError of one line naming the URL and the cause, and leaves nothing behind
(the staging folder is deleted): a file in place is a verified one. A file already in place is
checked (size and checksums, no download) and reported "present".

Layout under a data root (what training.files reads):

    MNIST-format  <root>/<debian_dir>/*.gz (the Debian package's flat layout)
    CIFAR-10      <root>/cifar-10-python.tar.gz, unpacked into <root>/cifar-10-batches-py/
    the others    <root>/<dataset folder>/<file> (or the authors' folder name, when already there)

A mirror (``--mirror URL`` or $VAE_DATA_MIRROR), for clusters without internet, serves
``<mirror>/<dataset>/<file>`` and ``<mirror>/SHA256SUMS`` (sha256sum's format, paths
``<dataset>/<file>``); its checksums replace the pinned ones.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from training import files
from training.datasets import DATASETS, AuthorsFiles, DatasetError, MnistLike
from training.download import Expected, Mirror, check_format, digests, download, unpack
from training.files import candidate_roots, default_root, locate, writable
from training.sources import CATALOGUE, Source, known, sources, unknown

MIRROR_ENV = "VAE_DATA_MIRROR"


@dataclass(frozen=True)
class Fetched:
    """What fetch did with one published file: one line of ``python -m training data``."""

    dataset: str
    path: Path
    verified_by: str
    url: str = ""  # where it was downloaded from; empty when it was already present
    nbytes: int = 0
    note: str = ""  # instead of the above: why a copy found elsewhere is not used

    def __str__(self) -> str:
        if self.note:
            return f"{self.dataset}: {self.note}"
        if self.url:
            return (
                f"{self.dataset}: downloaded {self.nbytes:,} bytes from {self.url}, verified by "
                f"{self.verified_by} -> {self.path}"
            )
        return f"{self.dataset}: present {self.path}, verified by {self.verified_by}"


def place(dataset: str, root: Path) -> Path:
    """The folder of the dataset's published files under root: where they are, else where they
    go (for CIFAR-10, the root itself, which holds the archive)."""
    spec = DATASETS[dataset]
    if isinstance(spec, MnistLike):
        return root / spec.debian_dir
    if spec.archive_files:
        return root
    names = [s.name for s in sources(dataset)]
    for folder in (root / spec.folder, root / spec.authors_folder):
        if all((folder / n).is_file() for n in names):
            return folder
    return root / spec.folder


def fetch(dataset: str, root: str | Path = "", mirror=None, look_in=()) -> list[Fetched]:
    """Make the dataset's files present and verified under ``root`` (module docstring); one
    Fetched per published file. A DatasetError (one line) on any failure.

    ``root`` as data/root says it: "" is the default root (default_root(); the files are then
    looked for in every data root the loader reads, as ``look_in`` says). Where they are all
    under another root of ``look_in`` and pass their checks there, they are left there; a copy
    there that does not (the Debian package's recompressed .gz files) is noted, and the
    published files are fetched into ``root``. ``mirror``: its URL or a Mirror (whose SHA256SUMS
    is read once for several datasets); None: $VAE_DATA_MIRROR, if set."""
    srcs = sources(dataset)  # unknown dataset, or one without a source: an error first
    if isinstance(root, str) and not root:
        look_in, root = look_in or candidate_roots(""), default_root()
        if root is None:
            raise DatasetError(
                f"no data root can be written here ({', '.join(map(str, candidate_roots('')))}): "
                "set data/root or $VAE_DATA_ROOT to a writable folder"
            )
    root = Path(root).expanduser()
    if mirror is None:
        mirror = os.environ.get(MIRROR_ENV) or None
    mirrored = Mirror(mirror) if isinstance(mirror, str) else mirror
    notes = []

    def complete(r: Path) -> bool:
        return all((place(dataset, r) / s.name).is_file() for s in srcs)

    for other in [] if complete(root) else look_in:  # the root's own copy: checked below
        if other == root or not complete(other):
            continue
        if packaged := package_copy(dataset, [place(dataset, other) / s.name for s in srcs]):
            return packaged
        try:
            return _fetch_into(dataset, srcs, other, mirrored)  # checks only: all are there
        except DatasetError as e:
            why = f"{e.problem}; fetching the published files into {root}"
            notes.append(Fetched(dataset, place(dataset, other), "", note=why))
    try:
        return notes + _fetch_into(dataset, srcs, root, mirrored)
    except DatasetError as e:
        if not notes:
            raise
        raise DatasetError(f"{notes[-1].note}: {e}", problem=e.problem) from None


DPKG_INFO = Path("/var/lib/dpkg/info")
"""Where Debian's package manager keeps each installed package's file list and md5sums."""


def package_copy(dataset: str, paths: list[Path]) -> list[Fetched] | None:
    """A copy installed by a Debian package (dataset-fashion-mnist recompresses the published
    .gz files, so their checksums differ), verified by the md5sums its package installed with it
    and by reading it; None where no package lists these files with these contents."""
    sums = {}
    for listing in sorted(DPKG_INFO.glob("*.md5sums")):
        for line in listing.read_text(errors="replace").splitlines():
            md5, _, name = line.partition("  ")
            sums["/" + name] = (md5, listing.stem)
    found = [sums.get(str(p)) for p in paths]
    if not all(found) or any(
        digests(p, ["md5"])["md5"] != md5 for p, (md5, _) in zip(paths, found, strict=True)
    ):
        return None
    check_format(DATASETS[dataset], paths)
    by = f"md5 of the Debian package {found[0][1]} (dpkg's md5sums)+format"
    return [Fetched(dataset, p, by) for p in paths]


def _fetch_into(dataset: str, srcs, root: Path, mirror: Mirror | None) -> list[Fetched]:
    spec = DATASETS[dataset]
    with Staging(place(dataset, root)) as staging:
        if isinstance(spec, AuthorsFiles) and spec.archive_files:
            return _fetch_archive(dataset, spec, srcs[0], root, mirror, staging)
        return _fetch_files(dataset, spec, srcs, root, mirror, staging)


class Staging:
    """A temp folder beside the files' place (so that a rename into place is atomic), made on
    first use (files already in place need none) and removed with whatever is left in it, as are
    the folders made for it if they stay empty (a failed fetch leaves nothing)."""

    def __init__(self, beside: Path):
        self.beside = beside
        self.path: Path | None = None
        self.made = [p for p in (beside, *beside.parents) if not p.exists()]

    def __call__(self) -> Path:
        if self.path is None:
            try:
                self.beside.mkdir(parents=True, exist_ok=True)
                self.path = Path(tempfile.mkdtemp(prefix=".fetch-", dir=self.beside))
            except OSError as e:
                raise DatasetError(f"cannot write in {self.beside} ({e.strerror})") from None
        return self.path

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
        for folder in self.made:  # innermost first; a folder that now holds files stays
            try:
                folder.rmdir()
            except OSError:
                break


def _expected(dataset: str, src: Source, mirror: Mirror | None) -> Expected:
    if mirror is not None:  # the mirror's own checksums replace the pinned ones (and the sizes)
        return Expected({"sha256": mirror.sha256(dataset, src.name)}, None, mirror.sums_url)
    return Expected(src.checksums, src.size, "the catalogue (training.sources)")


def _again(dataset: str, root: Path) -> str:
    return f"python -m training data --datasets {dataset} --root {root}"


def _present(dataset: str, path: Path, expected: Expected, root: Path) -> Fetched:
    try:
        expected.check(path)
    except (OSError, ValueError) as e:
        raise DatasetError(
            f"{path} is present but fails its check: {e}; delete it and fetch it again "
            f"({_again(dataset, root)})",
            problem=f"{path} is not the published file: {e}",
        ) from None
    return Fetched(dataset, path, expected.kinds)


def _download(dataset: str, src: Source, dest: Path, expected: Expected, mirror) -> tuple:
    """Download src into dest from its first URL that gives the published file: (url, bytes)."""
    urls = (mirror.file_url(dataset, src.name),) if mirror else src.urls
    failures = []
    for url in urls:
        try:
            return url, download(url, dest, expected.check)
        except DatasetError as e:
            failures.append(str(e))
    if mirror is None:  # the fix that does not depend on the network or on these hosts
        failures.append("a mirror can serve the files instead (--mirror URL, $VAE_DATA_MIRROR)")
    raise DatasetError("; ".join(failures))


def _fetch_files(dataset, spec, srcs, root: Path, mirror, staging: Staging) -> list:
    folder = place(dataset, root)
    done, paths, staged = [], [], {}  # staged: file name -> the URL it came from
    for src in srcs:
        expected = _expected(dataset, src, mirror)
        if (folder / src.name).is_file():
            done.append(_present(dataset, folder / src.name, expected, root))
            paths.append(folder / src.name)
            continue
        url, n = _download(dataset, src, staging() / src.name, expected, mirror)
        staged[src.name] = url
        done.append(Fetched(dataset, folder / src.name, expected.kinds, url, n))
        paths.append(staging() / src.name)
    if not staged and all(s.checksums for s in srcs):
        return done  # every file was there and has its published checksum: nothing to read
    try:
        check_format(spec, paths)  # a file without a checksum is read even when present
    except DatasetError as e:
        named = [name for name in staged if str(staging() / name) in str(e)]
        if not named and (not staged or str(folder) in str(e)):
            raise  # a file that was there: its reader's message names it and the fix
        url = staged[(named or list(staged))[0]]
        raise DatasetError(
            f"could not download {url}: it fails the format check ({e.problem}); nothing was kept"
        ) from None
    if staged:  # noted before the files move in (after a kill between, they are fetched again)
        sizes = {name: (staging() / name).stat().st_size for name in staged}
        _note_mirror_sizes(dataset, folder, mirror, sizes)
    for name in staged:
        os.replace(staging() / name, folder / name)
    return [replace(d, verified_by=f"{d.verified_by}+format".lstrip("+")) for d in done]


def mirror_record(dataset: str, folder: Path) -> Path:
    """Where fetch notes the sizes of files a mirror served (they are not the published ones, so
    check_available compares a file with its record's size instead)."""
    return folder / f".{dataset}.mirror.json"


def _note_mirror_sizes(dataset: str, folder: Path, mirror: Mirror | None, sizes: dict) -> None:
    """Record the sizes of files a mirror served; forget those of files fetched from their
    published source (``mirror`` None), which have the published sizes."""
    record = mirror_record(dataset, folder)
    noted = json.loads(record.read_text())["sizes"] if record.is_file() else {}
    noted = noted | sizes if mirror else {k: v for k, v in noted.items() if k not in sizes}
    if not noted:
        record.unlink(missing_ok=True)
        return
    tmp = record.with_name(f"{record.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"sizes": noted}, indent=1))
    os.replace(tmp, record)


def _fetch_archive(dataset, spec, src: Source, root: Path, mirror, staging: Staging) -> list:
    """CIFAR-10: the archive kept in root, unpacked (checked, in staging) into root/<folder>/."""
    archive, folder = root / src.name, root / spec.folder
    unpacked = all((folder / f).is_file() for f in spec.files)
    if not archive.is_file() and unpacked:  # e.g. unpacked by torchvision: nothing to check
        why = "nothing (unpacked without its archive, the file the checksums are of)"
        return [Fetched(dataset, folder, why)]
    expected = _expected(dataset, src, mirror)
    if archive.is_file():
        done, url, source = _present(dataset, archive, expected, root), "", archive
    else:
        url, n = _download(dataset, src, staging() / src.name, expected, mirror)
        done, source = Fetched(dataset, archive, expected.kinds, url, n), staging() / src.name
    if url or not unpacked:
        try:
            files = unpack(source, staging() / "unpacked", spec)
        except DatasetError as e:
            if url:
                raise DatasetError(
                    f"could not download {url}: {e.problem}; nothing was kept"
                ) from None
            raise DatasetError(
                f"{archive}: {e.problem}; delete it and fetch it again ({_again(dataset, root)})"
            ) from None
        if url:  # the archive first: a kill before its files are in place leaves it to unpack
            os.replace(source, archive)
        folder.mkdir(exist_ok=True)
        for f in files.iterdir():
            os.replace(f, folder / f.name)
    return [replace(done, verified_by=f"{done.verified_by}+format") if url else done]


# ---- A cheap check: is a dataset there (or fetchable)? For the sweep's preflight and --list ----


def check_available(dataset: str, root: str = "", download: bool = False) -> None:
    """Whether a trial will get the dataset, checked cheaply (no decoding, no network): raises a
    DatasetError of one line unless its files are under the data roots (``root``, else the
    default ones) with their published sizes, or ``download`` is set and it has a download
    source. The error's fix is one that does not fail the same way."""
    if not known(dataset):
        raise unknown(dataset)
    roots = candidate_roots(root)
    folder = locate(dataset, roots)
    if folder is not None:
        if any(folder.is_relative_to(r) for r in files.SYSTEM_ROOTS):
            return  # a package's copy: Debian's .gz files are recompressed, their sizes differ
        record = mirror_record(dataset, folder)  # files a mirror served: its sizes, not these
        served = json.loads(record.read_text())["sizes"] if record.is_file() else {}
        for src in CATALOGUE.get(dataset, ()):
            path, size = folder / src.name, served.get(src.name, src.size)
            if size is not None and path.is_file() and path.stat().st_size != size:
                home = next(r for r in roots if folder.is_relative_to(r))
                where = "the mirror served" if src.name in served else "were published"
                raise DatasetError(
                    f"{path} is {path.stat().st_size:,} bytes, but {size:,} {where} "
                    f"(truncated?); delete it and fetch it again ({_again(dataset, home)})"
                )
        return
    if download:
        sources(dataset)  # a dataset without a download source cannot be fetched by a trial
        return
    where = [str(r) for r in roots]
    target = roots[0] if root else default_root()
    if target is not None and writable(target):
        how = _again(dataset, target) + " where there is network (add --mirror URL without)"
        fix = f"fetch it with {how}, or set data/download=true"
    else:  # fetching into a folder that cannot be written would fail as well
        fix = f"{roots[0]} cannot be written here: point data/root at a writable folder and fetch "
        fix += f"it there (python -m training data --datasets {dataset} --root DIR)"
    raise DatasetError(f"dataset {dataset!r} not found under {where}: {fix}")
