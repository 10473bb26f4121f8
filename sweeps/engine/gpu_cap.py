"""--max-gpu-hours H: a sweep starts no search trial once its GPU-hours spent, those its trials in
progress may still take and the next trial's would pass H; it stops, saved, when no cell of it
has a trial left running, and ``--resume`` with a higher cap (or none) goes on.

    arm(cell, Cap(...))           run_cell, in the process that runs the cell's Tune loop
    allows(cell, trial_id)        SharedSlots.suggest, before a configuration is given out
    Watch(storage, hours)         the driver's thread: capped and idle -> KeyboardInterrupt

The check sits where a configuration is given out: every cell's searcher is wrapped in
sweeps.engine.shared_slots.SharedSlots, with cells in flight or one at a time, new or restored by
``Tuner.restore``. A refused ``suggest`` returns None (Tune asks again), never Searcher.FINISHED:
Tune would save its search as finished and a --resume would never ask for more trials.

The arithmetic, read from the storage alone (GPU-hours: a trial's GPUs x its wall time):
  spent      the gpu_seconds of the trials and evaluations tables (results.selection.cost)
  committed  per trial no row records yet: its GPUs x (its time so far + its seconds per epoch
             (its own, else its cell's, else the estimate's assumed one) x the epochs it may
             still train, max_epochs - epoch, none once Tune ended it)
  next       the cell's GPUs per trial x its seconds per epoch x max_epochs (ASHA may keep it)
Trials get GPUs only from --gpus-per-trial (or a cluster's GPUs): with none the cap never binds.

How the driver learns it: a refusing cell with no trial of its own running writes a small file
(flag_dir, on the driver's node, where the cells' Tune loops run), and removes it when a trial
starts. The driver's Watch interrupts the main thread when every cell still in progress has a
fresh one: the same way out as Ctrl-C (every cell's state saved), with its own line and EXIT_CODE.
"""

from __future__ import annotations

import _thread
import hashlib
import json
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from results import records, store
from results.selection import cost
from sweeps.engine.cost import epoch_images
from sweeps.engine.estimate import REFERENCE_EPOCH

EXIT_CODE = 3
"""The sweep stopped at --max-gpu-hours (0 done, 1 failed, 2 refused, 130 interrupted)."""
REFRESH_S = 5.0
"""A refused cell reads the storage again at most this often (Tune asks it at every step)."""
FRESH_S = 4 * REFRESH_S  # a refusal file older than this is not a cell waiting any more


@dataclass(frozen=True)
class Cap:
    """What a cell's searcher checks: the cap, where the sweep's rows lie, its trials' GPUs,
    its max epochs and the estimate's assumed seconds per epoch (sweeps.engine.estimate)."""

    hours: float
    storage: str
    gpus: float
    max_epochs: int
    assumed_epoch_s: float


@dataclass(frozen=True)
class Reading:
    """GPU-hours: spent, committed to trials in progress, and the next trial's."""

    spent: float
    committed: float
    next: float

    def passes(self, hours: float) -> bool:
        return self.spent + self.committed + self.next > hours


def cap_for(hours: float | None, storage: str, dataset: str, base: dict,
            gpus: float, search_seeds: int = 1) -> Cap | None:  # fmt: skip
    """A cell's Cap (None without --max-gpu-hours): its seconds per epoch until one is measured
    are the estimate's assumed GPU epoch (REFERENCE_EPOCH) of its images, times its trials'
    training seeds (--search-seeds: a trial's epoch trains each)."""
    if hours is None:
        return None
    seconds, images, _ = REFERENCE_EPOCH
    epoch_s = seconds / images * epoch_images(dataset, base) * search_seeds
    return Cap(hours, storage, gpus, int(base["train/max_epochs"]), epoch_s)


def start_line(hours: float | None, gpus: float) -> str | None:
    """The sweep's line about its cap at the start, or None without one."""
    if hours is None:
        return None
    if gpus <= 0:
        return (f"note: --max-gpu-hours {hours:g} never binds: the trials hold no GPU "
                "(--gpus-per-trial 0, or a cluster without GPUs); it counts GPU-hours only")
    return (f"== at most {hours:g} GPU-hours (--max-gpu-hours): no trial starts that would "
            f"pass it, {gpus:g} GPU each")


