"""All cells of a sweep in flight at once, sharing the cluster's trial slots.

    run_concurrently(args, cells, budget, resources, concurrent, old) -> failed cell names

Each cell stays its own Tune experiment and Optuna study (its own searcher, ASHA brackets,
callbacks and storage layout), driven by its own ``tuner.fit()`` in a Ray task of its own: Tune's
controller holds one searcher and one scheduler per experiment, so several experiments need
several controllers, and a task per controller is how Tune itself runs ``tune.run`` under Ray
Client (``ray.remote(num_cpus=0)(run)`` placed on the driver's node). The tasks ask for no CPU,
so the controllers never take a trial's slot; they run on the driver's node, where a local
storage path and the Optuna journal live, and die with the driver (a killed driver loses what
a killed sequential driver loses: nothing that ``--resume`` does not finish).

One ``Slots`` actor caps the trials alive across all cells at ``--max-concurrent`` (default:
what the cluster holds now). Each cell's searcher takes a slot before it asks Optuna for a
configuration and gives it back when the trial ends, so Tune never builds a backlog of pending
trials (whose configurations TPE would draw blind) and a cell's tail leaves its slots to the
others at once. A slot freed by a cell that has trials left to start stays that cell's, so
Tune reuses the trial's actor (no new worker process); a free slot goes to the waiting cell
that holds the fewest (sweeps.slots). A cell's winner evaluation starts as soon as its trials
end, in the cell's task, beside the other cells' trials.
"""

from __future__ import annotations

import os
import sys
import time

import ray
from ray.exceptions import RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from sweeps import node_data
from sweeps.cells import Budget, Cell
from sweeps.run_cell import run_one
from sweeps.slots import NAMESPACE, Slots, slots_name
from sweeps.status import progress
from sweeps.tune_glue import experiment_path

PROGRESS_EVERY_S = 60.0


@ray.remote(num_cpus=0, max_retries=0)
def _cell_task(args, cell: Cell, budget: Budget, resources: dict, concurrent: int, old: bool,
               slots: str, rank: int) -> None:  # fmt: skip
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    run_one(args, cell, budget, resources, concurrent, old, slots=slots, rank=rank, verbose=0)


def run_concurrently(
    args, cells: list[Cell], budget: Budget, resources: dict, concurrent: int, old: list[Cell]
) -> list[str]:
    """Every cell in its own task at once; returns the cells whose task failed (printed)."""
    name = slots_name(args.storage)
    # On the driver's node, whose loss ends the sweep anyway; owned by the driver, so the actor
    # of a killed driver died with it.
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    slots = Slots.options(
        name=name, namespace=NAMESPACE, get_if_exists=True, scheduling_strategy=here
    ).remote(concurrent, [experiment_path(args.storage, c) for c in cells])
    tasks = {
        _cell_task.options(name=cell.name, scheduling_strategy=here).remote(
            args, cell, budget, resources, concurrent, cell in old, name, rank
        ): cell
        for rank, cell in enumerate(cells)
    }
    print(f"== {len(cells)} cells in flight at once, {concurrent} trials at a time in all")
    failed, pending, shown = [], list(tasks), time.monotonic()
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=5.0)
            for ref in done:
                cell = tasks[ref]
                slots.forget.remote(experiment_path(args.storage, cell))
                try:
                    ray.get(ref)
                    print(f"== {cell.name}: done ({len(tasks) - len(pending)} of {len(tasks)})")
                except RayError as e:
                    why = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
                    print(f"error: cell {cell.name} failed: {why}", file=sys.stderr)
                    failed.append(cell.name)
            if pending and time.monotonic() - shown > PROGRESS_EVERY_S:
                print(progress_line(args, cells, ray.get(slots.in_use.remote())))
                node_data.start()  # nodes an autoscaler added since
                shown = time.monotonic()
    except KeyboardInterrupt:
        for ref in pending:  # Tune in each task saves its experiment and stops its trials
            ray.cancel(ref)
        ray.wait(pending, num_returns=len(pending), timeout=30)
        raise
    finally:
        ray.kill(slots)  # a later sweep on this storage in this process starts a fresh one
    return failed


def progress_line(args, cells: list[Cell], in_use: int) -> str:
    try:
        p = progress(args.storage, cells, args.study_storage)
    except Exception as e:  # noqa: BLE001 - a progress line is never worth the sweep
        return f"   (progress unavailable: {e})"
    done = int((p["state"] == "done").sum())
    ended = int(p[["completed", "pruned", "errored"]].to_numpy().sum())
    return (
        f"   {time.strftime('%H:%M:%S')} cells done {done}/{len(cells)}; trials ended {ended} "
        f"(completed {int(p['completed'].sum())}, pruned {int(p['pruned'].sum())}, errored "
        f"{int(p['errored'].sum())}); {in_use} running"
    )
