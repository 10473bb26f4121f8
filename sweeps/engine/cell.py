"""One cell of a sweep from start to its winner's evaluation, as the driver or a cell's thread
runs it; once every cell has ended, the winners under a table's second selection rule.

    run_cell(settings, cell, budget, resources, concurrent, old, slots=None, rank=0, verbose=1)
    evaluate_capped_winners(settings, cells, budget, resources, concurrent, tables)

Sequentially (``--cells sequential``) the sweep's driver calls run_cell for each cell in turn; by
default each cell runs it in a thread of the sweep's CellControllers actor
(sweeps.engine.in_flight), all cells at once. The driver calls evaluate_capped_winners after.
"""

from __future__ import annotations

import dataclasses
import sys

from ray.exceptions import RayError
from ray.tune.error import TuneError

from results import check, records, store
from results.crash_points import crash_point
from results.selection import capped_winners, winners
from sweeps.cells import Budget, Cell
from sweeps.engine import gpu_cap, preflight, spaces, warm_start
from sweeps.engine.provenance import provenance
from sweeps.engine.seeds import retrain_winner
from sweeps.engine.settings import Settings
from sweeps.engine.tune_record import Location, close_orphans, locate
from sweeps.engine.tuner import experiment_path, tune_cell
from sweeps.engine.winners import evaluate_winner


def run_cell(
    settings: Settings,
    cell: Cell,
    budget: Budget,
    resources: dict,
    concurrent: int,
    old: bool,
    slots: str | None = None,
    rank: int = 0,
    verbose: int = 1,
) -> None:
    """Run (start, continue or extend) one cell, train its winner again with the budget's other
    training seeds (sweeps.engine.seeds), then evaluate the winner and those on the test set.

    ``slots`` names the sweep's shared trial cap (sweeps.engine.slots.Slots) when cells run at
    once, ``rank`` is this cell's priority for a free slot (lower first), ``verbose`` Tune's."""
    storage, study_url = settings.storage, settings.study_storage
    # where pickled Tune objects of this cell write from now on (sweeps.engine.tune_record)
    locate(cell.name, Location(storage, study_url, experiment_path(storage, cell), slots))
    record = store.cell_record(storage, cell.name)
    if old and settings.resume:
        for line in check.repair(storage, check.read_sweep(storage, cell.name, study_url)):
            print(f"   {line}")
    if settings.sampler == "grid" and not (settings.trials or settings.add_trials):
        budget = dataclasses.replace(budget, trials=preflight.grid_trials(cell, budget))
    before = (record or {}).get("trials", budget.trials) if old else 0  # the cell's target so far
    target = before if old and settings.resume else before + budget.trials
    base = cell.base_config(budget)
    epochs = base["train/max_epochs"]
    unit = f" of {base['train/epoch_batches']} batches" if base.get("train/epoch_batches") else ""
    study = records.study_trials(storage, cell.name, study_url) or []
    mode = "resumed" if old and settings.resume else f"+{budget.trials} added" if old else "new"
    print(
        f"== {cell.name}: {budget.trials if not settings.resume else target} trials ({mode}; "
        f"target {target}), up to {epochs} epochs{unit}, {concurrent} at a time"
    )
    sources = cell.key_sources(budget, settings.fixed)
    dists = spaces.current(cell, budget)
    kept = spaces.history(record if old else None, study, dists)  # a new version if it changed
    if old and len(kept) > max(1, len(spaces.kept(record))):
        print(f"   [{cell.name}] its search space changed: version {len(kept)} from Optuna "
              f"trial {kept[-1]['from_trial']} ({'; '.join(spaces.changed(kept))})")  # fmt: skip
    warm, whence = warm_for(settings, cell, old, record, dists)
    for line in warm.lines() if warm else []:
        print(f"   [{cell.name}] {line}")
    gpus = float(resources.get("gpu", 0.0))  # --max-gpu-hours: checked by the cell's searcher
    gpu_cap.arm(cell.name, gpu_cap.cap_for(settings.max_gpu_hours, storage, cell.dataset, base,
                                           gpus, budget.search_seeds))  # fmt: skip
    store.write_cell_record(storage, cell.name, {
        **cell_record(settings, cell, base, target, resources, sources),
        "space_versions": kept, **({"warm_start": whence} if whence else {})})  # fmt: skip
    if old and settings.resume and cell_complete(storage, cell, target):
        print(f"   [{cell.name}] complete: {target} of {target} trials ended; nothing to resume")
    else:
        tune_cell(
            cell,
            budget,
            storage,
            resources,
            seed=settings.seed + len(study),  # a study with history: the sampler's draws go on
            resume=old and settings.resume,
            study_storage=study_url,
            max_concurrent=concurrent,
            sampler=settings.sampler,
            slots=slots,
            rank=rank,
            verbose=verbose,
            sources=sources,
            log_to=settings.log_to,
            space=spaces.Space(kept[-1]["version"], dists),
            warm=warm,
            search_seeds=budget.search_seeds,
            objectives=settings.objectives,
        )
    # Optuna trials left RUNNING by a killed driver that no trial adopted (tune_record)
    for line in close_orphans(storage, cell.name, study_url):
        print(f"   [{cell.name}] {line}")
    crash_point("orphans_closed")
    if budget.winner_seeds > 1:
        retrain_winner(cell, budget, storage, resources, concurrent, study_url, verbose,
                       log_to=settings.log_to)  # fmt: skip
    for row in evaluate_winner(cell, budget, storage, resources):
        print(  # the cell named: cells in flight print from one process, interleaved
            f"   [{cell.name}] test log-likelihood of trial {row['trial_id']} (k={row['k']}, "
            f"IS seed {row['seed']}): "
            f"{row['test_log_likelihood']:.2f}"
        )


