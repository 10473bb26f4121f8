"""Benchmark of our trainer against a conventional PyTorch loop and against the GEMM bound.

Model: the VLAE paper's 784-500-500-50 Gaussian VAE on centred Fashion-MNIST, batch 128, Adam 5e-4.
Measures, on the CPU:
  1. one epoch of ``training.trainer.fit`` (training loop, validation and checkpoint separately);
  2. one epoch of a conventional loop: torchvision FashionMNIST + ToTensor + DataLoader, same model;
  3. the GEMM bound of a training epoch: every matmul of one forward+backward step timed alone
     with torch.mm at its exact shape and transposes, summed, times the steps per epoch;
  4. ``test_log_likelihood`` at k importance samples and its GEMM bound (encoder once per image,
     decoder on k samples per image, at the chunk shapes the estimator actually uses).

Run:  python benchmarks/trainer.py [--epochs 1] [--threads N] [--k 5000] [--eval-images 200]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, Subset

import models
import training.data
from models.base import DEFAULT_MAX_ROWS
from training.config import Config, TrainConfig
from training.evaluate import elbo_terms, test_log_likelihood
from training.trainer import fit

BATCH, LR = 128, 5e-4
MODEL = {"latent_dim": 50, "hidden_dim": 500, "likelihood": "gaussian"}
GOALS = {"ours/bound": 1.3, "conventional/ours": 2.0, "test LL/bound": 1.5}


def median_time(fn, budget: float = 0.5, warmup: int = 3, max_repeats: int = 200) -> float:
    """Median wall time of fn() after warm-up; repeats fit in ~budget seconds (at least 5)."""
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    fn()
    repeats = int(min(max_repeats, max(5, budget / max(time.perf_counter() - start, 1e-9))))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


_GEMM_CACHE: dict[tuple, float] = {}


def gemm_time(m: int, k: int, n: int, transposes: str) -> float:
    """Median time of torch.mm of [m, k] x [k, n] float32; 'nt' = B stored as [n, k] (x W^T),
    'tn' = A stored as [k, m] (dY^T X), 'nn' = both row-major (dY W). Cached per shape."""
    key = (m, k, n, transposes)
    if key not in _GEMM_CACHE:
        a = torch.randn(k, m).t() if transposes[0] == "t" else torch.randn(m, k)
        b = torch.randn(n, k).t() if transposes[1] == "t" else torch.randn(k, n)
        _GEMM_CACHE[key] = median_time(lambda: torch.mm(a, b))
    return _GEMM_CACHE[key]


def linears(model: nn.Module) -> list[nn.Linear]:
    """The model's Linear layers in forward order: encoder, q_head, decoder."""
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def training_step_gemms(model: nn.Module, batch: int) -> list[tuple[int, int, int, str]]:
    """(m, k, n, transposes) of every matmul of one training step; no dX for the first layer."""
    gemms = []
    for i, lin in enumerate(linears(model)):
        n_in, n_out = lin.in_features, lin.out_features
        gemms.append((batch, n_in, n_out, "nt"))  # forward   Y  = X W^T      [B, out]
        if i > 0:
            gemms.append((batch, n_out, n_in, "nn"))  # backward dX = dY W      [B, in]
        gemms.append((n_out, batch, n_in, "tn"))  # backward  dW = dY^T X    [out, in]
    return gemms


