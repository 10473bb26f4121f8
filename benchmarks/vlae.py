"""Training-step time of the VLAE paper's families against the plain VAE, same run.

One step = forward + backward + fused Adam step (as in ``training.trainer.fit``), batch 128, MNIST
shape (1, 28, 28), Gaussian output, z = 50, H = 500 (the paper's sizes), for VLAE (T mode-search
updates), SA-VAE (T SVI steps), VAE+HF and VAE+IAF (T flows) at each T, and the VAE. Data are
random centred pixels: the cost of a step does not depend on their values. Every model's step is
timed right after a VAE step, round after round, so that a change of machine load hits both.

Run:  python benchmarks/vlae.py [--repeats 3] [--threads 2] [--batch 128] [--steps 1,2,4,8]
Prints the median milliseconds per step and the ratio to the VAE's median; the load average is
printed too (other jobs on the machine inflate wall-clock times).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

import models

FAMILIES = {"vlae": "updates", "savae": "svi_steps", "vae_hf": "flows", "vae_iaf": "flows"}
X_SHAPE = (1, 28, 28)
BASE = {"latent_dim": 50, "hidden_dim": 500, "likelihood": "gaussian"}


def make_step(family: str, config: dict, x: torch.Tensor):
    """A closure running one training step of a freshly built model on x."""
    torch.manual_seed(0)
    model = models.build(family, {**BASE, **config}, X_SHAPE)
    model.initialise(x)
    opt = torch.optim.Adam(model.parameters(), lr=5e-4, fused=True)

    def step() -> None:
        loss = -model(x).elbo.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3, help="timed steps per model (median)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", default="1,2,4,8", help="values of T, comma-separated")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    steps = [int(t) for t in args.steps.split(",")]
    x = torch.rand(args.batch, *X_SHAPE, generator=torch.Generator().manual_seed(0)) - 0.5
    print(f"threads {args.threads}, batch {args.batch}, z 50, H 500, Gaussian output, "
          f"{args.repeats} timed steps each, load average {os.getloadavg()[0]:.2f}")  # fmt: skip

    vae = make_step("vae", {}, x)
    runs = {(f, t): make_step(f, {key: t}, x) for f, key in FAMILIES.items() for t in steps}
    for fn in (vae, *runs.values()):  # warm-up: allocator, thread pool, Adam state
        fn()
    vae_times: list[float] = []
    times: dict[tuple[str, int], list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for k, fn in runs.items():
            vae_times.append(timed(vae))
            times[k].append(timed(fn))

    base = statistics.median(vae_times)
    print(f"{'model':<10}{'T':>3}{'ms/step':>11}{'x VAE':>8}")
    print(f"{'vae':<10}{'-':>3}{1e3 * base:>11.1f}{1.0:>8.2f}")
    for (family, t), ts in times.items():
        med = statistics.median(ts)
        print(f"{family:<10}{t:>3}{1e3 * med:>11.1f}{med / base:>8.2f}")


if __name__ == "__main__":
    main()
