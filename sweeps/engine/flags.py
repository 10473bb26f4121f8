"""The flags every paper's sweep script takes, parsed once into a Settings (sweeps.engine.settings).

    parse_args(argv, paper, cells, budgets, default_datasets, protocols) -> Settings

A flag argparse refuses (unknown, a bad choice or number) is one ``error:`` line and exit 2
(OneLineParser); a bad --set item is training's ConfigError, a bad cost flag a
preflight.Refusal (sweeps.engine.cli prints either as one line). Light: neither torch nor Ray
is imported, so --help answers at once.
"""

from __future__ import annotations

import argparse
import os
import sys

from sweeps.cells import PROJECT, Budget, Cell, Protocol
from sweeps.engine import estimate, objectives, trackers
from sweeps.engine.settings import DefaultsFormatter, Settings


class OneLineParser(argparse.ArgumentParser):
    """argparse whose refusal (an unknown flag, a bad choice or number) is one ``error:`` line
    saying where the flags are listed, exit 2, not its usage block."""

    def error(self, message: str):
        print(f"error: {message} (see python {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def parse_args(
    argv,
    paper: str,
    cells: list[Cell],
    budgets: dict[str, Budget],
    default_datasets: dict[str, list[str]],
    protocols: dict[str, Protocol] | None = None,
) -> Settings:
    """The sweep's flags, parsed once (sweeps.engine.settings); a bad --set item: ConfigError."""
    datasets = sorted({c.dataset for c in cells})
    p = OneLineParser(prog=f"sweeps/{paper}.py", formatter_class=DefaultsFormatter,
                      description=f"The {paper} paper's sweep.")  # fmt: skip
    p.add_argument("--budget", choices=sorted(budgets), default="smoke",
                   help="how much search: trials, epochs, ASHA's rungs (--dry-run: its cost)")
    p.add_argument(
        "--protocol",
        choices=[PROJECT, *(protocols or {})],
        default=PROJECT,
        help="project: a seeded validation split, the papers' intended algorithms (default); "
        + "; ".join(f"{name}: {p.description}" for name, p in (protocols or {}).items()),
    )
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
    p.add_argument("--families", nargs="+", default=None,
                   help="cells to run, by family (default: every family)")  # fmt: skip
    p.add_argument("--address", default=None, help="Ray cluster address (default: auto-detect)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial")
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
    p.add_argument(
        "--cells",
        choices=("concurrent", "sequential"),
        default="concurrent",
        help="concurrent: every cell in flight at once, sharing the trial slots, each winner "
        "evaluated as soon as its cell ends (default); sequential: one cell after another, "
        "as before (sweeps.engine.in_flight)",
    )
    p.add_argument("--trials", type=int, default=None,
                   help="trials per cell (default: the budget's)")  # fmt: skip
    p.add_argument(
        "--add-trials",
        type=int,
        default=None,
        metavar="N",
        help="run N more trials in cells the storage already holds (the sampler sees their "
        "history, so no configuration repeats); cells not there yet start with N",
    )
    p.add_argument(
        "--study-storage",
        default=None,
        help="Optuna storage URL (postgresql://...) for a cluster; default: journal file",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the Optuna sampler")
    p.add_argument(
        "--winner-seeds",
        type=int,
        default=None,
        metavar="N",
        help="training seeds of each cell's winning configuration: its search run and N - 1 "
        "re-trainings from scratch with the next seeds, each evaluated; tables show mean ± std "
        "over them (default: the budget's; 1 in smoke, 3 in paper)",
    )
    p.add_argument(
        "--search-seeds",
        type=int,
        default=1,
        metavar="N",
        help="training seeds of each configuration the search draws: N models (the trial's "
        "train/seed and the next N - 1) trained in lockstep in one trial, which reports their "
        "mean validation loss to ASHA and Optuna; N times the epochs (default: 1)",
    )
    p.add_argument(
        "--sampler",
        choices=("tpe", "grid"),
        default="tpe",
        help="tpe: Optuna's TPE under ASHA (default); grid: replay the authors' grid, each "
        "configuration once, no pruning (families with a grid: search_spaces.GRIDS); the trial "
        "count is the grid's size unless --trials is given",
    )
    p.add_argument(
        "--objectives",
        nargs="+",
        choices=objectives.OBJECTIVES,
        default=[objectives.VAL_LOSS],
        help="what each cell's study minimises, val_loss first (ASHA prunes on it): params "
        "(the model's parameter count), gpu_hours (GPUs held x wall time; trials need a GPU), "
        "epoch_seconds (wall seconds per epoch). Several: a multi-objective search, sampled by "
        f"TPE below {objectives.NSGA_FROM} trials per cell and by NSGA-II from "
        f"{objectives.NSGA_FROM}; `python -m results pareto` shows the fronts (default: "
        "val_loss)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted sweep: unfinished cells go on, finished ones are skipped, "
        "lost Parquet rows are rebuilt from Tune's records",
    )
    p.add_argument(
        "--status",
        action="store_true",
        help="print the sweep's progress from --storage and exit (Ray not needed)",
    )
    p.add_argument(
        "--warm-start",
        default=None,
        metavar="STORAGE",
        help="seed each new cell's study from the matching cell (family, dataset, likelihood, "
        "protocol) of another sweep's storage, local or s3://: its best configurations run first, "
        "its completed trials inform the sampler where they fit this cell's space "
        "(docs/running-sweeps.md#warm-starts)",
    )
    p.add_argument("--warm-start-best", type=int, default=3, metavar="K",
                   help="how many of the warm-start cell's best configurations run first")
    p.add_argument("--warm-start-dataset", choices=datasets, default=None,
                   help="warm-start from the other sweep's cells of this dataset instead of each "
                   "cell's own (said in the table's notes)")  # fmt: skip
    estimate.add_arguments(p)  # --dry-run, --yes, --gpus
    p.add_argument(
        "--log-to",
        action="append",
        default=[],
        choices=sorted(trackers.TRACKERS),
        help="also log every trial to this tracker (repeatable; its package must be installed: "
        "docs/monitoring.md#trackers)",
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="print Ray's and Tune's own lines too (Tune's tables, Ray's INFO logs, the trials' "
        "output); without it they are only written to their logs",
    )
    args = p.parse_args(argv)
    estimate.read_flags(args)
    if "://" not in args.storage:  # cells run in a worker whose working directory differs
        args.storage = os.path.abspath(os.path.expanduser(args.storage))
    if args.warm_start and "://" not in args.warm_start:
        args.warm_start = os.path.abspath(os.path.expanduser(args.warm_start))
    args.datasets = args.datasets or default_datasets.get(args.budget, datasets)
    return Settings.from_args(args)
