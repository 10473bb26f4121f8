"""Searches that build on each other, on the VLAE paper's VAE cell (Fashion-MNIST, Gaussian
output): a warm-started search against a cold one, and a search over two training seeds against
one over one, each a real sweep.

The sweeps run one after the other, each in its own process with its own embedded Ray unless
--address is given, into ``<storage-root>/<search>``:
  pilot          the smoke budget's search of the cell (4 trials), run once
  cold-s<seed>   a search at the larger budget (``--trials``, ``--max-epochs``), sampler seed
                 <seed>, ``--winner-seeds W``: the cold search, and the one-seed search of part 2
  warm-s<seed>   the same, ``--warm-start <storage-root>/pilot --winner-seeds 1``
  two-s<seed>    the same as cold, ``--search-seeds 2``
for each ``--seeds``. A search already in ``--storage-root`` is not run again.

From the Parquet rows (results.store):
  1. cold against warm: the best completed validation loss of each search's trials ended (in
     order of ended_at, role "search") while its CPU core-hours spent were at most 25%, 50% and
     100% of the cold search's whole cost; the pilot's cost is stated apart (paid before the warm
     search began).
  2. one seed against two: each winner's re-trainings with the training seeds that neither search
     trained on (``train/seed`` + 2 onwards: the two-seed search selected on + 0 and + 1, and a
     re-training with + 1 repeats that selected model), their mean test log-likelihood (k
     importance samples on the 10,000 test images, never selected on) and mean best validation
     loss; ``--winner-seeds`` 4 gives two such seeds per winner.

Run:  python benchmarks/warm_start.py [--seeds 0 1 2] [--trials 24] [--max-epochs 10]
      [--winner-seeds 4] [--storage-root DIR] [--cpus-per-trial 1] [--analyse]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

try:  # `python benchmarks/warm_start.py` puts benchmarks/ on sys.path; tests import the package
    from search_efficiency import join, load, ray_instances, spread, totals, trial_costs
except ImportError:
    from benchmarks.search_efficiency import join, load, ray_instances, spread, totals, trial_costs

CELL = "vlae-vae-fashion_mnist-gaussian"
FRACTIONS = (0.25, 0.5, 1.0)


# ---- analysis: pure functions of the Parquet rows ----


def best_within(rows: pd.DataFrame, hours: float, cpus_per_trial: float = 1.0) -> float:
    """The best completed best_val_loss of a search's trials (role "search", in order of
    ended_at) ended while its CPU core-hours spent were at most ``hours``; NaN if none."""
    t = trial_costs(rows, cpus_per_trial)
    spent = t["cpu_s"].cumsum() / 3600
    done = (t["status"] == "completed") & (spent <= hours * (1 + 1e-9))
    losses = t["best_val_loss"].astype(float).where(done)
    return float(losses.min()) if losses.notna().any() else math.nan


def cold_and_warm(
    cold: pd.DataFrame, warm: pd.DataFrame, fractions=FRACTIONS, cpus: tuple = (1.0, 1.0)
) -> dict[float, tuple[float, float, float]]:
    """Per fraction of the cold search's whole core-hours: (those hours, the cold search's best
    validation loss by then, the warm search's)."""
    whole = float(trial_costs(cold, cpus[0])["cpu_s"].sum()) / 3600
    return {
        f: (f * whole, best_within(cold, f * whole, cpus[0]), best_within(warm, f * whole, cpus[1]))
        for f in fractions
    }


def ahead(cold_loss: float, warm_loss: float) -> bool:
    """Whether the warm search is ahead: a lower loss, or one where the cold search has none."""
    if math.isnan(warm_loss):
        return False
    return math.isnan(cold_loss) or warm_loss < cold_loss


def retrained(rows: pd.DataFrame, evaluations: pd.DataFrame, skip: int = 2) -> pd.DataFrame:
    """The winner's re-trainings (role "seed") with training seeds from the winner's own + skip
    on: per re-training its seed, best_val_loss and test log-likelihood (mean over its
    evaluations; NaN if it has none)."""
    if "role" not in rows:
        return pd.DataFrame(columns=["trial_id", "seed", "best_val_loss", "test_ll"])
    seeds = rows[rows["role"] == "seed"]
    winner = rows[rows["trial_id"].isin(seeds["seed_of"])]
    first = int(winner["seed"].min()) + skip if not winner.empty else 0
    fresh = seeds[seeds["seed"].astype(int) >= first]
    ll = evaluations.groupby("trial_id")["test_log_likelihood"].mean() if len(evaluations) else {}
    out = fresh[["trial_id", "seed", "best_val_loss"]].copy()
    out["test_ll"] = [float(ll.get(t, math.nan)) for t in out["trial_id"]]
    return out.sort_values("seed").reset_index(drop=True)