def evaluate_capped_winners(settings: Settings, cells: list[Cell], budget: Budget,
                            resources: dict, concurrent: int, tables) -> None:  # fmt: skip
    """The second selection rule of the tables that have one (``--selection param-cap``,
    results.selection.capped_winners): a cell whose winner under it is not its best-by-validation
    trial has that trial re-trained with the budget's other seeds and evaluated too, so that
    both tables can be printed. Runs once every cell has ended (the cap needs other cells'
    winners); on --resume it does what is left."""
    for table in tables:
        if not table.caps:
            continue
        trials = store.load(settings.storage, "trials")
        capped, _ = capped_winners(trials, table)
        for cell in cells:
            pick = capped[capped["sweep"] == cell.name] if not capped.empty else capped
            best = winners(trials[trials["sweep"] == cell.name], cell.paper)
            if pick.empty or best.empty or pick.iloc[0]["trial_id"] == best.iloc[0]["trial_id"]:
                continue
            w = pick.iloc[0]
            print(f"   [{cell.name}] param-cap winner {w['trial_id']} "
                  f"({int(w['n_parameters']):,} parameters): evaluating it too")  # fmt: skip
            try:
                if budget.winner_seeds > 1:
                    retrain_winner(cell, budget, settings.storage, resources, concurrent,
                                   settings.study_storage, 0, winner=w)  # fmt: skip
                new = evaluate_winner(cell, budget, settings.storage, resources, winner=w)
            except (RayError, TuneError, OSError) as e:  # the other table stands without it
                why = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
                print(f"error: [{cell.name}] param-cap winner {w['trial_id']}: {why}; --resume "
                      "tries again", file=sys.stderr)  # fmt: skip
                continue
            for row in new:
                print(f"   [{cell.name}] param-cap winner: test log-likelihood of trial "
                      f"{row['trial_id']} (k={row['k']}, IS seed {row['seed']}): "
                      f"{row['test_log_likelihood']:.2f}")  # fmt: skip


def warm_for(settings: Settings, cell: Cell, old: bool, record: dict | None,
             dists: dict) -> tuple[warm_start.Warm | None, dict | None]:  # fmt: skip
    """What seeds the cell's study from another sweep (--warm-start: a cell new here, or one
    whose record says it was warm-started, resumed before its study was seeded) and the record
    of it; (None, None) without."""
    whence = (record or {}).get("warm_start") if old else None
    if whence is None and settings.warm_start and not old:
        name = warm_start.source_cell(settings.warm_start, cell, settings.warm_start_dataset)
        whence = {"storage": settings.warm_start, "cell": name, "best": settings.warm_start_best,
                  "dataset": settings.warm_start_dataset}  # fmt: skip
    elif settings.warm_start and old and whence is None:
        print(f"   [{cell.name}] holds trials of its own here: not warm-started")
    if whence is None:
        return None, None
    warm = warm_start.prepare(whence["storage"], whence["cell"], dists, whence["best"])
    return warm, {**whence, "queued": len(warm.queued), "informing": len(warm.informing)}


def cell_record(
    settings: Settings,
    cell: Cell,
    base: dict,
    target: int,
    resources: dict,
    sources: dict[str, str],
) -> dict:
    return {
        "cell": dataclasses.asdict(cell),
        "base_config": base,
        "key_sources": sources,  # what fixed each key of base_config (Cell.key_sources)
        "trials": target,
        "budget": settings.budget,
        "sampler": settings.sampler,
        "objectives": list(settings.objectives),  # a continued cell keeps them (preflight)
        "seed": settings.seed,
        "search_seeds": settings.search_seeds,  # a cell goes on with these (preflight)
        "resources": resources,
        "provenance": provenance(),
    }


def cell_complete(storage: str, cell: Cell, target: int) -> bool:
    tune_trials = records.tune_trials(storage, cell.name, seeds=False) or {}
    return len(tune_trials) >= target and all(t.ended for t in tune_trials.values())
