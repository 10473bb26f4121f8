"""All cells of a sweep in flight at once, sharing the cluster's trial slots.

    run_concurrently(settings, cells, budget, resources, concurrent, old) -> failed cell names

Each cell stays its own Tune experiment and Optuna study (its own searcher, ASHA brackets,
callbacks and storage layout), driven by its own ``tuner.fit()``: Tune's controller holds one
searcher and one scheduler per experiment, so several experiments need several controllers.
They run as threads of a ``CellControllers`` actor, one thread per cell (a threaded actor,
``max_concurrency`` = its cells; CELLS_PER_PROCESS cells to an actor), asking for no CPU and
placed on the driver's node, where a local storage path and the Optuna journal live. Not a
process per cell: each controller process imports torch, Tune and Optuna (3.5 s of CPU and
about 1 GB of resident memory here), so the 98 cells of the VLAE paper's sweep would have
started 98 of them on the head node.
Tune's loop runs in a thread as it does under Ray Client (it installs its SIGINT handler only
in the main thread). The actors belong to the driver and die with it; Ctrl-C kills them, as a
killed driver would: what Tune and Optuna last saved is what ``--resume`` finishes (the resume
tests kill a driver with cells in flight).

One ``Slots`` actor caps the trials alive across all cells at ``--max-concurrent`` (default: what
the cluster holds now). Each cell's searcher, wrapped in sweeps.engine.shared_slots.SharedSlots,
takes a slot before it asks Optuna for a configuration and gives it back when the trial ends, so
Tune never builds a backlog of pending trials (whose configurations TPE would draw blind) and a
cell's tail leaves its slots to the others at once. A slot freed by a cell that has trials left to
start stays that cell's, so Tune reuses the trial's actor (no new worker process); a free slot goes
to the waiting cell that holds the fewest (sweeps.engine.slots). A cell's winner evaluation starts
as soon as its trials end, in the cell's thread, beside the other cells' trials.
"""

from __future__ import annotations

import os
import sys
import time

import ray
from ray.exceptions import RayError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from sweeps.cells import Budget, Cell
from sweeps.engine import node_data
from sweeps.engine.cell import run_cell
from sweeps.engine.console import quiet
from sweeps.engine.relay import Relay
from sweeps.engine.settings import Settings
from sweeps.engine.slots import NAMESPACE, Slots, slots_name
from sweeps.engine.tuner import experiment_path

NEW_NODES_EVERY_S = 60.0  # the progress lines: sweeps.engine.console
CELLS_PER_PROCESS = 32
"""Cells whose Tune loops share one controller process. 9 cells' loops used about 12% of a
core here (benchmarks/utilisation.py); a Python process runs one thread at a time, so a large
sweep gets several processes (the VLAE paper's 98 cells: 4), not one per cell."""


@ray.remote(num_cpus=0, max_restarts=0)
class CellControllers:
    """The sweep's cells, each run (sweeps.engine.cell.run_cell) in a thread of this one actor."""

    def __init__(self, relay: Relay):
        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
        relay.capture()  # what the cells print reaches the driver's console (sweeps.engine.relay)

    def run(self, settings: Settings, cell: Cell, budget: Budget, resources: dict,
            concurrent: int, old: bool, slots: str, rank: int) -> None:  # fmt: skip
        quiet(settings.verbose)  # this process's Tuners and loggers (a caller's Ray forwards them)
        run_cell(settings, cell, budget, resources, concurrent, old, slots=slots, rank=rank,
                 verbose=0)  # fmt: skip


def run_concurrently(
    settings: Settings,
    cells: list[Cell],
    budget: Budget,
    resources: dict,
    concurrent: int,
    old: list[Cell],
    watch=None,
) -> list[str]:
    """Every cell in its own thread at once; returns the cells that failed (printed).
    ``watch``: the sweep's sweeps.engine.gpu_cap.Watch, told which cells are in progress."""
    name = slots_name(settings.storage)
    # On the driver's node, whose loss ends the sweep anyway; owned by the driver, so the actor
    # of a killed driver died with it.
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    slots = Slots.options(
        name=name, namespace=NAMESPACE, get_if_exists=True, scheduling_strategy=here
    ).remote(concurrent, [experiment_path(settings.storage, c) for c in cells])
    # CELLS_PER_PROCESS cells to a process: their Tune loops share one interpreter's lock.
    groups = [cells[i : i + CELLS_PER_PROCESS] for i in range(0, len(cells), CELLS_PER_PROCESS)]
    relay = Relay()
    controllers = [
        CellControllers.options(max_concurrency=len(g), scheduling_strategy=here).remote(relay)
        for g in groups
    ]
    tasks = {
        controllers[rank // CELLS_PER_PROCESS]
        .run.options(name=cell.name)
        .remote(settings, cell, budget, resources, concurrent, cell in old, name, rank): cell
        for rank, cell in enumerate(cells)
    }
    print(f"== {len(cells)} cells in flight at once, {concurrent} trials at a time in all")
    failed, pending, shown = [], list(tasks), time.monotonic()
    try:
        while pending:
            if watch is not None:
                watch.pending = {tasks[ref].name for ref in pending}
            done, pending = ray.wait(pending, num_returns=1, timeout=2.0)
            relay.show()
            for ref in done:
                cell = tasks[ref]
                slots.forget.remote(experiment_path(settings.storage, cell))
                try:
                    ray.get(ref)
                    print(f"== {cell.name}: done ({len(tasks) - len(pending)} of {len(tasks)})")
                except RayError as e:
                    if isinstance(e, RayTaskError):  # raised by our code: a bug, its traceback
                        print(str(e).strip(), file=sys.stderr)
                    why = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
                    print(f"error: cell {cell.name} failed: {why}", file=sys.stderr)
                    failed.append(cell.name)
            if pending and time.monotonic() - shown > NEW_NODES_EVERY_S:
                node_data.start()  # nodes an autoscaler added since
                shown = time.monotonic()
    finally:  # done, failed or Ctrl-C: their trials end with the controllers (a killed driver)
        for actor in controllers:
            ray.kill(actor)
        ray.kill(slots)  # a later sweep on this storage in this process starts a fresh one
        relay.close()
    return failed