def winner_config(rows: pd.DataFrame) -> dict:
    """The searched keys (key_sources "search") of the cell's winner, the trial its
    re-trainings are of; {} if it was not re-trained."""
    if "role" not in rows or not (rows["role"] == "seed").any():
        return {}
    of = rows.loc[rows["role"] == "seed", "seed_of"].iloc[0]
    winner = rows[rows["trial_id"] == of].iloc[0]
    config, sources = json.loads(winner["config_json"]), json.loads(winner["key_sources"])
    return {k: v for k, v in config.items() if sources.get(k) == "search"}


def mean(values) -> float:
    values = [float(v) for v in values if not math.isnan(float(v))]
    return sum(values) / len(values) if values else math.nan


def markdown(df: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table, its index the first column."""
    head = [df.index.name or "", *map(str, df.columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += [
        "| " + " | ".join(map(str, [i, *r])) + " |"
        for i, r in zip(df.index, df.values, strict=True)
    ]
    return "\n".join(lines)


# ---- running the sweeps ----


def searches(seeds: list[int]) -> list[str]:
    return ["pilot", *(f"{kind}-s{s}" for s in seeds for kind in ("cold", "warm", "two"))]


def sweep_command(args, search: str) -> list[str]:
    """The sweep of one search: sweeps/vlae.py over the one cell."""
    cmd = [sys.executable, "-m", "sweeps.vlae", "--budget", "smoke", "--families", "vae",
           "--datasets", "fashion_mnist", "--storage", join(args.storage_root, search),
           "--cpus-per-trial", str(args.cpus_per_trial)]  # fmt: skip
    if args.address is not None:
        cmd += ["--address", args.address]
    if search == "pilot":
        return cmd + ["--seed", "0", "--winner-seeds", "1"]
    kind, seed = search.split("-s")
    cmd += ["--seed", seed, "--trials", str(args.trials),
            "--set", f"train/max_epochs={args.max_epochs}"]  # fmt: skip
    if kind == "warm":
        return cmd + ["--warm-start", join(args.storage_root, "pilot"), "--winner-seeds", "1"]
    cmd += ["--winner-seeds", str(args.winner_seeds)]
    return cmd + (["--search-seeds", "2"] if kind == "two" else [])


def ran_before(storage: str) -> bool:
    """Whether a search's storage holds the cell's record and trials rows: not run again."""
    from results import store

    return (
        store.cell_record(storage, CELL) is not None
        and not store.load(storage, "trials", sweep=CELL).empty
    )


def run_sweep(args, search: str, log: Path) -> float:
    """One search as a sweep in a fresh process, its output to ``log``; returns its seconds."""
    before = ray_instances() if args.address is None else set()
    if before:
        print(f"warning: {len(before)} other Ray instance(s) running here share the cores")
    cmd = sweep_command(args, search)
    print(f"[{search}] {shlex.join(cmd[1:])}\n[{search}] log: {log}; load before: {load()}",
          flush=True)  # fmt: skip
    start = time.time()
    with log.open("w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    seconds = time.time() - start
    print(f"[{search}] exit {rc} after {seconds / 60:.1f} min; load after: {load()}", flush=True)
    if rc != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise SystemExit(f"error: the {search} sweep failed (exit {rc}); its log ends:\n{tail}")
    return seconds


# ---- the report ----


def read(root: str, search: str) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """A search's trials rows, evaluations rows and CPUs per trial (the cell's record)."""
    from results import store

    storage = join(root, search)
    record = store.cell_record(storage, CELL) or {}
    cpus = float(record.get("resources", {}).get("cpu", 1.0))
    trials = store.load(storage, "trials", sweep=CELL)
    return trials, store.load(storage, "evaluations", sweep=CELL), cpus


def report_warm(runs: dict, seeds: list[int]) -> None:
    pilot, pilot_evals, pilot_cpus = runs["pilot"]
    p = totals(pilot, pilot_cpus)
    eval_h = float(pilot_evals["cpu_seconds"].sum()) / 3600 if len(pilot_evals) else 0.0
    print(f"\n== 1. cold against warm ({CELL}); the pilot (smoke budget, {p['trials']} trials, "
          f"best {p['best']:.2f}) cost {p['cpu_hours']:.4f} core-h of search "
          f"+ {eval_h:.4f} of test evaluation before the warm searches began")  # fmt: skip
    lines, count = {}, {f: 0 for f in FRACTIONS}
    for s in seeds:
        (cold, _, c_cpus), (warm, _, w_cpus) = runs[f"cold-s{s}"], runs[f"warm-s{s}"]
        marks = cold_and_warm(cold, warm, cpus=(c_cpus, w_cpus))
        line = {"cold's whole core-h": f"{marks[1.0][0]:.4f}"}
        for f, (_, c, w) in marks.items():
            line[f"{f:.0%}: cold / warm"] = f"{c:.2f} / {w:.2f}"
            count[f] += ahead(c, w)
        line["warm's whole core-h"] = f"{totals(warm, w_cpus)['cpu_hours']:.4f}"
        line["warm's best"] = f"{totals(warm, w_cpus)['best']:.2f}"
        lines[s] = line
    table = pd.DataFrame(lines).T
    table.index.name = "sampler seed"
    print("best validation loss (lower is better) by the cold search's share of its core-hours:")
    print(markdown(table))
    print(
        "warm ahead (lower loss) at "
        + ", ".join(f"{f:.0%}: {count[f]} of {len(seeds)} seeds" for f in FRACTIONS)
        + " (100%: the cold search's whole cost)"
    )


def report_seeds(runs: dict, seeds: list[int]) -> None:
    print("\n== 2. one-seed against two-seed search: each winner re-trained with the seeds "
          "neither search trained on (train/seed + 2 on); test LL = mean test log-likelihood "
          "(higher is better), val = mean best validation loss")  # fmt: skip
    lines, better = {}, {"test LL": 0, "val": 0}
    for s in seeds:
        line, got = {}, {}
        for name, search in (("one-seed", f"cold-s{s}"), ("two-seed", f"two-s{s}")):
            rows, evals, cpus = runs[search]
            r = retrained(rows, evals, skip=2)
            got[name] = (mean(r["test_ll"]), mean(r["best_val_loss"]))
            line[f"{name} core-h"] = f"{totals(rows, cpus)['cpu_hours']:.4f}"
            line[f"{name}: n, test LL, val"] = f"{len(r)}, {got[name][0]:.2f}, {got[name][1]:.2f}"
        line["same winner"] = winner_config(runs[f"cold-s{s}"][0]) == winner_config(
            runs[f"two-s{s}"][0]
        )
        better["test LL"] += got["two-seed"][0] > got["one-seed"][0]
        better["val"] += got["two-seed"][1] < got["one-seed"][1]
        lines[s] = line
    table = pd.DataFrame(lines).T
    table.index.name = "sampler seed"
    print(markdown(table))
    print(
        f"two-seed winner better: by test LL in {better['test LL']} of {len(seeds)} seeds, "
        f"by validation loss in {better['val']} of {len(seeds)}"
    )
    one, two = (
        [totals(runs[f"{k}-s{s}"][0], runs[f"{k}-s{s}"][2])["cpu_hours"] for s in seeds]
        for k in ("cold", "two")
    )
    print(f"search core-h per seed: one-seed {spread(one)}, two-seed {spread(two)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="sampler seeds")
    p.add_argument("--trials", type=int, default=24, help="trials of each search but the pilot")
    p.add_argument("--max-epochs", type=int, default=10, help="their train/max_epochs")
    p.add_argument("--winner-seeds", type=int, default=4, help="of the one- and two-seed searches")
    p.add_argument("--storage-root", default=None, help="default: a new temporary folder")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--address", default=None, help="a Ray cluster to run on (e.g. auto)")
    p.add_argument("--analyse", action="store_true", help="only report on --storage-root")
    args = p.parse_args()
    if args.analyse and not args.storage_root:
        p.error("--analyse needs --storage-root")
    if args.winner_seeds < 3:
        p.error("--winner-seeds must be 3 or more: seeds + 2 on are the ones compared")
    args.storage_root = args.storage_root or tempfile.mkdtemp(prefix="warm_start_")
    print(f"{CELL}: pilot at the smoke budget; searches of {args.trials} trials of up to "
          f"{args.max_epochs} epochs, sampler seeds {args.seeds}; storage {args.storage_root}; "
          f"{os.cpu_count()} cores, load average {load()}")  # fmt: skip
    if not args.analyse:
        if "://" not in args.storage_root:
            Path(args.storage_root).mkdir(parents=True, exist_ok=True)
        logs = Path(args.storage_root if "://" not in args.storage_root else tempfile.mkdtemp())
        for search in searches(args.seeds):  # one after the other: each has the machine alone
            if ran_before(join(args.storage_root, search)):
                print(f"[{search}] already in {args.storage_root}: its rows are reused")
                continue
            run_sweep(args, search, logs / f"{search}.log")
    runs = {s: read(args.storage_root, s) for s in searches(args.seeds)}
    report_warm(runs, args.seeds)
    report_seeds(runs, args.seeds)
    print(f"\nload average at the end: {load()}")


if __name__ == "__main__":
    main()
