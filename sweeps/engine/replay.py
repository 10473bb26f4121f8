"""Replay a stored trial: rebuild it from its stored config, train it again, compare the curves.

    python sweeps/replay.py --storage DIR --trial ID [--epochs N]
    python sweeps/replay.py --storage DIR --list

The trial's row in the Parquet store (``trials``) holds the exact flat config that ran and the
hardware it ran on; its ``curves`` rows hold each epoch's metrics. The replay trains the same
number of epochs as the trial (a pruned trial's too: the epochs stop there, train/max_epochs is
left as it ran, since a schedule may depend on it), with torch's thread count set to the trial's,
and compares every metric of every epoch bit for bit. On a CPU, the same hardware and thread count
give the same curve; on a GPU they need not (docs/running-sweeps.md#replaying-a-trial).

Exit code: 0 when every metric of every epoch is identical, 1 when one differs (or the replay
diverged or stopped where the trial did not), 2 on bad input (one ``error:`` line).

It reads the storage through results and trains through training, so it lies in sweeps, the
package that imports both (tests/unit/test_layering.py); sweeps/replay.py is its command.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import re
import struct
import sys
import time
from importlib import metadata
from typing import TYPE_CHECKING

import pandas as pd

from results import store
from results.selection import winners

if TYPE_CHECKING:
    from training.config import Config
# torch and training are imported where a replay trains: --help and --list stay light

COMPARED = ("train_loss", "val_loss", "val_log_px_z", "val_kl", "beta", "lr", "skipped_steps")
"""The curve's columns a replay must reproduce (not its times, nor resumed_from)."""
NAMED = 12
"""At most this many trial ids in an error; beyond, the cells and --list."""
CPU_HARDWARE = re.compile(r"^(?P<host>.*): cpu (?P<machine>\S+) x(?P<threads>\d+) threads$")
"""sweeps.engine.trial.hardware on a CPU, e.g. ``node1: cpu x86_64 x1 threads``."""


class ReplayError(ValueError):
    """Bad input: the message is the whole ``error:`` line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise ReplayError(f"{message} (see python sweeps/replay.py --help)")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python sweeps/replay.py", description=__doc__.splitlines()[0])
    p.add_argument("--storage", required=True, help="the sweep's --storage (path or URI)")
    p.add_argument("--trial", default=None, help="the trial's id (the trials table's trial_id)")
    p.add_argument("--epochs", type=int, default=None, help="replay only the first N epochs")
    p.add_argument("--list", action="store_true", help="list the stored trials and exit")
    return p


def read_table(storage: str, table: str, sweep: str | None = None) -> pd.DataFrame:
    """A table's rows, newest per key, a damaged part skipped with a warning naming it."""
    frames, damaged = store.read_parts(storage, store.part_paths(storage, table, sweep))
    for path, why in damaged.items():
        print(f"warning: skipped the damaged part {path} ({why})", file=sys.stderr)
    return store.newest(frames, table)


def trials_of(storage: str) -> pd.DataFrame:
    if not store.exists(storage):
        raise ReplayError(f"no sweep under {storage}")
    trials = read_table(storage, "trials")
    if trials.empty:
        cells = ", ".join(store.sweeps(storage)) or "none"
        raise ReplayError(f"no trial has ended under {storage} yet (its cells: {cells})")
    return trials


