"""Progress on stderr for a person at `python -m training`: one line per epoch with its wall time
and an ETA, and a meter for the long test evaluation.

    on_epoch = EpochLines(cfg.train.max_epochs)                              # on_epoch(metrics)
    with meter("test log-likelihood, k=1000") as progress:                  # progress(done, total)
        estimate_log_likelihood(model, x, k, progress=progress)

Only the command line uses them: the trainer and the evaluation take them as optional callables
and do nothing without one, so a sweep's trials (whose output the Ray driver would relay) stay
quiet. Where the stream is a terminal the meter is a tqdm bar (a carriage-return line without
tqdm); otherwise a plain line every ``interval`` seconds or every tenth of the work, whichever
comes first.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

Clock = Callable[[], float]


def duration(seconds: float) -> str:
    """12.3 s, 9 min 38 s, 2 h 05 min."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    s = round(seconds)
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def eta(elapsed: float, done: int, total: int) -> float:
    """The seconds the rest takes at the rate so far."""
    return elapsed / done * (total - done) if done > 0 else float("nan")


class EpochLines:
    """``on_epoch(metrics)``: one line per epoch on ``stream``, e.g.

        epoch 3/50: train_loss 95.123, val_loss 96.456; 12.3 s, eta 9 min 38 s for 47 more

    The epoch's wall time is the time since the previous line (since construction for the first):
    training, validation and the checkpoint's write. The ETA is the mean epoch of this process
    (from ``resumed_from`` on) times the epochs left to train/max_epochs (early stopping may end
    sooner)."""

    def __init__(
        self, max_epochs: int, stream: TextIO | None = None, clock: Clock = time.perf_counter
    ):
        self.max_epochs, self.stream, self.clock = max_epochs, stream, clock
        self.start = self.last = clock()

    def __call__(self, metrics: dict) -> None:
        now, epoch = self.clock(), metrics["epoch"]
        took, self.last = now - self.last, now
        head = (
            f"epoch {epoch}/{self.max_epochs}: train_loss {metrics['train_loss']:.3f}, "
            f"val_loss {metrics['val_loss']:.3f}; {duration(took)}"
        )
        if metrics.get("finished"):
            tail = f", done ({metrics.get('stop_reason') or 'finished'})"
        else:
            left = self.max_epochs - epoch
            mean = (now - self.start) / max(1, epoch - metrics.get("resumed_from", 0))
            tail = f", eta {duration(mean * left)} for {left} more"
        print(head + tail, file=self.stream or sys.stderr, flush=True)


class Meter:
    """``progress(done, total)`` after each part of the work; ``close()`` (or leave its ``with``
    block) when the work ends or fails."""

    def __call__(self, done: int, total: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Meter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Lines(Meter):
    """A meter for a log file or a pipe: ``label: 400/10000 (4%), 1 min 02 s, eta 24 min 50 s``
    every ``interval`` seconds or every tenth of ``total``, whichever comes first, and at 100%."""

    def __init__(
        self, label: str, stream: TextIO, interval: float = 10.0, clock: Clock = time.monotonic
    ):
        self.label, self.stream, self.interval, self.clock = label, stream, interval, clock
        self.start = self.last_time = clock()
        self.last_tenth = 0

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        tenth = done * 10 // max(1, total)
        if done < total and tenth <= self.last_tenth and now - self.last_time < self.interval:
            return
        self.last_tenth, self.last_time = tenth, now
        self.stream.write(self.line(done, total, now) + "\n")
        self.stream.flush()

    def line(self, done: int, total: int, now: float) -> str:
        elapsed = now - self.start
        rest = f", eta {duration(eta(elapsed, done, total))}" if 0 < done < total else ""
        share = f"{done}/{total} ({done * 100 // max(1, total)}%)"
        return f"{self.label}: {share}, {duration(elapsed)}{rest}"


class Carriage(Lines):
    """A terminal's meter without tqdm: the same line rewritten in place (``\\r``) at most every
    ``interval`` seconds, and a newline on close."""

    def __init__(
        self, label: str, stream: TextIO, interval: float = 0.5, clock: Clock = time.monotonic
    ):
        super().__init__(label, stream, interval, clock)
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        if done < total and self.shown and now - self.last_time < self.interval:
            return
        self.last_time, self.shown = now, True
        self.stream.write("\r" + self.line(done, total, now) + "\x1b[K")  # clear the old tail
        self.stream.flush()

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


class Bar(Meter):
    """A terminal's meter: a tqdm bar (it shows the rate and the ETA)."""

    def __init__(self, label: str, stream: TextIO):
        from tqdm import tqdm

        self.bar, self.done = tqdm(desc=label, total=None, file=stream, unit="img"), 0

    def __call__(self, done: int, total: int) -> None:
        if self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.done)
        self.done = done

    def close(self) -> None:
        self.bar.close()


def meter(label: str, stream: TextIO | None = None) -> Meter:
    """The meter that suits ``stream`` (stderr by default): Bar on a terminal where tqdm is
    installed, Carriage on one where it is not, Lines otherwise."""
    stream = stream or sys.stderr
    if not _isatty(stream):
        return Lines(label, stream)
    return Bar(label, stream) if _has_tqdm() else Carriage(label, stream)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _has_tqdm() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True
