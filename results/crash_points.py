"""Named kill points at the write boundaries of a sweep's driver, for the crash-consistency test.

    crash_point(name)   # nothing, unless VAE_CRASH_AT="<name>:<n>": then SIGKILL at the n-th pass

A sweep writes one cell's records in this order, so that a SIGKILL of its driver at any instant
leaves a storage that ``--resume`` brings back to ``python -m results check``'s 0 differences,
losing at most the epochs of a trial since its last checkpoint, never a row or a trial:

1. ``cells/<cell>.json``, the cell's record (its target and fixed config), before anything else
   of the cell. Killed after it: ``--resume`` starts the cell afresh from its record.
2. The Optuna trial is asked (RUNNING), then tied to its Tune trial (user attributes
   ``tune_trial_id``, ``tune_experiment`` relative to the storage). Killed before Tune saved
   the trial: ``--resume`` adopts the orphan (same parameters) for its next Tune trial, or tells
   it FAIL (``abandoned``) once the cell has its target and no trial could adopt it.
3. Tune's experiment state naming the new trial, saved and synced before the trial starts
   (sweeps.engine.tune_record.SavesNewTrials): no trial reports, tells Optuna or writes a row before
   Tune's saved record knows it.
4. Each epoch: the trial's checkpoint (worker side, atomic renames), Tune's state every
   ``num_to_keep`` checkpoints of a trial, the intermediate value in Optuna.
5. A trial's end: Optuna told, then its ``trials`` part, then its ``curves`` part (Tune calls
   the searcher, then the callbacks), then Tune's state. Killed in between: Tune's older
   record resumes the trial from its newest checkpoint (sweeps.engine.trial.TrainTrial.restore falls
   back to it when the recorded one was rotated away), which ends at once with the same value;
   the searcher's second tell is skipped and the row is written again, the same.
6. A winner's re-trainings with other seeds (``ray/<cell>/seeds-<winner>``, the same order,
   no Optuna), its ``evaluations`` parts one per seed, then its sample grids: ``--resume``
   does what has no record yet.

Every file is written whole or not at all (a temporary name, then a rename or an object put),
Tune's too: results.whole_files is the filesystem it copies its files to a local storage through.
What a kill leaves half done, ``--resume`` repairs before it continues (results.check.repair:
rows and curves rebuilt from Tune's record and the checkpoint;
sweeps.engine.tune_record.close_orphans: Optuna trials no Tune trial owns).

A kill point SIGKILLs the process that passes it: the driver for a sweep of one cell or with
``--cells sequential``; with cells in flight, the controller actor running the cell.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections import Counter

ENV = "VAE_CRASH_AT"
POINTS: dict[str, str] = {
    "cell_record": "cells/<cell>.json written (before anything else of the cell)",
    "study_asked": "an Optuna trial asked for a new Tune trial (RUNNING, not yet tied to it)",
    "study_tied": "the Optuna trial tied to its Tune trial id (user attributes)",
    "tune_state": "Tune's experiment state naming the new trials, saved before they start",
    "tune_file_half": (
        "a file Tune restores from (experiment or searcher state) written under its temporary "
        "name, not yet renamed over the last whole one (results.whole_files)"
    ),
    "study_report": "an epoch's intermediate value reported to Optuna",
    "study_told": "a trial's end told to Optuna (COMPLETE, PRUNED or FAIL)",
    "trials_part": "a trial's row written (results/trials/<cell>/<trial>.parquet)",
    "curves_part": "a trial's learning curve written (results/curves/...)",
    "evaluations_part": "one test evaluation written (results/evaluations/...)",
    "samples": "the winner's sample grids written (samples/<cell>/<trial>.npz)",
    "orphans_closed": "Optuna trials no Tune trial owns told FAIL at the cell's end",
}
"""Every kill point, by name: what was just written when it fires."""

_passes: Counter = Counter()
_lock = threading.Lock()


def target() -> tuple[str, int] | None:
    """The kill point and pass that VAE_CRASH_AT names, or None; a name that is not a kill
    point, or a pass that is not a positive integer, is a ValueError naming the choices."""
    spec = os.environ.get(ENV, "").strip()
    if not spec:
        return None
    name, _, n = spec.partition(":")
    if name not in POINTS:
        raise ValueError(f"{ENV}={spec!r}: no kill point {name!r}; kill points: {sorted(POINTS)}")
    try:
        count = int(n or 1)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(f"{ENV}={spec!r}: the pass after ':' must be a positive integer")
    return name, count


def crash_point(name: str) -> None:
    """SIGKILL this process if VAE_CRASH_AT names this point and this is its n-th pass; a line
    ``crash point <name>:<n>`` goes to stderr first. Nothing otherwise."""
    if name not in POINTS:
        raise ValueError(f"crash_point({name!r}) is not registered in results.crash_points.POINTS")
    wanted = target()
    if wanted is None or wanted[0] != name:
        return
    with _lock:
        _passes[name] += 1
        if _passes[name] != wanted[1]:
            return
        sys.stdout.flush()
        sys.stderr.write(f"crash point {name}:{wanted[1]}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