def find_trial(trials: pd.DataFrame, trial_id: str, storage: str) -> pd.Series:
    """The trial's row, or a ReplayError naming the choices (or the cells, when there are many)."""
    match = trials[trials["trial_id"] == trial_id]
    if not match.empty:
        return match.iloc[-1]
    ids = sorted(trials["trial_id"])
    if len(ids) <= NAMED:
        choices = f"trials: {', '.join(ids)}"
    else:
        cells = trials["sweep"].value_counts().sort_index()
        named = ", ".join(f"{c} ({n})" for c, n in cells.head(NAMED // 2).items())
        named += ", ..." if len(cells) > NAMED // 2 else ""
        choices = (
            f"trials: {', '.join(ids[:NAMED])}, ... ({len(ids)} in all) in {len(cells)} cells: "
            f"{named}; "
            f"python sweeps/replay.py --storage {storage} --list lists them"
        )
    raise ReplayError(f"no trial {trial_id!r} under {storage}; {choices}")


def list_trials(trials: pd.DataFrame) -> None:
    """The stored trials, a cell's winner (results.selection.winners: the one its table shows and
    ``python -m results export`` writes) marked "*" in the column ``winner``."""
    best = {t for p in set(trials["paper"]) for t in winners(trials, p)["trial_id"]}
    shown = trials.assign(winner=["*" if t in best else "" for t in trials["trial_id"]])
    cols = ["winner"] + [
        c for c in ("sweep", "trial_id", "status", "epochs", "best_val_loss") if c in trials
    ]
    print(shown.sort_values(["sweep", "trial_id"])[cols].to_string(index=False))


def stored_curve(storage: str, row: pd.Series) -> pd.DataFrame:
    curves = read_table(storage, "curves", row["sweep"])
    curve = curves[curves["trial_id"] == row["trial_id"]] if not curves.empty else curves
    if curve.empty and row["status"] == "errored" and not row["epochs"]:
        raise ReplayError(
            f"trial {row['trial_id']} errored before its first epoch "
            f"({row['reason']}): nothing to replay"
        )
    if curve.empty:
        raise ReplayError(
            f"trial {row['trial_id']} has no stored curve under {storage} (cell {row['sweep']}); "
            f"python -m results check --storage {storage} --repair rebuilds it from its checkpoint"
        )
    return curve.sort_values("epoch").set_index("epoch")


def replay_config(row: pd.Series) -> tuple[Config, int | None]:
    """The stored config on the device the trial ran on (the CPU when that device is not here),
    and the trial's torch thread count (None when not recorded: a GPU trial, an old row)."""
    import torch

    from training.config import Config, ConfigError

    try:
        config = json.loads(row["config_json"])
    except (TypeError, ValueError):
        config = None
    if not isinstance(config, dict):
        raise ReplayError(
            f"the stored config of trial {row['trial_id']} is not a JSON object (its row in "
            f"cell {row['sweep']} is damaged): python -m results check --repair rebuilds the row "
            "from Tune's records"
        )
    ran = CPU_HARDWARE.match(str(row.get("hardware", "")))
    hardware = str(row.get("hardware", "")) or "not recorded"
    device = config.get("train/device", "auto")
    if ran is not None and device != "cpu":
        print(f"the trial ran on the CPU ({hardware}): replaying on the CPU")
        config["train/device"] = "cpu"
    elif ran is None and device != "cpu" and not torch.cuda.is_available():
        print(
            f"the trial ran with train/device={device} ({hardware}); this machine has no CUDA "
            "device: replaying on the CPU, which cannot be bit-identical to a GPU run"
        )
        config["train/device"] = "cpu"
    here = (platform.node(), platform.machine())
    if ran is not None and (ran["host"], ran["machine"]) != here:
        print(
            f"the trial ran on {ran['host']} ({ran['machine']}), this is {here[0]} ({here[1]}): "
            "another CPU may round differently"
        )
    versions = row.get("versions")  # the installed distributions' versions (.provenance)
    ran_torch = json.loads(versions).get("torch") if isinstance(versions, str) else None
    here_torch = metadata.version("torch")
    if ran_torch is not None and ran_torch != here_torch:
        print(f"the trial ran torch {ran_torch}, this is {here_torch}: kernels may differ")
    try:
        cfg = Config.from_dict(config)
    except ConfigError as e:
        raise ReplayError(
            f"the stored config of trial {row['trial_id']} no longer parses: {e}"
        ) from None
    return cfg, None if ran is None else int(ran["threads"])


def train(cfg: Config, n_epochs: int, seeds: int = 1) -> tuple[list[dict], str]:
    """The first ``n_epochs`` epochs' metrics of the config trained afresh, as a trial trains it
    (sweeps.engine.trial.setup: data, build_model, then training.trainer.epochs, or with
    ``seeds`` > 1 training.lockstep.epochs over that many seeds), and why it ended early (""
    when it ran them all)."""
    from training import lockstep
    from training.data import load_data
    from training.trainer import DivergedError, build_model, epochs, resolve_device

    data = load_data(cfg.data, resolve_device(cfg.train.device))
    model = build_model(cfg, data.x_shape).to(data.train.device)
    if seeds > 1:  # a trial of --search-seeds: its curve is the seeds' mean
        models = [model, *lockstep.more_models(cfg, data.x_shape, seeds)]
        run = lockstep.epochs(models, data, cfg.train)
    else:
        run = epochs(model, data, cfg.train)
    history = []
    try:
        for metrics, _ in run:
            history.append(metrics)
            print(
                f"  epoch {metrics['epoch']} trained ({metrics['epoch_seconds']:.1f} s)",
                file=sys.stderr,
                flush=True,
            )
            if len(history) == n_epochs:
                break
    except DivergedError as e:
        return history, f"diverged: {e}"
    finally:
        run.close()
    if len(history) < n_epochs:
        return history, f"stopped after epoch {len(history)} ({history[-1]['stop_reason']})"
    return history, ""


def same(a: float, b: float) -> bool:
    """Bit for bit (any two NaNs count as the same: a NaN's payload is not a result)."""
    return (math.isnan(a) and math.isnan(b)) or struct.pack("<d", a) == struct.pack("<d", b)


def differences(curve: pd.DataFrame, history: list[dict]) -> list[tuple[float, str, int, float]]:
    """(|difference|, metric, epoch, relative difference) of every metric that is not identical."""
    out = []
    keys = [k for k in COMPARED if curve[k].notna().any()]  # all NaN: not recorded (migrate)
    for m in history:
        for key in keys:
            a, b = float(curve.loc[m["epoch"], key]), float(m[key])
            if not same(a, b):
                diff = abs(a - b) if math.isfinite(a - b) else math.inf
                out.append((diff, key, m["epoch"], diff / abs(a) if a else math.inf))
    return out


def report(curve: pd.DataFrame, history: list[dict], ended: str, stored_epochs: int) -> int:
    print(f"{'epoch':>5}  {'stored val_loss':>22}  {'replayed val_loss':>22}  {'difference':>11}")
    for m in history:
        a, b = float(curve.loc[m["epoch"], "val_loss"]), m["val_loss"]
        print(f"{m['epoch']:>5}  {a:>22.15g}  {b:>22.15g}  {b - a:>11.3g}")
    found = differences(curve, history)
    if ended:
        print(f"the replay {ended}; the stored trial ran {stored_epochs} epochs")
    if not found and not ended:
        print("identical: every metric of every epoch equals the stored curve bit for bit")
        return 0
    if found:
        diff, key, epoch, rel = max(found, key=lambda f: (f[0], -f[2]))
        print(
            f"largest difference: {key} at epoch {epoch}: {diff:.6g} (relative {rel:.3g}); "
            f"{len(found)} {'value differs' if len(found) == 1 else 'values differ'}, the first "
            f"at epoch {min(f[2] for f in found)}"
        )
    return 1


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
        if args.list == (args.trial is not None):
            raise ReplayError("give --trial ID, or --list to see the trials")
        if args.epochs is not None and args.epochs < 1:
            raise ReplayError(f"--epochs must be >= 1, got {args.epochs}")
        trials = trials_of(args.storage)
        if args.list:
            list_trials(trials)
            return 0
        row = find_trial(trials, args.trial, args.storage)
        curve = stored_curve(args.storage, row)
        stored_epochs = int(max(row["epochs"], curve.index.max()))
        n_epochs = min(stored_epochs, args.epochs or stored_epochs)
        missing = sorted(set(range(1, n_epochs + 1)) - set(curve.index))
        if missing:
            raise ReplayError(
                f"the stored curve of trial {row['trial_id']} lacks epochs "
                f"{missing}; python -m results check --repair may rebuild it"
            )
        cfg, threads = replay_config(row)
    except (ReplayError, store.StorageError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    import torch

    from training.data import DatasetError

    print(
        f"trial {row['trial_id']} of {row['sweep']}: {row['status']}, {stored_epochs} epochs; "
        f"replaying {n_epochs} on {cfg.train.device}"
        + (f", {row['search_seeds']} seeds" if row.get("search_seeds", 1) > 1 else "")
    )
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
        print(f"torch threads set to {threads}, as the trial ran (this process had {before})")
    else:
        print(f"the trial's thread count is not recorded: torch keeps its {before} threads")
    start = time.perf_counter()
    try:
        history, ended = train(cfg, n_epochs, int(row.get("search_seeds", 1)))
    except (DatasetError, RuntimeError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    finally:
        torch.set_num_threads(before)
    print(f"replayed {len(history)} epochs in {time.perf_counter() - start:.1f} s")
    return report(curve, history, ended, stored_epochs)
