"""Train one configuration from the command line and print its final metrics as one JSON line.

    python -m training --family vae --dataset fashion_mnist --set model/latent_dim=50 \
        --set train/max_epochs=5 --run-dir runs/vae --test-k 1000

A --run-dir belongs to one config (recorded in its config.json): re-running with the same config
resumes from its checkpoint (train/max_epochs may be raised), another config is refused unless
--restart, which moves the old files into <run-dir>/previous-<time>/ and starts afresh. Bad input
is one ``error:`` line on stderr and exit code 2.

    python -m training replay ...

has moved: it says so with the command to run now, ``python sweeps/replay.py`` with the same
arguments (a stored trial of a sweep trained again and its curve compared with the stored one:
sweeps/engine/replay.py), and exits 2.

    python -m training data --datasets NAME [NAME ...] [--root DIR] [--mirror URL] | --all | --list

fetches the papers' datasets into a data root, each file verified against its published checksums
(training/fetch_cli.py).

    python -m training sample --checkpoint DIR --n 64 --out grid.png
    python -m training evaluate --checkpoint DIR --k 1000
    python -m training export --checkpoint CKPT --out DIR

draw samples from, score on the test set, or write, an exported model (training/exported.py).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

import models
from training import checkpoint, memory, progress
from training.config import Config, ConfigError, flatten, parse_override
from training.data import DatasetError, load_data
from training.evaluate import estimate_log_likelihood
from training.trainer import DivergedError, build_model, fit, resolve_device

REPLAY = "sweeps/replay.py"  # where `python -m training replay` moved
RUN_DIR_FIX = "use another --run-dir, or --restart to start afresh in it (its files are kept aside)"


class UsageError(ValueError):
    """Bad command-line flags (argparse's complaint, or flags that contradict each other)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one "error:" line from main(), not usage text + SystemExit
        raise UsageError(f"{message} (see python -m training --help)")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m training", description=__doc__.splitlines()[0])
    p.add_argument("--family", required=True, help=f"one of {sorted(models.REGISTRY)}")
    p.add_argument("--dataset", default=None, help="data/dataset (default fashion_mnist)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override with a namespaced key, e.g. train/lr=1e-3 (repeatable)",
    )
    p.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="folder of this config's checkpoint (resumed from when present)",
    )
    p.add_argument(
        "--restart",
        action="store_true",
        help="start afresh in --run-dir, moving its old files into <run-dir>/previous-<time>/",
    )
    p.add_argument(
        "--test-k",
        type=int,
        default=0,
        help="importance samples for the test log-likelihood of the best model (0: skip)",
    )
    return p


def overrides(args: argparse.Namespace) -> dict:
    """The flags as one flat config dict; two flags that set one key differently are an error."""
    given = [(f"--family {args.family}", "family", args.family)]
    if args.dataset is not None:
        given.append((f"--dataset {args.dataset}", "data/dataset", args.dataset))
    for item in args.set:
        key, value = parse_override(item)
        given += [(f"--set {item}", k, v) for k, v in flatten({key: value}).items()]
    out, source = {"data/dataset": "fashion_mnist"}, {}
    for flag, key, value in given:
        if key in source and out[key] != value:
            raise UsageError(f"{source[key]} and {flag} set {key} differently; keep one")
        out[key], source[key] = value, flag
    return out


def check_flags(args: argparse.Namespace) -> None:
    """--test-k is not negative; --run-dir is a folder or can be created (before any training)."""
    if args.test_k < 0:
        raise UsageError(f"--test-k must be >= 0 (0 skips the test evaluation), got {args.test_k}")
    run_dir = args.run_dir
    if run_dir is None:
        return
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--run-dir {run_dir} is a file, not a folder")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--run-dir {run_dir} cannot be created ({e.strerror})") from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["replay"]:  # moved: the replay reads the storage, as sweeps does
        print(f"error: moved: {shlex.join(['python', REPLAY, *argv[1:]])}", file=sys.stderr)
        return 2
    if argv[:1] == ["data"]:  # python -m training data ...: fetch and verify datasets
        from training import fetch_cli

        return fetch_cli.main(argv[1:])
    if argv[:1] and argv[0] in ("sample", "evaluate", "export"):  # an exported model's commands
        from training import exported

        return exported.main(argv)
    try:
        args = parser().parse_args(argv)
        cfg = Config.from_dict(overrides(args))
        device = resolve_device(cfg.train.device)
        memory.check_fits(cfg, None, device)  # the model builds, and fits, before any allocation
        data = load_data(cfg.data, device)
        check_flags(args)  # may create --run-dir: after every check of the config
        if args.run_dir is not None and not args.restart:
            checkpoint.check_run_dir(args.run_dir, cfg.to_dict())
    except checkpoint.RunDirError as e:
        return error(f"{e}; {RUN_DIR_FIX}")
    except (UsageError, ConfigError, DatasetError, RuntimeError) as e:
        return error(str(e))
    if args.restart and args.run_dir is not None:
        moved = checkpoint.move_aside(args.run_dir)
        if moved is not None:
            print(f"--restart: the previous run's files are now in {moved}", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="run-") as scratch:  # used when no --run-dir
        return run(cfg, data, args.run_dir or Path(scratch), args.test_k)


def error(message: str) -> int:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def run(cfg: Config, data, run_dir: Path, test_k: int) -> int:
    """Train (resuming from run_dir's checkpoint if any), then evaluate the best weights."""
    model = build_model(cfg, data.x_shape)
    try:
        resume = checkpoint.resume_point(run_dir, model)  # checked: readable, fits the model
    except checkpoint.RunDirError as e:
        return error(f"{e}; --restart moves it aside and starts afresh (or use another --run-dir)")
    checkpoint.record_config(run_dir, cfg.to_dict())
    ckpt_file = run_dir / checkpoint.CHECKPOINT_FILE
    on_epoch = progress.EpochLines(cfg.train.max_epochs)  # a line on stderr per epoch, with an ETA

    def report(metrics: dict, ckpt_dir: Path) -> None:
        checkpoint.publish(ckpt_dir, ckpt_file)
        on_epoch(metrics)

    try:
        final = fit(model, data, cfg.train, report=report, resume=resume)
    except DivergedError as e:
        print(json.dumps({"status": "diverged", "reason": str(e), "config": cfg.to_dict()}))
        return 1
    out = {"status": "completed", **final, "config": cfg.to_dict()}
    if test_k > 0:  # the best-validation weights, unless train/test_last_epoch
        saved = checkpoint.load(ckpt_file)
        model.load_state_dict(checkpoint.test_weights(saved, cfg.train.test_last_epoch))
        with progress.meter(f"test log-likelihood, k={test_k}") as shown:  # on stderr
            ll = estimate_log_likelihood(
                model, data.test, test_k, seed=cfg.train.seed, progress=shown
            )
        out.update(ll)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