def spent_hours(storage: str) -> float:
    """The GPU-hours the storage's trials and evaluations rows record."""
    trials, evals = store.load(storage, "trials"), store.load(storage, "evaluations")
    return cost(trials, evals, "gpu_seconds") or 0.0


def epoch_seconds(trials) -> float | None:
    """Seconds per epoch of Tune trials (their training time over their epochs), or None."""
    epochs = sum(int(t.last_result.get("epoch", 0)) for t in trials)
    seconds = sum(float(t.last_result.get("time_total_s", 0.0)) for t in trials)
    return seconds / epochs if epochs else None


def cell_trials(storage: str, cell: str) -> list:
    """A cell's Tune trials (its search and its winner's re-trainings), as Tune last saved them."""
    return list((records.tune_trials(storage, cell) or {}).values())


def committed_hours(storage: str, assumed_epoch_s: float, recorded: set[str]) -> float:
    """GPU-hours of the storage's trials that no row records yet (module docstring): what each
    has taken so far and, unless Tune ended it, what it may still take; ``recorded``: trial ids
    with a row (their GPU-hours are spent). A trial that has ended but whose row is not written
    yet counts whole: a cell asking in that instant sees it."""
    total = 0.0
    for cell in store.sweeps(storage):
        record = store.cell_record(storage, cell) or {}
        gpus = float((record.get("resources") or {}).get("gpu", 0.0))
        top = int((record.get("base_config") or {}).get("train/max_epochs", 0))
        trials = cell_trials(storage, cell)
        mean = epoch_seconds(trials) or assumed_epoch_s
        for t in trials:
            if t.trial_id in recorded:
                continue
            epoch = int(t.last_result.get("epoch", 0))
            own = epoch_seconds([t]) or mean
            so_far = float(t.last_result.get("time_total_s", 0.0))
            left = 0 if t.ended else max(0, top - epoch)
            total += gpus * (so_far + own * left) / 3600
    return total


def reading(cap: Cap, cell: str, given: dict[str, float]) -> Reading:
    """The storage's Reading for ``cell``'s next trial; ``given``: GPU-hours of trials this
    process gave out that Tune has not recorded yet, by trial id."""
    rows = store.load(cap.storage, "trials")
    recorded = set(rows["trial_id"]) if not rows.empty else set()
    known = recorded | {t.trial_id for c in store.sweeps(cap.storage)
                        for t in cell_trials(cap.storage, c)}  # fmt: skip
    committed = committed_hours(cap.storage, cap.assumed_epoch_s, recorded)
    committed += sum(h for t, h in given.items() if t not in known)
    epoch_s = epoch_seconds(cell_trials(cap.storage, cell)) or cap.assumed_epoch_s
    return Reading(spent_hours(cap.storage), committed, cap.gpus * epoch_s * cap.max_epochs / 3600)


