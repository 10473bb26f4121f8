"""What the sweep's driver prints while it runs, and what Ray and Tune are allowed to print.

    quiet(verbose)                      Ray's, Tune's and Optuna's chatter off (unless --verbose)
    Progress(settings, cells, at_once)  a background thread: one line per cell every N seconds
    cell_states(storage, cells, ...)    what a progress line shows, read from the storage alone

The lines come from the storage alone (sweeps.engine.status: the Parquet rows, Tune's records,
the Optuna study), never from a live trial: the same reading serves cells run by the driver
(``--cells sequential``, one cell) and cells in flight in the CellControllers actor. Plain
lines, no colour codes, none over WIDTH characters: printed every minute to a log file or a pipe
(PROGRESS_SECONDS), redrawn in place every 10 s in a terminal by rich's live view
(TERMINAL_SECONDS; $VAE_PROGRESS_SECONDS sets either). The end-of-run summary:
sweeps.engine.summary.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from dataclasses import dataclass

import pandas as pd

from results import records, rows, store
from sweeps.cells import Cell
from sweeps.engine.status import cell_progress

WIDTH = 150
"""The longest line the console prints (a path or a command may still be longer)."""
PROGRESS_SECONDS = 60.0
TERMINAL_SECONDS = 10.0
"""How often the storage is read for the progress lines: printed every minute to a log file or a
pipe, redrawn in place every 10 s in a terminal ($VAE_PROGRESS_SECONDS sets both)."""
NAME_WIDTH = 48  # a cell's name in its progress line; a longer one is cut in its middle
NOISY_LOGGERS = ("ray", "ray.tune", "ray.train", "ray.air")
"""Ray's loggers that print at INFO on the driver: "Checkpoint successfully created at: ..."
(ray.train._internal.storage), "Wrote the latest version of all result files" (ray.tune.tune),
"Started a local Ray instance" (ray._private.worker). WARNING and above still show."""


TOKEN_LOGGER = "ray._private.authentication.authentication_token_setup"


def _not_token_notice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Token authentication is enabled")


STATE_LOGGER = "ray.tune.execution.experiment_state"
SAVING = "Saving experiment state to storage at '"


def _state_copy_in_one_line(record: logging.LogRecord) -> bool:
    """Tune's ERROR, with a traceback, when its background copy of an experiment's state folder
    to the storage fails (a file in it was being replaced: FileNotFoundError), as one warning
    line: the state is copied whole again at Tune's next save, and --verbose shows Tune's own."""
    message = record.getMessage()
    if message.startswith(SAVING):
        cell = message[len(SAVING):].split("'", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        why = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else "error"
        record.msg = (f"warning: {cell}: Tune's state not copied to the storage this time "
                      f"({why}); its next save copies it")
        record.args, record.exc_info, record.exc_text = (), None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
    return True


def quiet(verbose: bool) -> None:
    """Ray's, Tune's and Optuna's INFO lines off in this process, unless ``verbose``.

    Tune's reporter prints its "Configuration for experiment" box and TensorBoard hint at every
    verbosity of its new output engine, even 0 (ray/tune/experimental/output.py); its old engine
    prints nothing at verbosity 0, so it is chosen here (RAY_AIR_NEW_OUTPUT=0) unless the
    environment already says. Their logs are still written: Ray's under its session folder,
    Tune's under <storage>/ray/<cell>/."""
    if verbose:
        return
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # Ray's 245-character notice that a local instance uses its token (docs/monitoring.md says
    # so); its warning that a cluster has no token still shows
    logging.getLogger(TOKEN_LOGGER).addFilter(_not_token_notice)  # once: a filter is a set
    logging.getLogger(STATE_LOGGER).addFilter(_state_copy_in_one_line)
    import optuna  # here: the driver's import of this module stays light

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created", "Trial 3 ..."


def tune_verbosity(verbose: bool) -> int:
    """Tune's ``verbose`` for every Tuner of the sweep: 1 (its tables) with --verbose, else 0."""
    return 1 if verbose else 0


def progress_seconds(default: float = PROGRESS_SECONDS) -> float:
    """Seconds between two progress readings: $VAE_PROGRESS_SECONDS, else ``default``."""
    value = os.environ.get("VAE_PROGRESS_SECONDS", "")
    try:
        return max(0.1, float(value)) if value else default
    except ValueError:
        return default


