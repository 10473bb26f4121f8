"""The command line every paper's sweep script shares.

    python sweeps/<paper>.py [--budget smoke|paper] [--storage DIR_OR_URI] [--datasets ...]
                             [--protocol project|authors|authors-code]

Connects to a running Ray cluster when there is one (--address, RAY_ADDRESS, or a live `ray start`
on this machine), else starts an embedded local instance; runs every selected cell, evaluates each
cell's winner on the test set, and prints the paper's table.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
import time

from results import lease, store
from results.papers import paper_tables
from results.tables import write_files
from sweeps.cells import PROJECT, Budget, Cell, Protocol
from sweeps.engine import console, estimate, preflight, spaces, trackers, warm_start
from sweeps.engine.flags import parse_args
from sweeps.engine.nodes import (
    check_cluster_resources,
    cluster_address,
    connect,
    fitting_trials,
    local_shape,
    ray_attached,
    requested,
    storage_warning,
)
from sweeps.engine.settings import Settings
from sweeps.engine.status import print_status
from sweeps.engine.summary import (
    ray_logs,
    report_differences,
    report_failures,
    summary_lines,
    watch_lines,
)
from training.errors import ConfigError

# Ray and torch (training.data, the engine's cells) are imported where a sweep starts (start, run):
# --help, --status and --dry-run never import them, so they answer in about a second.


def choose(
    settings: Settings,
    cells: list[Cell],
    budgets: dict[str, Budget],
    protocols: dict[str, Protocol] | None = None,
) -> tuple[Budget, list[Cell], dict]:
    """The budget (with --set and --trials), the chosen cells under --protocol and the --set
    keys, with the checks of the flags alone (--status reads no more). Raises Refusal."""
    preflight.check_counts(settings)
    fixed = settings.fixed
    budget = budgets[settings.budget]
    trials = settings.add_trials or settings.trials or budget.trials
    seeds = settings.winner_seeds or budget.winner_seeds
    budget = dataclasses.replace(
        budget, trials=trials, fixed={**budget.fixed, **fixed}, winner_seeds=seeds,
        search_seeds=settings.search_seeds,
    )
    chosen = [
        c
        for c in cells
        if c.dataset in settings.datasets
        and (settings.families is None or c.family in settings.families)
    ]
    if not chosen:
        families = settings.families and list(settings.families)  # printed as they were
        raise preflight.Refusal(
            f"no cell matches --datasets {list(settings.datasets)} --families {families} "
            f"(families: {sorted({c.family for c in cells})})"
        )
    if settings.protocol != PROJECT:
        chosen = [protocols[settings.protocol].apply(settings.protocol, c) for c in chosen]
    return budget, chosen, fixed


def plan(
    settings: Settings,
    cells: list[Cell],
    budgets: dict[str, Budget],
    protocols: dict[str, Protocol] | None = None,
) -> tuple[Budget, list[Cell], dict]:
    """choose's budget, cells and --set keys, with every check that needs neither Ray nor the
    storage (the configs build their models: torch). Raises Refusal or ConfigError."""
    budget, chosen, fixed = choose(settings, cells, budgets, protocols)
    preflight.check_overrides(chosen, fixed)
    # no cluster named: trials run here (embedded, or a `ray start` here), in this machine's memory
    here = not (ray_attached() or settings.address or os.environ.get("RAY_ADDRESS"))
    preflight.check_configs(chosen, budget, settings.sampler, machine=here)
    return budget, chosen, fixed


def check_warm_start(settings: Settings, chosen: list[Cell]) -> None:
    """--warm-start and its companions (sweeps.engine.warm_start.check): Refusal."""
    if not settings.warm_start:
        if settings.warm_start_dataset or settings.warm_start_best != 3:
            raise preflight.Refusal("--warm-start-dataset and --warm-start-best go with "
                                    "--warm-start STORAGE")  # fmt: skip
        return
    if settings.sampler == "grid":
        raise preflight.Refusal("--warm-start seeds a TPE search; --sampler grid replays the "
                                "authors' grid whole: drop one of them")  # fmt: skip
    warm_start.check(settings.warm_start, settings.storage, chosen, settings.warm_start_dataset,
                     settings.warm_start_best)  # fmt: skip


def check_storage(settings: Settings, chosen: list[Cell],
                  budget: Budget) -> tuple[Settings, list[Cell], lease.Lease]:  # fmt: skip
    """The storage and the study storage, before Ray starts; the settings (--study-storage as
    checked), the cells the storage holds and the storage's lease, held from here on.

    In this order, each failure one line: the storage opens and answers (a scheme nothing
    handles, an object store that refuses: at once, no retries), no live sweep holds its lease
    (read only), --study-storage works (a database is connected to and its schema made), the
    run fits what the storage holds, the lease is taken (the first write), the fit is checked
    again under it (another sweep may have come and gone meanwhile), and a probe file is
    written and removed. Without --study-storage each cell's study is a journal beside the
    results; on an object store, kept on this machine and synced there (results.studies)."""
    store.check_reachable(settings.storage)
    lease.check_free(settings.storage)
    study_url = settings.study_storage and preflight.check_study_storage(settings.study_storage)
    mode = "resume" if settings.resume else "add" if settings.add_trials else "new"
    try:
        old = preflight.check_storage(settings.storage, chosen, budget, mode, study_url,
                                      settings.objectives)  # fmt: skip
        if settings.sampler != "grid":  # a study that cannot be read yet: after its repair
            spaces.check(settings.storage, old, budget, study_url, damaged_ok=True)
    except preflight.Refusal:
        lease.check_free(settings.storage)  # a sweep that started there meanwhile is the reason
        raise
    held = lease.acquire(settings.storage)
    try:
        old = preflight.check_storage(settings.storage, chosen, budget, mode, study_url,
                                      settings.objectives)  # fmt: skip
        store.check_writable(settings.storage)
        preflight.repair_storage(settings.storage, old, study_url)  # under the lease
        if settings.sampler != "grid":
            spaces.check(settings.storage, old, budget, study_url)
    except BaseException:
        held.release()
        raise
    return dataclasses.replace(settings, study_storage=study_url), old, held


def main(
    paper: str,
    cells: list[Cell],
    budgets: dict[str, Budget],
    default_datasets: dict[str, list[str]],
    argv: list[str] | None = None,
    protocols: dict[str, Protocol] | None = None,
) -> int:
    try:
        settings = parse_args(argv, paper, cells, budgets, default_datasets, protocols)
        if settings.status:  # read-only, and light: no torch, no Ray (sweeps.engine.status)
            budget, chosen, _ = choose(settings, cells, budgets, protocols)
            return print_status(settings, chosen, budget)
        if settings.dry_run:  # the cost, nothing started or written (sweeps.engine.estimate);
            budget, chosen, fixed = choose(settings, cells, budgets, protocols)
            preflight.check_overrides(chosen, fixed)  # each config's model is built at a start
            check_warm_start(settings, chosen)
            return estimate.dry_run(settings, chosen, budget)
        budget, chosen, _ = plan(settings, cells, budgets, protocols)
        trackers.check(settings.log_to)
        check_warm_start(settings, chosen)
    except (preflight.Refusal, ConfigError, store.StorageError) as e:
        return refused(e)
    return start(settings, paper, chosen, budget)


def refused(e: Exception) -> int:
    print(f"error: {e}", file=sys.stderr)
    return 2


def start(settings: Settings, paper: str, chosen: list[Cell], budget: Budget) -> int:
    """The checks that need the cluster or the storage, the cost asked about (a large one: --yes
    or a terminal's answer), the storage's lease, then the sweep (run)."""
    import ray

    from sweeps.engine import node_data
    from training.data import DatasetError

    try:
        attached = ray.is_initialized()  # a caller's own Ray (tests, notebooks): used as it is
        given = settings.address or os.environ.get("RAY_ADDRESS")
        address = None if attached else cluster_address(given)
        if address or attached:  # the data where trials will run, and whether a trial fits
            connect(address, settings.verbose)
            node_data.check_on_cluster(node_data.datasets_read(chosen, budget))
            check_cluster_resources(requested(settings, ray.cluster_resources()))
            offered = ray.cluster_resources()
        else:  # an embedded instance: this machine's files and cores, checked before Ray starts
            node_data.check_here(node_data.datasets_read(chosen, budget))
            preflight.check_resources(requested(settings, local_shape()), [local_shape()],
                                      "of this machine")  # fmt: skip
            offered = local_shape()
        preflight.check_objective_costs(settings.objectives, requested(settings, offered))
        if not estimate.confirmed(settings, chosen, budget):
            print("stopped before it started: nothing was written", file=sys.stderr)
            return 1
        settings, old, held = check_storage(settings, chosen, budget)  # the first write: lease
    except (preflight.Refusal, ConfigError, DatasetError, store.StorageError) as e:
        return refused(e)
    try:  # the lease is released on every way out: an end, an error, Ctrl-C, SIGTERM
        return run(settings, paper, chosen, budget, old, address)
    finally:
        held.release()


def run(settings: Settings, paper: str, chosen: list[Cell], budget: Budget, old: list[Cell],
        address) -> int:  # fmt: skip
    """The checked sweep, under the storage's lease: every cell, its winners, the tables."""
    import ray  # here, with the engine's cells: not imported by --help, --status, --dry-run

    from sweeps.engine import node_data
    from sweeps.engine.cell import evaluate_capped_winners, run_cell
    from sweeps.engine.gpu_cap import EXIT_CODE, Watch, start_line
    from sweeps.engine.in_flight import run_concurrently

    stop_on_sigterm()  # from here on (ray.init sets its own, a sys.exit, until the next one)
    # Tune warns on every forced experiment snapshot (num_to_keep checkpoints); it is expected.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    started = time.monotonic()
    console.quiet(settings.verbose)  # Ray's, Tune's and Optuna's own lines: their logs only
    connect(address, settings.verbose)
    print("\n".join(watch_lines(settings.storage, sys.argv)))
    hosts = {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}
    if warning := storage_warning(settings.storage, hosts):
        print(warning, file=sys.stderr)
    resources = requested(settings, ray.cluster_resources())
    concurrent = settings.max_concurrent or fitting_trials(resources)
    node_data.start()  # each dataset read once per node, into its object store
    # Ctrl-C is a KeyboardInterrupt here, as in the cells' threads: Tune's own handler would
    # only end the running Tuner, and the sweep would go on to the next step of the cell.
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    stop_on_sigterm()
    broken, verbose = [], console.tune_verbosity(settings.verbose)
    if line := start_line(settings.max_gpu_hours, resources["gpu"]):
        print(line, file=sys.stderr if line.startswith("note:") else sys.stdout)
    watch = Watch(settings.storage, settings.max_gpu_hours)  # capped and idle: KeyboardInterrupt
    try:  # the progress lines, from a thread, until the cells and their winners are done
        with console.Progress(settings.storage, chosen, settings.study_storage, concurrent), watch:
            if settings.cells == "sequential" or len(chosen) == 1:
                for cell in chosen:
                    watch.pending = {cell.name}
                    run_cell(settings, cell, budget, resources, concurrent, cell in old,
                             verbose=verbose)  # fmt: skip
                watch.pending = set()
            else:
                broken = run_concurrently(settings, chosen, budget, resources, concurrent, old,
                                          watch)  # fmt: skip
                watch.pending = set()
            # the tables' second selection rule, if any: its winners evaluated too
            evaluate_capped_winners(settings, chosen, budget, resources, concurrent,
                                    paper_tables(paper))  # fmt: skip
    except KeyboardInterrupt:
        if watch.stopped:  # --max-gpu-hours reached (sweeps.engine.gpu_cap), not Ctrl-C
            print(watch.line(), file=sys.stderr)
            return EXIT_CODE
        print(
            f"interrupted: every cell's state so far is saved under {settings.storage}; the "
            "same command with --resume continues it",
            file=sys.stderr,
        )
        return 130
    try:
        failed = report_failures(settings.storage, chosen)
        for table in paper_tables(paper):  # printed, and written under <storage>/tables/
            print(write_files(settings.storage, table)["md"])
        report_differences(settings.storage, chosen, settings.study_storage)
        print("\n".join(summary_lines(settings.storage, paper, chosen, time.monotonic() - started,
                                     sys.argv, settings.study_storage, ray_logs())))  # fmt: skip
    except (OSError, store.StorageError) as e:  # e.g. a storage that stopped being writable
        print(f"error: cannot read the results back from {settings.storage}: {e}", file=sys.stderr)
        return 1
    return 1 if failed or broken else 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def stop_on_sigterm() -> None:
    """SIGTERM (`kill`, a scheduler's time limit: cluster/slurm.sbatch) stops the sweep as Ctrl-C
    does: every cell's state saved, one line, exit 130, and --resume continues it."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