def test_ll_gemms(model: nn.Module, n_images: int, k: int) -> list[tuple[int, int, int, str]]:
    """Forward matmuls of test_log_likelihood: encoder once per image batch, decoder per chunk."""
    encoder, decoder = linears(model.encoder) + [model.q_head], linears(model.decoder)
    per_batch = max(1, DEFAULT_MAX_ROWS // k)  # as training.evaluate.test_log_likelihood
    gemms = []
    for start in range(0, n_images, per_batch):
        b = min(per_batch, n_images - start)
        chunk = max(1, DEFAULT_MAX_ROWS // b)  # as LatentVariableModel.log_likelihood
        gemms += [(b, lin.in_features, lin.out_features, "nt") for lin in encoder]
        for done in range(0, k, chunk):
            rows = min(chunk, k - done) * b
            gemms += [(rows, lin.in_features, lin.out_features, "nt") for lin in decoder]
    return gemms


def gemm_bound(gemms: list[tuple[int, int, int, str]]) -> tuple[float, float]:
    """(seconds, FLOPs) of a list of matmuls, each timed alone."""
    return sum(gemm_time(*g) for g in gemms), sum(2.0 * m * k * n for m, k, n, _ in gemms)


def fresh_model(data: training.data.Data, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return models.build("vae", MODEL, data.x_shape)


def time_ours(data: training.data.Data, epochs: int) -> dict:
    """fit() for ``epochs``; per-epoch wall time, fit's epoch_seconds, validation alone."""
    model = fresh_model(data)
    cfg = TrainConfig(lr=LR, batch_size=BATCH, max_epochs=epochs, device="cpu")
    marks, seen = [time.perf_counter()], []

    def report(metrics, _checkpoint_dir):
        seen.append(metrics)
        marks.append(time.perf_counter())

    fit(model, data, cfg, report=report)
    val = median_time(lambda: elbo_terms(model, data.val, cfg.eval_batch_size), warmup=1)
    total = (marks[-1] - marks[0]) / epochs
    epoch = statistics.mean(m["epoch_seconds"] for m in seen)
    return {"model": model, "total": total, "epoch": epoch, "val": val, "train": epoch - val,
            "train_loss": seen[-1]["train_loss"], "val_loss": seen[-1]["val_loss"]}


def time_conventional(data: training.data.Data, n_train: int, epochs: int) -> dict:
    """torchvision dataset + ToTensor + DataLoader loop on a fresh model of the same architecture."""
    spec = training.data.DATASETS["fashion_mnist"]
    root = training.data._torchvision_root(spec, training.data.candidate_roots(""))
    transform = torchvision.transforms.ToTensor()
    dataset = torchvision.datasets.FashionMNIST(str(root), train=True, transform=transform)
    loader = DataLoader(Subset(dataset, range(n_train)), batch_size=BATCH, shuffle=True)
    model = fresh_model(data)
    model.initialise(data.train)  # as fit() does: the Gaussian variance from the training data
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    start, loss_sum = time.perf_counter(), 0.0
    for _ in range(epochs):
        for x, _labels in loader:
            terms = model(x - data.pixel_mean)
            loss = -(terms.log_px_z - terms.kl).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += loss.item() * x.shape[0]
    return {"train": (time.perf_counter() - start) / epochs, "train_loss": loss_sum / (n_train * epochs)}


def warm_up(data: training.data.Data, steps: int = 20) -> None:
    """A few untimed training steps so that neither timed loop pays first-call costs."""
    model = fresh_model(data)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    for i in range(steps):
        terms = model(data.train[i * BATCH : (i + 1) * BATCH])
        opt.zero_grad()
        (-(terms.log_px_z - terms.kl).mean()).backward()
        opt.step()


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    return f"{names[0]} x {len(names)}" if names else "unknown"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=1, help="epochs timed per loop (mean reported)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--k", type=int, default=5000, help="importance samples of the test log-likelihood")
    p.add_argument("--eval-images", type=int, default=200, help="test images for the log-likelihood")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU: {cpu_model()}")
    cfg = Config.from_dict({"family": "vae", "data/dataset": "fashion_mnist"})
    data = training.data.load_data(cfg.data, "cpu")
    n_train, steps = data.train.shape[0], math.ceil(data.train.shape[0] / BATCH)
    print(f"data: train {tuple(data.train.shape)}, val {tuple(data.val.shape)}; "
          f"{steps} steps of {BATCH} per epoch; model {MODEL}\n")
    warm_up(data)

    ours = time_ours(data, args.epochs)
    print(f"[ours] fit(): {ours['total']:.2f} s/epoch wall (incl. checkpoint), "
          f"epoch_seconds {ours['epoch']:.2f} s = training loop {ours['train']:.2f} s "
          f"+ validation {ours['val']:.2f} s (elbo_terms on {data.val.shape[0]} images, timed "
          f"alone after fit and subtracted); train loss {ours['train_loss']:.1f}, "
          f"val loss {ours['val_loss']:.1f}")

    conv = time_conventional(data, n_train, args.epochs)
    print(f"[conventional] DataLoader loop over Subset(first {n_train} of 60000): "
          f"{conv['train']:.2f} s/epoch; train loss {conv['train_loss']:.1f}")

    gemms = training_step_gemms(ours["model"], BATCH)
    step_s, step_flops = gemm_bound(gemms)
    bound = steps * step_s
    print(f"[GEMM bound, training] {len(gemms)} matmuls/step: {step_s * 1e3:.2f} ms/step x {steps} "
          f"steps = {bound:.2f} s/epoch; {steps * step_flops / 1e9:.0f} GFLOP/epoch at "
          f"{step_flops / step_s / 1e9:.1f} GFLOP/s")
    for m, k, n, t in gemms:
        print(f"    mm {t} [{m:4d} x {k:4d}] @ [{k:4d} x {n:4d}]  {gemm_time(m, k, n, t) * 1e6:8.1f} us")

    n_eval = min(args.eval_images, data.test.shape[0])
    ll = test_log_likelihood(ours["model"], data.test[:n_eval], k=args.k)
    ll_s, ll_flops = gemm_bound(test_ll_gemms(ours["model"], n_eval, args.k))
    print(f"\n[test LL] k={args.k}, {n_eval} images: {ll['seconds']:.2f} s = "
          f"{n_eval / ll['seconds']:.1f} images/s (log p(x) {ll['test_log_likelihood']:.1f} "
          f"+- {ll['test_log_likelihood_sem']:.1f}); GEMM bound {ll_s:.2f} s "
          f"({ll_flops / 1e9:.0f} GFLOP at {ll_flops / ll_s / 1e9:.1f} GFLOP/s)")

    summary(ours, conv, bound, ll["seconds"], ll_s)
    assert "ray" not in sys.modules, "the benchmark must not import Ray"


def summary(ours: dict, conv: dict, bound: float, ll_s: float, ll_bound: float) -> None:
    ratios = {"ours/bound": ours["train"] / bound, "conventional/ours": conv["train"] / ours["train"],
              "test LL/bound": ll_s / ll_bound}
    print(f"\n{'measure':<28}{'seconds':>9}")
    for name, s in [("ours: training loop", ours["train"]), ("ours: fit() wall/epoch", ours["total"]),
                    ("conventional loop", conv["train"]), ("GEMM bound (training)", bound),
                    ("test LL", ll_s), ("GEMM bound (test LL)", ll_bound)]:
        print(f"{name:<28}{s:>9.2f}")
    print(f"\n{'ratio':<28}{'value':>9}{'goal':>9}  ok")
    for name, value in ratios.items():
        goal = GOALS[name]
        ok = value >= goal if name == "conventional/ours" else value <= goal
        print(f"{name:<28}{value:>9.2f}{('>=' if name == 'conventional/ours' else '<=') + str(goal):>9}"
              f"  {'yes' if ok else 'NO'}")


if __name__ == "__main__":
    main()