def live_view():
    """Where stdout is a terminal: rich's live view, started (the progress lines in place,
    redrawn at each reading; what else is printed meanwhile goes above it). None elsewhere (a
    log file, a pipe, CI): plain lines."""
    if not sys.stdout.isatty():
        return None
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    live = Live(Text("-- progress: the first reading comes in a few seconds"), console=Console(),
                refresh_per_second=1, transient=False, vertical_overflow="visible")  # fmt: skip
    live.start()
    return live


@dataclass(frozen=True)
class CellState:
    """One cell's progress line: its trials against its target, its best validation loss, the
    time since its first trial started, and what its search has left."""

    name: str
    state: str  # not started, in progress, done (sweeps.engine.status)
    completed: int
    pruned: int
    errored: int
    running: int
    target: int | None  # None: no cell record yet
    best: float  # NaN: no completed trial yet
    elapsed_s: float | None  # None: no trial started
    left_epochs: float | None  # epochs its search has left to train (eta)
    epoch_s: float | None  # measured seconds an epoch, start-up included; None: no epoch yet


def left_epochs(target: int, ended: list[int], running: list[int], max_epochs: int) -> float:
    """Epochs a cell's search has left: each trial not started trains as many epochs as its
    ended trials did on average (ASHA stops most early; max_epochs before any has ended), and a
    running trial at epoch e trains that many less, at least one more unless at max_epochs."""
    per_trial = sum(ended) / len(ended) if ended else float(max_epochs)
    waiting = max(0, target - len(ended) - len(running))
    going = sum(max(per_trial - e, 1.0 if e < max_epochs else 0.0) for e in running)
    return waiting * per_trial + going


def eta_seconds(left: float | None, epoch_s: float | None, at_once: int) -> float | None:
    """Seconds until ``left`` epochs are trained, ``at_once`` trials at a time, ``epoch_s``
    seconds an epoch; None when no epoch has been measured yet."""
    if left is None or epoch_s is None:
        return None
    return left * epoch_s / max(1, at_once)


def duration(seconds: float | None) -> str:
    """12s, 4m05s, 2h03m, 3d04h; "-" when unknown."""
    if seconds is None or pd.isna(seconds):
        return "-"
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def fit(line: str, width: int = WIDTH) -> str:
    """``line`` cut to ``width`` characters, "..." marking the cut."""
    return line if len(line) <= width else line[: width - 3] + "..."


def cell_line(c: CellState, at_once: int, name_width: int = NAME_WIDTH) -> str:
    """One cell's progress line (at most WIDTH characters), its name padded to ``name_width``
    (a longer name is cut in its middle)."""
    target = "?" if c.target is None else c.target
    ended = c.completed + c.pruned + c.errored
    best = "-" if pd.isna(c.best) else f"{c.best:.2f}"
    if c.state == "done":
        eta = "done"
    elif c.state == "not started":
        eta = "waiting"
    else:
        seconds = eta_seconds(c.left_epochs, c.epoch_s, c.running or at_once)
        eta = "ETA after the first epoch" if seconds is None else f"ETA {duration(seconds)}"
    name = c.name if len(c.name) <= NAME_WIDTH else c.name[:22] + "..." + c.name[-23:]
    return fit(
        f"   {name:<{name_width}} {ended:>3}/{target} trials ({c.completed} completed, "
        f"{c.pruned} pruned, {c.errored} errored), {c.running} running; best {best}; "
        f"{duration(c.elapsed_s)}; {eta}"
    )


def sweep_line(states: list[CellState], elapsed_s: float, at_once: int) -> str:
    """The line above the cells' lines: cells by state, the sweep's elapsed time and its ETA
    (the cells' epochs left at their mean measured epoch time, ``at_once`` trials at a time)."""
    done = sum(c.state == "done" for c in states)
    waiting = sum(c.state == "not started" for c in states)
    going = [c for c in states if c.state != "done"]
    timed = [c for c in states if c.epoch_s is not None]
    if not going:
        eta = "ETA: the cells' trials have ended"
    elif not timed or any(c.left_epochs is None for c in going):
        eta = "ETA: after the first epoch"
    else:
        epoch_s = sum(c.epoch_s for c in timed) / len(timed)
        seconds = eta_seconds(sum(c.left_epochs for c in going), epoch_s, at_once)
        untimed = sum(c.epoch_s is None for c in going)
        guess = f"; {untimed} untimed cells at the mean epoch" if untimed else ""
        eta = f"ETA {duration(seconds)} (search trials only, {at_once} at a time{guess})"
    return fit(
        f"-- {time.strftime('%H:%M:%S')} {duration(elapsed_s)} elapsed; cells: {done} done, "
        f"{len(states) - done - waiting} in progress, {waiting} not started; {eta}"
    )


