"""The lines cells in flight print, on the driver's console.

    relay = Relay()                 on the driver: a folder on its node
    relay.capture()                 in the CellControllers actor (the driver's node): its
                                    stdout and stderr appended, a whole line at a time, to files
    relay.show()                    on the driver, every few seconds: print what is new

Cells in flight run in a Ray actor (sweeps.engine.in_flight), whose output Ray would forward
only with its own worker logs, which the console leaves off (sweeps.engine.console.quiet): a
cell's start line, the repairs a --resume made and its winner's test number would be lost.
The actor is placed on the driver's node, so a file there carries them.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
from pathlib import Path

STREAMS = ("stdout", "stderr")


class _Lines:
    """A text stream that appends each whole line written to it to ``path``: a thread's partial
    line waits for its end, so lines of cells printing at once never mix."""

    def __init__(self, path: Path):
        self.path, self.lock, self.local = path, threading.Lock(), threading.local()

    def write(self, text: str) -> int:
        pending = getattr(self.local, "pending", "") + text
        whole, _, self.local.pending = pending.rpartition("\n")
        if whole:
            # a character UTF-8 cannot hold (a lone surrogate) is written as its escape: a line
            # is never lost to it, nor the cell's thread
            with self.lock, self.path.open("a", encoding="utf-8", errors="backslashreplace") as f:
                f.write(whole + "\n")
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


class Relay:
    """A folder on the driver's node that the cells' actor writes its lines to."""

    def __init__(self):
        self.folder = Path(tempfile.mkdtemp(prefix="vae-cells-"))
        self.read = dict.fromkeys(STREAMS, 0)  # bytes of each file already shown

    def capture(self) -> None:
        """In the actor: its stdout and stderr go to the folder's files from now on."""
        sys.stdout = _Lines(self.folder / "stdout")
        sys.stderr = _Lines(self.folder / "stderr")

    def show(self) -> None:
        """On the driver: print the whole lines written since the last call."""
        for name in STREAMS:
            path = self.folder / name
            if not path.exists():
                continue
            with path.open("rb") as f:
                f.seek(self.read[name])
                data = f.read()
            end = data.rfind(b"\n") + 1
            if end:
                self.read[name] += end
                out = sys.stdout if name == "stdout" else sys.stderr
                out.write(data[:end].decode("utf-8", errors="replace"))
                out.flush()

    def close(self) -> None:
        self.show()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __getstate__(self) -> dict:  # the actor gets the folder, never the driver's offsets
        return {"folder": self.folder, "read": dict.fromkeys(STREAMS, 0)}