def flag_dir(storage: str) -> Path:
    """Where capped cells leave their files: this machine's temporary folder, per storage."""
    name = hashlib.sha1(storage.encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"vae-sweeps-cap-{name}"


def _flag(storage: str, cell: str) -> Path:
    return flag_dir(storage) / (hashlib.sha1(cell.encode()).hexdigest()[:16] + ".json")


@dataclass
class _Armed:
    cap: Cap
    last: Reading | None = None
    read_at: float = 0.0


_armed: dict[str, _Armed] = {}
"""Cell name -> its cap in this process (cells in flight run in threads of one process)."""
_given: dict[str, dict[str, float]] = {}
"""Storage -> trial id -> GPU-hours of each trial this process's cells started there (committed
until Tune's records hold it: reading). By storage: a process that ran a sweep elsewhere before
(a notebook, the tests) counts none of that one's trials here."""
_given_by: dict[tuple[str, str], set[str]] = {}
"""(storage, cell) -> the trials the cell started since it was armed (started): idle once each
has its row."""
_lock = threading.Lock()


def arm(cell: str, cap: Cap | None) -> None:
    """The cap ``cell``'s searcher checks in this process from now on (None: no cap)."""
    with _lock:
        if cap is None:
            _armed.pop(cell, None)
        else:
            _armed[cell] = _Armed(cap)
            _given_by[cap.storage, cell] = set()  # this run's trials from now on
            _flag(cap.storage, cell).unlink(missing_ok=True)


def allows(cell: str, trial_id: str, running: int) -> bool:
    """Whether ``cell`` may start trial ``trial_id`` under its cap (True with none); refused
    with ``running`` == 0 trials of its own, it leaves its file for the driver (Watch)."""
    armed = _armed.get(cell)
    if armed is None:
        return True
    now, flag = time.monotonic(), _flag(armed.cap.storage, cell)
    # read again for a trial given out, for a cell whose last trial has just ended, and for a
    # cell refused REFRESH_S ago
    fresh = armed.last is None or not armed.last.passes(armed.cap.hours) or (
        running == 0 and not flag.exists()) or now - armed.read_at > REFRESH_S  # fmt: skip
    if fresh:
        given = _given.get(armed.cap.storage, {})
        armed.last, armed.read_at = reading(armed.cap, cell, given), now
    if not armed.last.passes(armed.cap.hours):
        flag.unlink(missing_ok=True)
        return True
    if running > 0 or unwritten(armed.cap.storage, cell):  # a trial of its own not done yet
        flag.unlink(missing_ok=True)
    elif fresh or not flag.exists():
        flag.parent.mkdir(parents=True, exist_ok=True)
        tmp = flag.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(asdict(armed.last)))
        tmp.replace(flag)
    return False


def started(cell: str, trial_id: str) -> None:
    """``cell`` gave trial ``trial_id`` its configuration (SharedSlots.suggest, once the trial
    also had its slot): its cost is committed from now on (reading), and the cell is not idle
    until the trial's row is written (unwritten). A trial allowed that got no slot is not: it
    never starts, and counted it would refuse every cell."""
    armed = _armed.get(cell)
    if armed is not None:
        with _lock:
            hours = armed.last.next if armed.last is not None else 0.0
            _given.setdefault(armed.cap.storage, {})[trial_id] = hours
            _given_by.setdefault((armed.cap.storage, cell), set()).add(trial_id)


def unwritten(storage: str, cell: str) -> set[str]:
    """The trials ``cell`` gave out in this process whose row is not written yet: Tune tells the
    searcher a trial ended before its callbacks write the row, and a stop in between would kill
    that write (the row would wait for --resume's repair)."""
    given = _given_by.get((storage, cell), set())
    if not given:
        return set()
    rows = store.load(storage, "trials", sweep=cell)
    return given - (set(rows["trial_id"]) if not rows.empty else set())


def capped_idle(storage: str, cell: str) -> Reading | None:
    """The Reading ``cell`` left when refused with no trial running, if fresh; else None."""
    path = _flag(storage, cell)
    try:
        if time.time() - path.stat().st_mtime > FRESH_S:
            return None
        return Reading(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


class Watch:
    """The driver's thread (``with Watch(...)``): every second, when every cell in ``pending``
    is capped and idle (capped_idle), it keeps their Reading in ``stopped`` and raises
    KeyboardInterrupt in the main thread (_thread.interrupt_main)."""

    def __init__(self, storage: str, hours: float | None) -> None:
        self.storage, self.hours = storage, hours
        self.pending: set[str] = set()  # cells in progress: the driver's loops keep it
        self.stopped: Reading | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gpu-cap", daemon=True)

    def __enter__(self) -> Watch:
        if self.hours is not None:
            for old in flag_dir(self.storage).glob("*.json"):  # a previous driver's
                old.unlink(missing_ok=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()  # an interrupt it raised while it ends is raised inside the with block
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            cells = set(self.pending)
            found = [capped_idle(self.storage, c) for c in cells]
            if cells and all(found):
                self.stopped = max(found, key=lambda r: r.spent + r.committed + r.next)
                _thread.interrupt_main()
                return

    def line(self) -> str:
        r = self.stopped
        return (f"stopped: the next trial would pass --max-gpu-hours {self.hours:g} (spent "
                f"{r.spent:.3g} GPU-h, {r.committed:.3g} committed, {r.next:.3g} the next "
                f"trial)\n   every cell's state is saved under {self.storage}\n   the same "
                "command with --resume and a higher --max-gpu-hours (or none) continues it")

