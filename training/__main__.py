"""Train one configuration from the command line and print its final metrics as one JSON line.

    python -m training --family vae --dataset fashion_mnist --set model/latent_dim=50 \
        --set train/max_epochs=5 --run-dir runs/vae --test-k 1000

Re-running with the same --run-dir resumes from its checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import models
from training import checkpoint
from training.config import Config, ConfigError, parse_override
from training.data import DatasetError, load_data
from training.evaluate import estimate_log_likelihood
from training.trainer import DivergedError, build_model, fit, resolve_device


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training", description=__doc__.splitlines()[0])
    p.add_argument("--family", required=True, help=f"one of {sorted(models.REGISTRY)}")
    p.add_argument("--dataset", default="fashion_mnist")
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
        help="folder for the checkpoint (resumed from when present)",
    )
    p.add_argument(
        "--test-k",
        type=int,
        default=0,
        help="importance samples for the test log-likelihood of the best model (0: skip)",
    )
    args = p.parse_args(argv)

    try:
        overrides = {"family": args.family, "data/dataset": args.dataset}
        overrides.update(parse_override(item) for item in args.set)
        cfg = Config.from_dict(overrides)
        device = resolve_device(cfg.train.device)
        data = load_data(cfg.data, device)
    except (ConfigError, DatasetError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="run-") as scratch:  # used when no --run-dir
        return run(cfg, data, args.run_dir or Path(scratch), args.test_k)


def run(cfg: Config, data, run_dir: Path, test_k: int) -> int:
    """Train (resuming from run_dir's checkpoint if any), then evaluate the best weights."""
    model = build_model(cfg, data.x_shape)
    ckpt_file = run_dir / checkpoint.CHECKPOINT_FILE
    resume = ckpt_file if ckpt_file.is_file() else None

    def report(metrics: dict, ckpt_dir: Path) -> None:
        print(
            json.dumps(
                {
                    "epoch": metrics["epoch"],
                    "train_loss": round(metrics["train_loss"], 3),
                    "val_loss": round(metrics["val_loss"], 3),
                }
            ),
            file=sys.stderr,
        )
        checkpoint.publish(ckpt_dir, ckpt_file)

    try:
        final = fit(model, data, cfg.train, report=report, resume=resume)
    except DivergedError as e:
        print(json.dumps({"status": "diverged", "reason": str(e), "config": cfg.to_dict()}))
        return 1
    out = {"status": "completed", **final, "config": cfg.to_dict()}
    if test_k > 0:  # the best-validation weights, never the last epoch's
        model.load_state_dict(checkpoint.load(ckpt_file)["best_model"])
        out.update(estimate_log_likelihood(model, data.test, test_k, seed=cfg.train.seed))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
