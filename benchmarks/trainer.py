"""Benchmark of our trainer against a conventional PyTorch loop and against the GEMM bound.

Model: the VLAE paper's 784-500-500-50 Gaussian VAE on centred Fashion-MNIST, batch 128, Adam 5e-4.
Measures, on the CPU:
  1. one epoch of ``training.trainer.fit``: fit's own epoch_seconds, minus validation
     (``elbo_terms`` timed alone afterwards) = the training loop; wall time incl. the checkpoint;
  2. one epoch of a conventional loop: torchvision FashionMNIST + ToTensor + DataLoader, same model;
  3. the GEMM bound of a training epoch: every matmul of one forward+backward step timed alone
     with torch.mm at its exact shape and transposes, summed, times the steps per epoch;
  4. the importance-sampled test log-likelihood (``estimate_log_likelihood``) at k samples and its
     GEMM bound (encoder once per image, decoder on k samples per image, at the estimator's chunks).

Run:  python benchmarks/trainer.py [--epochs 1] [--threads N] [--k 5000] [--eval-images 200]
Timings are wall-clock: other jobs on the machine inflate them (the load average is printed).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, Subset

import models
import training.data
import training.files
from models.base import DEFAULT_MAX_ROWS
from training.config import Config, TrainConfig
from training.data import Data
from training.evaluate import elbo_terms, estimate_log_likelihood
from training.trainer import fit

BATCH, LR = 128, 5e-4
MODEL = {"latent_dim": 50, "hidden_dim": 500, "likelihood": "gaussian"}
Gemm = tuple[int, int, int, str]  # [m, k] @ [k, n]; transposes as in gemm_time


def median_time(fn, budget: float = 0.5, warmup: int = 3, max_repeats: int = 200) -> float:
    """Median wall time of fn() after warm-up; as many repeats as fit in ~budget s (at least 5)."""
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


_GEMM_CACHE: dict[Gemm, float] = {}


def gemm_operands(m: int, k: int, n: int, transposes: str) -> tuple[torch.Tensor, ...]:
    """Float32 operands of [m, k] @ [k, n] and a preallocated output. 'nt': the right operand
    is W^T of a row-major [n, k] W (x W^T); 'tn': the left one is dY^T; 'nn': both plain."""
    a = torch.randn(k, m).t() if transposes[0] == "t" else torch.randn(m, k)
    b = torch.randn(n, k).t() if transposes[1] == "t" else torch.randn(k, n)
    return a, b, torch.empty(m, n)


def gemm_time(*gemm) -> float:
    """Median time of one torch.mm alone (operands hot in cache; allocation of the result,
    which page-faults for big outputs, excluded: out= is preallocated). Cached per shape."""
    if gemm not in _GEMM_CACHE:
        a, b, out = gemm_operands(*gemm)
        _GEMM_CACHE[gemm] = median_time(lambda: torch.mm(a, b, out=out))
    return _GEMM_CACHE[gemm]


def gemm_bound(gemms: list[Gemm]) -> tuple[float, float]:
    """(seconds, FLOPs) of a list of matmuls, each timed alone."""
    return sum(gemm_time(*g) for g in gemms), sum(2.0 * m * k * n for m, k, n, _ in gemms)


def gemm_sequence_time(gemms: list[Gemm]) -> float:
    """Median time of the matmuls back to back, each with its own operands (as in a real step,
    where the 5 MB of weights do not all stay in the 1-2 MB L2 cache)."""
    ops = [gemm_operands(*g) for g in gemms]
    return median_time(lambda: [torch.mm(a, b, out=out) for a, b, out in ops], budget=1.0)


def linears(module: nn.Module) -> list[nn.Linear]:
    """The Linear layers in forward order (for the VAE: encoder, q_head, decoder)."""
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def training_step_gemms(model: nn.Module, batch: int) -> list[Gemm]:
    """Every matmul of one training step; no dX for the first layer (the data needs no grad)."""
    gemms = []
    for i, lin in enumerate(linears(model)):
        n_in, n_out = lin.in_features, lin.out_features
        gemms.append((batch, n_in, n_out, "nt"))  # forward  Y  = X W^T  [B, out]
        if i > 0:
            gemms.append((batch, n_out, n_in, "nn"))  # dX = dY W    [B, in]
        gemms.append((n_out, batch, n_in, "tn"))  # dW = dY^T X  [out, in]
    return gemms


def loglik_gemms(model: nn.Module, n_images: int, k: int) -> list[Gemm]:
    """Forward matmuls of estimate_log_likelihood: encoder per image batch, decoder per chunk."""
    encoder, decoder = linears(model.encoder) + [model.q_head], linears(model.decoder)
    per_batch = max(1, DEFAULT_MAX_ROWS // k)  # as training.evaluate.estimate_log_likelihood
    gemms = []
    for start in range(0, n_images, per_batch):
        b = min(per_batch, n_images - start)
        chunk = max(1, DEFAULT_MAX_ROWS // b)  # as LatentVariableModel.log_likelihood
        gemms += [(b, lin.in_features, lin.out_features, "nt") for lin in encoder]
        for done in range(0, k, chunk):
            rows = min(chunk, k - done) * b
            gemms += [(rows, lin.in_features, lin.out_features, "nt") for lin in decoder]
    return gemms


def fresh_model(data: Data, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return models.build("vae", MODEL, data.x_shape)


def warm_up(data: Data, steps: int = 20) -> None:
    """A few untimed training steps so that neither timed loop pays first-call costs."""
    model = fresh_model(data)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    for i in range(steps):
        terms = model(data.train[i * BATCH : (i + 1) * BATCH])
        opt.zero_grad()
        (-(terms.log_px_z - terms.kl).mean()).backward()
        opt.step()


def time_ours(data: Data, epochs: int) -> dict:
    """fit() for ``epochs``: mean wall time per epoch, fit's epoch_seconds, validation alone."""
    model = fresh_model(data)
    cfg = TrainConfig(lr=LR, batch_size=BATCH, max_epochs=epochs, device="cpu")
    marks, seen = [time.perf_counter()], []

    def report(metrics, _checkpoint_dir):
        seen.append(metrics)
        marks.append(time.perf_counter())

    fit(model, data, cfg, report=report)
    val = median_time(lambda: elbo_terms(model, data.val, cfg.eval_batch_size), warmup=1)
    epoch = statistics.mean(m["epoch_seconds"] for m in seen)
    wall = (marks[-1] - marks[0]) / epochs
    losses = {k: seen[-1][k] for k in ("train_loss", "val_loss")}
    return dict(model=model, wall=wall, epoch_seconds=epoch, val=val, train=epoch - val, **losses)


