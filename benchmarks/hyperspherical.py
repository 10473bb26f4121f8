"""One training epoch of the S-VAE against the N-VAE on the same architecture, same run.

The issue's goal: an S-VAE epoch costs at most 1.5x an N-VAE epoch (MLP 784-256-128, d = 10,
dynamically binarised Fashion-MNIST, Adam 1e-3). Both run through ``training.trainer.fit`` with
``max_epochs=1``; epochs alternate between the two models so a change in machine load hits both.

Run:  python benchmarks/hyperspherical.py [--batch 64] [--repeats 3] [--threads 2] [--d 10]
"""

from __future__ import annotations

import argparse
import os
import statistics

import torch

from training.config import Config
from training.data import load_data
from training.trainer import build_model, fit


def epoch_seconds(family: str, d: int, batch: int, data) -> float:
    cfg = Config.from_dict(
        {
            "family": family,
            "data/dataset": "fashion_mnist",
            "data/binarize": True,
            "model/latent_dim": d,
            "train/batch_size": batch,
            "train/lr": 1e-3,
            "train/max_epochs": 1,
        }  # fmt: skip
    )
    model = build_model(cfg, data.x_shape)
    seen = []
    fit(model, data, cfg.train, report=lambda metrics, _: seen.append(metrics))
    return seen[-1]["epoch_seconds"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--d", type=int, default=10)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = Config.from_dict({"family": "svae", "data/dataset": "fashion_mnist",
                            "data/binarize": True})  # fmt: skip
    data = load_data(cfg.data, torch.device("cpu"))
    load = os.getloadavg()[0]
    print(f"threads {args.threads}, batch {args.batch}, d = {args.d}, "
          f"{data.train.shape[0]} training images, load average {load:.2f}")  # fmt: skip
    times: dict[str, list[float]] = {"nvae": [], "svae": []}
    for _ in range(args.repeats):
        for family in times:
            times[family].append(epoch_seconds(family, args.d, args.batch, data))
    for family, label in (("nvae", "N-VAE"), ("svae", "S-VAE")):
        runs = [round(t, 2) for t in times[family]]
        print(f"{label} epoch (incl. validation): {statistics.median(runs):.2f} s  (all: {runs})")
    ratio = statistics.median(times["svae"]) / statistics.median(times["nvae"])
    print(f"S-VAE / N-VAE: {ratio:.2f}  (goal <= 1.5)")


if __name__ == "__main__":
    main()
