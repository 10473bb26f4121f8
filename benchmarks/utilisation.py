"""How busy a sweep keeps a cluster: cells one after another, all cells in flight, and a plain
Tune loop of the same trials, in one run on one multi-node cluster.

The cluster is ``ray.cluster_utils.Cluster`` on this machine: a head with no trial resources and
``--nodes`` worker nodes of ``--gpus-per-node`` fake GPUs (and as many CPUs), so a sweep at one
GPU and one CPU per trial has nodes x gpus slots. The sweep is ``--cells`` cells (the MLP VAE on
the real Fashion-MNIST files, one variant per cell) of ``--trials`` trials each, through the
real command line (sweeps.engine.cli.main: Optuna, Parquet, each cell's winner evaluated on the test
set). Every trial trains a tiny VAE for a known number of steps, ``--epochs`` x ``--steps``, each
step padded to ``--trial-seconds / (epochs x steps)`` by train/step_seconds: the stand-in for a
GPU's step time, since 8 busy slots cannot be had from 2 cores otherwise. Nothing is pruned
(ASHA's grace period is the whole trial), so every trial is one ``--trial-seconds`` long and
the figures show what the platform adds, not what ASHA saves.

Modes (``--modes``, default all three):
  sequential  ``--cells sequential``: a cell's trials, then its winner's evaluation, then the next
  concurrent  the default: every cell in flight at once, sharing the slots (sweeps.engine.in_flight)
  plain       a bare ``tune.Tuner`` over the trials the concurrent sweep ran (same configs, same
              trainable: no Optuna, no ASHA, no Parquet, no evaluation; Tune's defaults, so
              no actor reuse)
Each mode runs on a fresh cluster, started before its clock starts.

Figures per mode:
  processes    worker processes that ran the trials (fewer than trials: Tune reused actors)
  wall         seconds from the sweep's start to its end (the table printed)
  lead, tail   seconds from the sweep's start to its first trial's start, and from its last
               trial's end to the sweep's end (the last winner's evaluation)
  utilisation  busy / (slots x wall); busy = the trials' epochs (training and validation)
  trials_util  the same from the first trial's start to the last one's end (wall less lead, tail)
  in-trial     a trial's slot-seconds outside its epochs, mean: Tune's start of the trial to its
               last result reaching the driver (Tune's record, the driver's clock; the rows'
               started_at, ended_at) minus its epochs: process, data, model, checkpoints, reports
  handover     median seconds from a trial's end to the next trial's start while trials wait
  overhead     per trial, in core-seconds: (in-trial + handover) x CPUs per trial, and as a
               share of a trial's busy time

With ``--data``, instead: a trial's data load (Fashion-MNIST, binarised) in a fresh worker process,
reading the files itself against mapping its node's copy (sweeps.engine.node_data), 3 times each.

Run:  python benchmarks/utilisation.py [--data] [--nodes 4] [--gpus-per-node 2] [--cells 9]
      [--trials 6] [--trial-seconds 60] [--epochs 5] [--steps 20]
      [--modes sequential concurrent plain]
The defaults are those of docs/benchmarks.md#keeping-a-cluster-busy: a 9-cell sweep of one-minute
trials on 8 slots (about 25 min).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import ray
from ray import tune
from ray._common import utils as ray_utils
from ray.cluster_utils import Cluster

from results import rows, store
from sweeps.cells import Budget, Cell
from sweeps.engine import cli
from sweeps.engine.trial import TrainTrial
from training.config import unflatten


def cells_and_budget(args) -> tuple[list[Cell], Budget]:
    step = args.trial_seconds / (args.epochs * args.steps)
    fixed = {"data/binarize": True, "data/val_size": 500, "model/hidden_dim": 16,
             "train/batch_size": 64, "train/epoch_batches": args.steps,
             "train/step_seconds": step}  # fmt: skip
    cells = [
        Cell(
            "bench",
            "vae",
            "fashion_mnist",
            "bernoulli",
            variant=f"cell{i}",
            fixed={**fixed, "train/seed": i},
        )  # fmt: skip
        for i in range(args.cells)
    ]
    budget = Budget(trials=args.trials, max_epochs=args.epochs, grace_epochs=args.epochs,
                    reduction_factor=2, patience=args.epochs, eval_k=2, eval_seeds=1)  # fmt: skip
    return cells, budget


def spans_from_storage(storage: str) -> pd.DataFrame:
    """Per trial: Tune's start, its end, its busy seconds (from the sweep's Parquet tables) and
    the worker process it ran in (Tune's result.json of the trial)."""
    trials = store.load(storage, "trials").set_index("trial_id")
    busy = store.load(storage, "curves").groupby("trial_id")["epoch_seconds"].sum()
    pids = {}
    for f in Path(storage, "ray").glob("*/*/result.json"):
        first = json.loads(f.read_text().splitlines()[0])
        pids[first["trial_id"]] = (first["hostname"], first["pid"])
    spans = {"start": trials["started_at"], "end": trials["ended_at"], "busy": busy}
    return pd.DataFrame({**spans, "pid": pd.Series(pids)})


class Times(tune.Callback):
    """The plain loop's trial start and end, from Tune's record as our ParquetWriter's rows."""

    def __init__(self):
        self.start, self.end = {}, {}

    def on_trial_complete(self, iteration, trials, trial, **info):
        times = rows.tune_times(vars(trial.run_metadata))
        self.start[trial.trial_id], self.end[trial.trial_id] = times


def run_plain(configs: list[dict], slots: int, root: str) -> pd.DataFrame:
    class PlainTrial(TrainTrial):  # the i-th configuration, by Tune's grid over i
        def setup(self, config):
            super().setup(unflatten(configs[config["i"]]))

    times = Times()
    tuner = tune.Tuner(  # Tune's defaults otherwise: no actor reuse
        tune.with_resources(PlainTrial, {"cpu": 1, "gpu": 1}),
        param_space={"i": tune.grid_search(list(range(len(configs))))},
        tune_config=tune.TuneConfig(max_concurrent_trials=slots),
        run_config=tune.RunConfig(storage_path=root, name="plain", callbacks=[times], verbose=0),
    )
    grid = tuner.fit()
    rows = {}
    for r in grid:
        tid = r.metrics["trial_id"]
        busy = r.metrics_dataframe["epoch_seconds"].sum()
        pid = (r.metrics["hostname"], r.metrics["pid"])
        rows[tid] = {"start": times.start[tid], "end": times.end[tid], "busy": busy, "pid": pid}
    return pd.DataFrame.from_dict(rows, orient="index")


def figures(spans: pd.DataFrame, start: float, end: float, slots: int, cpus: float) -> dict:
    wall = end - start
    in_trial = (spans["end"] - spans["start"] - spans["busy"]).mean()
    starts = sorted(spans["start"])
    gaps = []
    for ended in spans["end"]:  # the next start after a trial's end, if any trial still waited
        later = [s for s in starts if s >= ended]
        if later:
            gaps.append(later[0] - ended)
    handover = statistics.median(gaps) if gaps else 0.0
    overhead = (in_trial + handover) * cpus
    return {
        "trials": len(spans),
        "processes": spans["pid"].nunique(),
        "lead_s": spans["start"].min() - start,
        "tail_s": end - spans["end"].max(),
        "wall_s": wall,
        "utilisation": spans["busy"].sum() / (slots * wall),
        "trials_util": spans["busy"].sum() / (slots * (spans["end"].max() - spans["start"].min())),
        "in_trial_s": in_trial,
        "handover_s": handover,
        "overhead_core_s": overhead,
        "overhead_pct": 100 * overhead / spans["busy"].mean(),
    }


def data_figures() -> None:
    """A trial's data load in a fresh process: its own read of the files against the node's copy."""
    from sweeps.engine import node_data
    from training.config import DataConfig
    from training.data import load_data

    cfg = DataConfig(dataset="fashion_mnist", binarize=True)

    @ray.remote(num_cpus=1, max_calls=1)  # max_calls=1: a fresh worker process each time
    def timed(use_node: bool) -> float:
        start = time.perf_counter()
        (node_data.load_data if use_node else load_data)(cfg)
        return time.perf_counter() - start

    node_data.start()
    own = [ray.get(timed.remote(False)) for _ in range(3)]
    ray.get(timed.remote(True))  # the node's actor reads the files once
    mapped = [ray.get(timed.remote(True)) for _ in range(3)]
    runs = lambda ts: ", ".join(f"{t:.2f}" for t in ts)  # noqa: E731
    print(f"a trial's data, fresh process: reading the files {statistics.median(own):.2f} s "
          f"(runs {runs(own)}); the node's copy {statistics.median(mapped):.2f} s "
          f"({runs(mapped)})")  # fmt: skip


@contextlib.contextmanager
def fake_gpu_cluster(nodes: int, gpus: int):
    temp_dir = tempfile.mkdtemp(prefix="ru", dir="/tmp")  # short: unix socket paths are limited
    os.makedirs(ray_utils.get_default_ray_temp_dir(), exist_ok=True)
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "num_gpus": 0,
                                                      "temp_dir": temp_dir})  # fmt: skip
    try:
        for _ in range(nodes):
            c.add_node(num_cpus=gpus, num_gpus=gpus)
        ray.init(address=c.address)
        yield c
    finally:
        ray.shutdown()
        c.shutdown()
        ray_utils.reset_ray_address()
        shutil.rmtree(temp_dir, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=4)
    p.add_argument("--gpus-per-node", type=int, default=2)
    p.add_argument("--cells", type=int, default=9)
    p.add_argument("--trials", type=int, default=6, help="trials per cell")
    p.add_argument("--trial-seconds", type=float, default=60.0)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--steps", type=int, default=20, help="training steps per epoch")
    p.add_argument("--modes", nargs="+", default=["sequential", "concurrent", "plain"],
                   choices=["sequential", "concurrent", "plain"])  # fmt: skip
    p.add_argument("--data", action="store_true", help="time a trial's data load and exit")
    args = p.parse_args()
    if args.data:
        with fake_gpu_cluster(1, 2):
            data_figures()
        return
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    slots = args.nodes * args.gpus_per_node
    cells, budget = cells_and_budget(args)
    print(f"{args.cells} cells x {args.trials} trials of {args.trial_seconds:g} s "
          f"({args.epochs} epochs x {args.steps} steps) on {args.nodes} nodes x "
          f"{args.gpus_per_node} fake GPUs = {slots} slots")  # fmt: skip
    root = tempfile.mkdtemp(prefix="utilisation-")
    results, configs = {}, None
    # Each mode on a fresh cluster of the same shape: a later mode would otherwise find the
    # nodes' datasets already read (sweeps.engine.node_data) and Ray's idle workers already started.
    for mode in [m for m in ("sequential", "concurrent") if m in args.modes]:
        with fake_gpu_cluster(args.nodes, args.gpus_per_node) as cluster:
            storage = f"{root}/{mode}"
            argv = ["--storage", storage, "--datasets", "fashion_mnist", "--address",
                    cluster.address, "--gpus-per-trial", "1", "--cells", mode]  # fmt: skip
            start = time.time()
            code = cli.main("vlae", cells, {"smoke": budget}, {}, argv=argv)
            if code != 0:
                raise SystemExit(f"the {mode} sweep failed (exit {code}); see its output above")
            results[mode] = figures(spans_from_storage(storage), start, time.time(), slots, 1.0)
            trials = store.load(storage, "trials")
            configs = [json.loads(c) for c in trials["config_json"]]
    if "plain" in args.modes:
        if configs is None:
            raise SystemExit("--modes plain needs a sweep mode first (its trials' configs)")
        with fake_gpu_cluster(args.nodes, args.gpus_per_node):
            start = time.time()
            spans = run_plain(configs, slots, f"{root}/plain")
            results["plain"] = figures(spans, start, time.time(), slots, 1.0)
    shutil.rmtree(root, ignore_errors=True)
    print()
    print(pd.DataFrame(results).T.round(3).to_string())
    if "sequential" in results and "concurrent" in results:
        s, c = results["sequential"], results["concurrent"]
        print(f"\nconcurrent vs sequential: wall {c['wall_s']:.0f} s vs {s['wall_s']:.0f} s "
              f"({s['wall_s'] / c['wall_s']:.2f}x faster), utilisation "
              f"{100 * c['utilisation']:.1f}% vs {100 * s['utilisation']:.1f}%")  # fmt: skip


if __name__ == "__main__":
    main()