def time_conventional(data: Data, n_train: int, epochs: int) -> dict:
    """torchvision dataset + ToTensor + DataLoader, fresh model of the same architecture."""
    spec = training.data.DATASETS["fashion_mnist"]
    root = training.files.torchvision_root(spec, training.files.candidate_roots(""))
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
    seconds = (time.perf_counter() - start) / epochs
    return {"train": seconds, "train_loss": loss_sum / (n_train * epochs)}


def report_ours(ours: dict, conv: dict, data: Data) -> None:
    print(
        f"[ours] fit(): {ours['wall']:.2f} s/epoch wall (incl. checkpoint); epoch_seconds "
        f"{ours['epoch_seconds']:.2f} s = training loop {ours['train']:.2f} s + validation "
        f"{ours['val']:.2f} s (elbo_terms on {len(data.val)} images, timed alone, subtracted)\n"
        f"       train loss {ours['train_loss']:.1f}, val loss {ours['val_loss']:.1f}\n"
        f"[conventional] DataLoader over Subset(first {len(data.train)} of 60000 images): "
        f"{conv['train']:.2f} s/epoch; train loss {conv['train_loss']:.1f}"
    )


def report_training_bound(model: nn.Module, steps: int) -> float:
    gemms = training_step_gemms(model, BATCH)
    step_s, flops = gemm_bound(gemms)
    print(
        f"[GEMM bound, training] {len(gemms)} matmuls/step = {step_s * 1e3:.2f} ms x {steps} "
        f"steps = {steps * step_s:.2f} s/epoch; {steps * flops / 1e9:.0f} GFLOP/epoch at "
        f"{flops / step_s / 1e9:.1f} GFLOP/s"
    )
    for m, k, n, t in gemms:
        us = gemm_time(m, k, n, t) * 1e6
        print(f"    mm {t} [{m:4d} x {k:4d}] @ [{k:4d} x {n:4d}] {us:8.1f} us")
    seq = gemm_sequence_time(gemms)
    print(f"    the same {len(gemms)} back to back, distinct operands: {seq * 1e3:.2f} ms/step = "
          f"{steps * seq:.2f} s/epoch (not the bound; for comparison)")  # fmt: skip
    return steps * step_s


