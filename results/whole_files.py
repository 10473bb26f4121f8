"""The filesystem Tune writes a cell's experiment through: every file whole or not at all.

    tune_filesystem(storage) -> pyarrow FileSystem | None   (None: Tune's own, for a URI)

Tune stages its experiment state, searcher state and a trial's checkpoints in a local folder and
copies them to the storage (pyarrow.fs.copy_files), each file written in place. A driver or
worker killed during a copy to a local or NFS storage would leave a torn file (a
``searcher-state-*.pkl`` that is not a whole pickle), and a resume would find it damaged. Through
this filesystem each file is written under a hidden temporary name in its folder and renamed
over the old one when whole (POSIX rename is atomic), so a kill at any instant leaves either the
previous file or the new one, and at most a ``.<name>.<pid>-<n>.partial`` that nothing reads
(``results.repair`` removes those a kill left). An object store needs none of this: a put is
whole or absent.
"""

from __future__ import annotations

import itertools
import os
from pathlib import PurePosixPath

import pyarrow as pa
import pyarrow.fs as pafs

from results.crash_points import crash_point

PARTIAL = ".partial"
"""The suffix of a file being written (a hidden name: ``.<name>.<pid>-<n>.partial``)."""
_count = itertools.count()


def tune_filesystem(storage: str) -> pafs.FileSystem | None:
    """The filesystem Tune's RunConfig and Tuner.restore are given for ``storage``: whole-file
    writes on a local path; None (Tune's own) for a URI."""
    if "://" in storage:
        return None
    return pafs.PyFileSystem(WholeFiles())


def partial_name(path: str) -> str:
    """Where a file is written before it is renamed to ``path``."""
    p = PurePosixPath(path)
    return str(p.with_name(f".{p.name}.{os.getpid()}-{next(_count)}{PARTIAL}"))


def is_partial(name: str) -> bool:
    """Whether a file's base name is one a kill left half written."""
    return name.startswith(".") and name.endswith(PARTIAL)


class _WholeFile:
    """A file object written under ``partial_name(path)`` and renamed to ``path`` on close; a
    write that failed leaves the old file and removes the partial one."""

    def __init__(self, path: str):
        self.path, self.partial = path, partial_name(path)
        self._file = open(self.partial, "wb")  # noqa: SIM115 (closed by close())
        self._failed = False
        self.closed = False

    def write(self, data) -> int:
        try:
            n = self._file.write(data)
        except BaseException:
            self._failed = True
            raise
        if self._file.tell() and os.path.basename(self.path).startswith(TUNE_STATE):
            self._file.flush()  # what a kill point leaves is on disk, as a kill's would be
            crash_point("tune_file_half")
        return n

    def flush(self) -> None:
        self._file.flush()

    def tell(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._file.close()
        if self._failed:
            os.unlink(self.partial)
        else:
            os.replace(self.partial, self.path)

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False


TUNE_STATE = ("experiment_state-", "searcher-state-", "search_gen_state-", "tuner.pkl")
"""The files Tune restores an experiment from (the kill point ``tune_file_half`` fires in them)."""


class WholeFiles(pafs.FileSystemHandler):
    """pyarrow's LocalFileSystem, but a file opened for writing appears only when whole."""

    def __init__(self):
        self.local = pafs.LocalFileSystem()

    def __eq__(self, other) -> bool:
        return isinstance(other, WholeFiles)

    def __ne__(self, other) -> bool:
        return not self == other

    def __reduce__(self):  # workers get it with Tune's storage context
        return WholeFiles, ()

    def get_type_name(self) -> str:
        return "whole-files"

    def normalize_path(self, path: str) -> str:
        return self.local.normalize_path(path)

    def get_file_info(self, paths):
        return self.local.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.local.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self.local.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self.local.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self.local.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise PermissionError("Tune's storage never deletes the root folder's contents")

    def delete_file(self, path: str) -> None:
        self.local.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self.local.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        with self.local.open_input_stream(src) as f, self.open_output_stream(dest, None) as out:
            while chunk := f.read(1 << 24):
                out.write(chunk)

    def open_input_stream(self, path: str):
        return self.local.open_input_stream(path)

    def open_input_file(self, path: str):
        return self.local.open_input_file(path)

    def open_output_stream(self, path: str, metadata):
        return pa.PythonFile(_WholeFile(path), mode="w")

    def open_append_stream(self, path: str, metadata):
        return self.local.open_append_stream(path)
