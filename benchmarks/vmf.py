"""Benchmark of the von Mises-Fisher reparameterised sampler against the Gaussian one.

One training-like step per timing, batch 1024, on the CPU: parameters as an encoder would emit them
(vMF: loc = normalise(h), kappa = softplus(h') * scale + 1; Gaussian: mu, sigma = softplus(h')),
a sample through ``rsample`` (vMF: Wood's rejection sampler + Householder reflection; Gaussian:
mu + sigma * eps), a simple loss, backward to the raw parameters. Also with the closed-form KL to
the prior added to the loss (uniform on the sphere; N(0, I)), as in a VAE's ELBO.

Run:  python benchmarks/vmf.py [--threads 2] [--batch 1024]
Prints samples per second (batch / median step time) and the ratio of step times, vMF / Gaussian.
Timings are wall-clock, the two steps alternated so that load changes hit both; other jobs on the
machine still inflate them (the load average is printed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch.distributions import Independent, Normal, kl_divergence

from models.hyperspherical.distributions import HypersphericalUniform, VonMisesFisher

DIMS = (10, 50)
KAPPA_SCALES = (10.0, 300.0)  # kappa = softplus(N(0,1)) * scale + 1: medians ~8 and ~210


def paired_median_times(
    fn_a, fn_b, budget: float = 2.0, warmup: int = 5, max_repeats: int = 400
) -> tuple[float, float]:
    """Median wall times of fn_a() and fn_b(), timed alternately (a, b, a, b, ...) after warm-up
    so that a change of load on the machine hits both alike; as many repeats as fit in ~budget s
    (at least 15)."""
    for _ in range(warmup):
        fn_a()
        fn_b()
    start = time.perf_counter()
    fn_a()
    fn_b()
    once = max(time.perf_counter() - start, 1e-9)
    repeats = int(min(max_repeats, max(15, budget / once)))
    times_a, times_b = [], []
    for _ in range(repeats):
        for fn, times in ((fn_a, times_a), (fn_b, times_b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times_a), statistics.median(times_b)


def vmf_step(h_loc, h_kappa, target, scale: float, kl: bool):
    def step():
        q = VonMisesFisher(F.normalize(h_loc, dim=-1), F.softplus(h_kappa) * scale + 1)
        loss = (q.rsample() - target).pow(2).sum()
        if kl:
            loss = loss + kl_divergence(q, HypersphericalUniform(h_loc.shape[-1])).sum()
        h_loc.grad = h_kappa.grad = None
        loss.backward()

    return step


def gaussian_step(h_mu, h_sigma, target, kl: bool):
    def step():
        q = Independent(Normal(h_mu, F.softplus(h_sigma), validate_args=False), 1)
        loss = (q.rsample() - target).pow(2).sum()
        if kl:
            zeros = torch.zeros_like(h_mu)
            prior = Independent(Normal(zeros, torch.ones_like(zeros), validate_args=False), 1)
            loss = loss + kl_divergence(q, prior).sum()
        h_mu.grad = h_sigma.grad = None
        loss.backward()

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--batch", type=int, default=1024)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with open("/proc/cpuinfo") as f:
        cpus = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; CPU: {cpus[0]} x "
        f"{len(cpus)}; load average {os.getloadavg()[0]:.2f}; batch {args.batch}, float32\n"
    )
    print(
        f"{'m':>3} {'kappa median [min, max]':>26} {'loss':>10} {'vMF samples/s':>14} "
        f"{'Gauss samples/s':>16} {'slowdown':>10}"
    )
    gen = torch.Generator().manual_seed(0)
    for m in DIMS:
        h_loc = torch.randn(args.batch, m, generator=gen).requires_grad_()
        h_sigma = torch.randn(args.batch, m, generator=gen).requires_grad_()
        target = F.normalize(torch.randn(args.batch, m, generator=gen), dim=-1)
        h_kappa = torch.randn(args.batch, 1, generator=gen).requires_grad_()
        for scale in KAPPA_SCALES:
            kappa = F.softplus(h_kappa.detach()) * scale + 1
            spread = f"{kappa.median():.0f} [{kappa.min():.1f}, {kappa.max():.0f}]"
            for kl in (False, True):
                t_vmf, t_gauss = paired_median_times(
                    vmf_step(h_loc, h_kappa, target, scale, kl),
                    gaussian_step(h_loc, h_sigma, target, kl),
                )
                print(
                    f"{m:>3} {spread:>26} {'z + KL' if kl else 'z':>10} "
                    f"{args.batch / t_vmf:>14,.0f} {args.batch / t_gauss:>16,.0f} "
                    f"{t_vmf / t_gauss:>10.1f}"
                )
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