def report_test_ll(model: nn.Module, x: torch.Tensor, k: int) -> tuple[float, float]:
    ll = estimate_log_likelihood(model, x, k=k)
    bound, flops = gemm_bound(loglik_gemms(model, len(x), k))
    print(
        f"[test LL] k={k}, {len(x)} images: {ll['seconds']:.2f} s = "
        f"{len(x) / ll['seconds']:.1f} images/s (log p(x) = {ll['test_log_likelihood']:.1f} "
        f"+- {ll['test_log_likelihood_sem']:.1f}); GEMM bound {bound:.2f} s "
        f"({flops / 1e9:.0f} GFLOP at {flops / bound / 1e9:.1f} GFLOP/s)"
    )
    return ll["seconds"], bound


def summary(times: dict[str, float], ratios: dict[str, tuple[float, str]]) -> None:
    print(f"\n{'measure':<26}{'seconds':>9}")
    for name, seconds in times.items():
        print(f"{name:<26}{seconds:>9.2f}")
    print(f"\n{'ratio':<26}{'value':>9}{'goal':>8}  met")
    for name, (value, goal) in ratios.items():
        met = value >= float(goal[2:]) if goal.startswith(">=") else value <= float(goal[2:])
        print(f"{name:<26}{value:>9.2f}{goal:>8}  {'yes' if met else 'NO'}")


def setup(threads: int | None) -> Data:
    if threads:
        torch.set_num_threads(threads)
    with open("/proc/cpuinfo") as f:
        cpus = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; CPU: {cpus[0]} x "
        f"{len(cpus)}; load average {os.getloadavg()[0]:.2f}"
    )
    cfg = Config.from_dict({"family": "vae", "data/dataset": "fashion_mnist"})
    data = training.data.load_data(cfg.data, "cpu")
    print(f"model {MODEL}; train {tuple(data.train.shape)}, val {tuple(data.val.shape)}\n")
    return data


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=1, help="epochs per timed loop (mean reported)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--k", type=int, default=5000, help="importance samples for the test LL")
    p.add_argument("--eval-images", type=int, default=200, help="test images for the test LL")
    args = p.parse_args()
    data = setup(args.threads)
    warm_up(data)
    ours, conv = time_ours(data, args.epochs), time_conventional(data, len(data.train), args.epochs)
    report_ours(ours, conv, data)
    bound = report_training_bound(ours["model"], math.ceil(len(data.train) / BATCH))
    ll_s, ll_bound = report_test_ll(ours["model"], data.test[: args.eval_images], args.k)
    times = {"ours: training loop": ours["train"], "ours: fit() wall": ours["wall"],
             "conventional loop": conv["train"], "GEMM bound (training)": bound,
             "test LL": ll_s, "GEMM bound (test LL)": ll_bound}  # fmt: skip
    summary(times, {"ours / bound": (ours["train"] / bound, "<=1.3"),
                    "conventional / ours": (conv["train"] / ours["train"], ">=2.0"),
                    "test LL / bound": (ll_s / ll_bound, "<=1.5")})  # fmt: skip
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    assert "ray" not in sys.modules, "the benchmark must not import Ray"


if __name__ == "__main__":
    main()
