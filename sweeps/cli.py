"""The command line every paper's sweep script shares.

    python sweeps/<paper>.py [--budget smoke|paper] [--storage DIR_OR_URI] [--datasets ...]

Connects to a running Ray cluster when there is one (--address, RAY_ADDRESS, or a live `ray start`
on this machine), else starts an embedded local instance; runs every selected cell, evaluates each
cell's winner on the test set, and prints the paper's table.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys

import ray

import search_spaces
from results import store
from results.papers import paper_tables
from results.tables import build_table, render
from sweeps.cells import Budget, Cell
from sweeps.status import progress
from sweeps.tune_glue import evaluate_winner, run_cell
from training.config import ConfigError, parse_override
from training.data import DatasetError, read_images


def connect(address: str | None) -> None:
    """Attach to the given or running cluster; otherwise start a fresh local instance.

    A `ray_current_cluster` file left by a dead `ray start` would make a bare ray.init() try to
    attach to it, so "running" means a live GCS process is found, else we force a local start.
    """
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        try:
            ray.init(address=address)
        except (ConnectionError, RuntimeError) as e:
            raise SystemExit(f"error: cannot reach the Ray cluster at {address!r}: {e}") from None
        return
    from ray._private.services import find_gcs_addresses  # no public API for "is one running"

    ray.init(address="auto" if find_gcs_addresses() else "local")


def storage_warning(storage: str, hosts: set[str]) -> str | None:
    """A local path is only right for a cluster if it is a shared mount (NFS) on every node."""
    if "://" in storage or len(hosts) <= 1:
        return None
    return (
        f"warning: --storage {storage} is a local path but the cluster spans {len(hosts)} "
        "machines: it must be a shared mount (NFS) on all of them, or use s3:// / gs://"
    )


def fitting_trials(resources: dict) -> int:
    """How many trials of this size the cluster holds now (at least 1)."""
    total = ray.cluster_resources()
    fits = [total.get(name.upper(), 0) / need for name, need in resources.items() if need > 0]
    return max(1, int(min(fits, default=1) + 1e-9))


def parse_args(
    argv,
    paper: str,
    cells: list[Cell],
    budgets: dict[str, Budget],
    default_datasets: dict[str, list[str]],
) -> argparse.Namespace:
    datasets = sorted({c.dataset for c in cells})
    p = argparse.ArgumentParser(
        prog=f"sweeps/{paper}.py", description=f"The {paper} paper's sweep."
    )
    p.add_argument("--budget", choices=sorted(budgets), default="smoke")
    p.add_argument(
        "--storage",
        default="sweep-results",
        help="where Tune runs, the Optuna studies and the Parquet tables go "
        "(local path, NFS path, or s3:// / gs:// URI)",
    )
    p.add_argument(
        "--datasets",
        nargs="+",
        choices=datasets,
        default=None,
        help="cells to run, by dataset (default: per budget, smoke runs fashion_mnist)",
    )
    p.add_argument("--families", nargs="+", default=None, help="cells to run, by family")
    p.add_argument("--address", default=None, help="Ray cluster address (default: auto-detect)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument(
        "--gpus-per-trial",
        type=float,
        default=None,
        help="GPUs per trial; fractions pack trials on one GPU (default: 1 if the "
        "cluster has GPUs, else 0)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fix a config key in every trial, e.g. data/root=/data (repeatable)",
    )
    p.add_argument(
        "--max-concurrent",
        type=int,
        default=None,
        help="trials running at once (default: as many as the cluster's resources fit "
        "now; set it for an autoscaling cluster that starts small)",
    )
    p.add_argument("--trials", type=int, default=None, help="override the budget's trial count")
    p.add_argument(
        "--study-storage",
        default=None,
        help="Optuna storage URL (postgresql://...) for a cluster; default: journal file",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the Optuna sampler")
    p.add_argument(
        "--sampler",
        choices=("tpe", "grid"),
        default="tpe",
        help="tpe: Optuna's TPE under ASHA (default); grid: replay the authors' grid, each "
        "configuration once, no pruning (families with a grid: search_spaces.GRIDS); the trial "
        "count is the grid's size unless --trials is given",
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep")
    p.add_argument(
        "--status",
        action="store_true",
        help="print the sweep's progress from --storage and exit (Ray not needed)",
    )
    args = p.parse_args(argv)
    args.datasets = args.datasets or default_datasets.get(args.budget, datasets)
    return args


def main(
    paper: str,
    cells: list[Cell],
    budgets: dict[str, Budget],
    default_datasets: dict[str, list[str]],
    argv: list[str] | None = None,
) -> int:
    args = parse_args(argv, paper, cells, budgets, default_datasets)
    budget = budgets[args.budget]
    try:
        fixed = dict(parse_override(item) for item in args.set)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    budget = dataclasses.replace(
        budget, trials=args.trials or budget.trials, fixed={**budget.fixed, **fixed}
    )
    chosen = [
        c
        for c in cells
        if c.dataset in args.datasets and (args.families is None or c.family in args.families)
    ]
    if not chosen:
        print(
            f"error: no cell matches --datasets {args.datasets} --families {args.families}",
            file=sys.stderr,
        )
        return 2
    if args.sampler == "grid":
        try:
            for c in chosen:
                search_spaces.grid_for(c.family)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    if args.status:
        print(progress(args.storage, chosen, args.study_storage).to_string(index=False))
        return 0
    if "://" in args.storage and not args.study_storage:
        print(
            f"error: --storage {args.storage} is an object store, where the Optuna journal "
            "cannot live: add --study-storage postgresql://... (or mysql://, sqlite:///...)",
            file=sys.stderr,
        )
        return 2
    try:
        store.check_writable(args.storage)
    except store.StorageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    local = not (args.address or os.environ.get("RAY_ADDRESS"))
    if local:  # fail before any trial starts; on a cluster the workers fetch their own data
        for ds in sorted({c.dataset for c in chosen}):
            try:
                read_images(ds, fixed.get("data/root", ""))
            except DatasetError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
    # Tune warns on every forced experiment snapshot (num_to_keep checkpoints); it is expected.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    connect(args.address)
    hosts = {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}
    if warning := storage_warning(args.storage, hosts):
        print(warning, file=sys.stderr)
    gpus = args.gpus_per_trial
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    resources = {"cpu": args.cpus_per_trial, "gpu": gpus}
    concurrent = args.max_concurrent or fitting_trials(resources)
    for cell in chosen:
        cell_budget = budget
        if args.sampler == "grid" and not args.trials:
            grid = search_spaces.grid_for(cell.family, cell.base_config(budget))
            cell_budget = dataclasses.replace(budget, trials=math.prod(map(len, grid.values())))
        print(
            f"== {cell.name}: {cell_budget.trials} trials, up to {budget.max_epochs} epochs, "
            f"{concurrent} at a time"
        )
        run_cell(
            cell,
            cell_budget,
            args.storage,
            resources,
            seed=args.seed,
            resume=args.resume,
            study_storage=args.study_storage,
            max_concurrent=concurrent,
            sampler=args.sampler,
        )
        for row in evaluate_winner(cell, budget, args.storage, resources):
            print(
                f"   test log-likelihood (k={row['k']}, seed {row['seed']}): "
                f"{row['test_log_likelihood']:.2f}"
            )
    for table in paper_tables(paper):
        df, notes = build_table(args.storage, table)
        print(render(df, notes, table.title, "md"))
    return 0