def progress_lines(states: list[CellState], elapsed_s: float, at_once: int) -> list[str]:
    """The sweep's line, then one line per cell in progress (done and waiting cells are counted
    in the sweep's line: a paper of 98 cells prints the ones that move)."""
    width = min(NAME_WIDTH, max((len(c.name) for c in states), default=0))
    moving = [cell_line(c, at_once, width) for c in states if c.state == "in progress"]
    return [sweep_line(states, elapsed_s, at_once), *moving]


def cell_state(storage: str, cell: Cell, trials: pd.DataFrame, study_url: str | None,
               now: float) -> CellState:  # fmt: skip
    """One cell's CellState from its storage: status.cell_progress's counts, Tune's record of its
    search trials (their epochs, times and start) and its cell record (target, max epochs)."""
    p = cell_progress(storage, cell, trials, study_url)
    tune = records.tune_trials(storage, cell.name, seeds=False) or {}
    record = store.cell_record(storage, cell.name) or {}
    max_epochs = int((record.get("base_config") or {}).get("train/max_epochs", 1))
    ended = [int(t.last_result.get("epoch", 0)) for t in tune.values() if t.ended]
    running = [int(t.last_result.get("epoch", 0)) for t in tune.values() if t.status == "RUNNING"]
    seconds = sum(float(t.last_result.get("time_total_s", 0.0)) for t in tune.values())
    epochs = sum(ended) + sum(running)
    starts = [t.run_metadata.get("start_time") for t in tune.values()]
    starts = [s for s in starts if isinstance(s, int | float)]
    target = p["target"] if isinstance(p["target"], int) else None
    return CellState(
        name=cell.name, state=p["state"], completed=p["completed"], pruned=p["pruned"],
        errored=p["errored"], running=max(p["running"], len(running)), target=target,
        best=float(p["best_val_loss"]), elapsed_s=now - min(starts) if starts else None,
        left_epochs=None if target is None else left_epochs(target, ended, running, max_epochs),
        epoch_s=seconds / epochs if epochs else None,
    )  # fmt: skip


def cell_states(storage: str, cells: list[Cell], study_url: str | None = None) -> list[CellState]:
    """Every cell's CellState, from the storage alone (read-only)."""
    trials = store.load(storage, "trials")
    now = time.time()
    states = []
    for cell in cells:
        mine = trials[trials["sweep"] == cell.name] if not trials.empty else trials
        mine = mine[mine["role"] != rows.SEED] if "role" in mine else mine
        states.append(cell_state(storage, cell, mine, study_url, now))
    return states


class Progress:
    """The progress lines every N seconds in a background thread of the driver, from ``start``
    to ``stop`` (or a ``with`` block). An exception while reading or printing is one warning
    line on stderr, and the lines stop; the sweep goes on."""

    def __init__(self, storage: str, cells: list[Cell], study_url: str | None, at_once: int,
                 every_s: float | None = None, out=None) -> None:  # fmt: skip
        self.storage, self.cells, self.study_url, self.at_once = storage, cells, study_url, at_once
        self.every_s = every_s
        self.out = out  # None: sys.stdout when printing (a test's capture replaces it)
        self.live = None  # in a terminal: rich's live view (live_view)
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sweep-progress", daemon=True)

    def __enter__(self) -> Progress:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self.started = time.monotonic()
        self.live = live_view() if self.out is None else None
        if self.every_s is None:
            self.every_s = progress_seconds(TERMINAL_SECONDS if self.live else PROGRESS_SECONDS)
        self._thread.start()

    def stop(self) -> None:
        """End the thread; waits for a print in progress (a few seconds at most). A live view
        stays on the screen as it last was, the lines printed after it below."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10.0)
        if self.live is not None:
            self.live.stop()

    def show(self) -> None:
        """Print the progress lines once (in a terminal: show them in the live view)."""
        states = cell_states(self.storage, self.cells, self.study_url)
        lines = progress_lines(states, time.monotonic() - self.started, self.at_once)
        if self.live is not None:
            from rich.text import Text

            self.live.update(Text("\n".join(lines)), refresh=True)
        else:
            print("\n".join(lines), file=self.out or sys.stdout, flush=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.show()
            except Exception as e:  # noqa: BLE001 - a progress line is never worth the sweep
                why = str(e).strip().splitlines()[0] if str(e).strip() else ""
                print(fit(f"warning: progress lines stopped: {type(e).__name__}: {why}"),
                      file=sys.stderr, flush=True)  # fmt: skip
                return
