"""Training-step time of the hierarchical VAEs against the MLP VAE, same run, and the cost of the
K = 1000 evaluation.

One step = forward + backward + AdamW step, batch 128, binarised MNIST shape (1, 28, 28), for
the authors' MNIST configurations: DCT-VAE's Ladder VAE (0.64 M parameters, 8 latent layers) and
DCT-VAE (0.69 M, 7 layers plus the 7x7 context and its T = 7 discrete diffusion prior), and
DVP-VAE's Ladder VAE ("dvp ladder", 0.60 M, 8 layers) and DVP-VAE (0.65 M, 8 layers plus the 7x7
stochastic context and its continuous-time prior, T = 25), against the VLAE paper's MLP VAE
(z = 50, H = 500). Every model's step is timed right after a VAE step, round after round, so a
change of machine load hits both. Also printed:

- each diffusion prior's share of its model's step: the step of the prior's bound alone (one
  diffusion step per example through the UNet, backward included) over the whole step;
- seconds to draw 100 samples from each hierarchical model (DVP-VAE: T = 25 UNet passes for
  the context, then one top-down pass; the DVP-VAE paper reports sampling time);
- seconds per test image of the K = 1000 importance-sampled NLL (K full stochastic passes;
  DCT-VAE's log p(u) from 10 trajectories once per image; DVP-VAE's from the T = 25-point bound
  inside every one of the K passes, as each draws its own u), timed on a few images;
- with --layouts: the step in channels-last memory layout and under bf16 autocast, each against
  the default layout in float32 (on a CPU without bf16 units autocast is slower; the trainer
  uses channels-last on CUDA only, and bf16 only when train/amp=bf16 asks for it).

Run:  python benchmarks/hierarchical.py [--repeats 3] [--threads 2] [--batch 128]
      [--eval-images 2] [--layouts]
The bound on a step is compute: convolutions at 28x28 and 14x14 with 32-40 channels, three to
four 3x3 convs per latent layer and per encoder block, forward and backward (a torch profile of
the Ladder VAE step: convolution forward and backward are about 80% of its time).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

import models
from sweeps import dct_vae, dvp_vae
from training.config import Config

X_SHAPE = (1, 28, 28)


HIERARCHICAL = {"ladder": (dct_vae, "ladder"), "dct_vae": (dct_vae, "dct_vae"),
                "dvp ladder": (dvp_vae, "ladder"), "dvp_vae": (dvp_vae, "dvp_vae")}  # fmt: skip
"""Name -> (the sweep whose MNIST cell configures it, its family)."""


def authors_mnist(name: str) -> tuple[str, dict]:
    sweep, family = HIERARCHICAL[name]
    cell = next(c for c in sweep.CELLS if (c.dataset, c.family) == ("mnist", family))
    cfg = Config.from_dict(cell.base_config(sweep.BUDGETS["paper"]))
    return family, {k.split("/", 1)[1]: v for k, v in cfg.flat().items() if k.startswith("model/")}


def build(name: str, x: torch.Tensor):
    torch.manual_seed(0)
    if name == "vae":
        model = models.build("vae", {"latent_dim": 50, "hidden_dim": 500,
                                     "likelihood": "bernoulli"}, X_SHAPE)  # fmt: skip
    else:
        model = models.build(*authors_mnist(name), X_SHAPE)
    model.initialise(x)
    return model


def make_step(model, x: torch.Tensor, loss_fn=None, autocast: bool = False):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = loss_fn or (lambda: -model(x).elbo.mean())

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def paired(steps: dict, repeats: int) -> dict[str, list[float]]:
    """Each step after a VAE step, round after round: {name: [seconds]}."""
    times = {name: [] for name in steps}
    for fn in steps.values():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in steps.items():
            if name != "vae":
                times["vae"].append(timed(steps["vae"]))
            times[name].append(timed(fn))
    return times


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3, help="timed steps per model (median)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--eval-images", type=int, default=2, help="test images of the K=1000 timing")
    p.add_argument("--layouts", action="store_true", help="also channels-last and bf16 steps")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, load "
          f"average {os.getloadavg()[0]:.2f}")  # fmt: skip
    g = torch.Generator().manual_seed(0)
    x = torch.bernoulli(torch.rand(args.batch, *X_SHAPE, generator=g))
    built = {f: build(f, x) for f in ("vae", *HIERARCHICAL)}
    dct, dvp = built["dct_vae"], built["dvp_vae"]
    steps = {f: make_step(m, x) for f, m in built.items()}
    steps["dct_vae prior only"] = make_step(
        dct, x, lambda: dct.prior.nll_bound(dct.context(x)).mean()
    )
    steps["dvp_vae prior only"] = make_step(
        dvp, x, lambda: dvp.prior.nll_bound(dvp.context_posterior(x)[0]).mean()
    )
    if args.layouts:
        for f in ("ladder", "dct_vae"):
            cl = build(f, x).to(memory_format=torch.channels_last)
            steps[f"{f} channels-last"] = make_step(
                cl, x.contiguous(memory_format=torch.channels_last)
            )
            steps[f"{f} bf16 autocast"] = make_step(build(f, x), x, autocast=True)
    times = paired(steps, args.repeats)
    vae = statistics.median(times["vae"])
    print(f"{'model':28s} {'params':>9s} {'ms/step':>9s} {'x VAE':>7s}")
    for name, t in times.items():
        model = name.replace(" prior only", "").replace(" channels-last", "")
        n = sum(q.numel() for q in built[model.replace(" bf16 autocast", "")].parameters())
        med = statistics.median(t)
        print(f"{name:28s} {n:9,d} {med * 1e3:9.1f} {med / vae:7.1f}")
    for f in ("dct_vae", "dvp_vae"):
        share = statistics.median(times[f"{f} prior only"]) / statistics.median(times[f])
        print(f"diffusion prior's share of a {f} step: {share:.1%}")
    for f in HIERARCHICAL:
        seconds = timed(lambda m=built[f]: m.eval().sample(100))
        print(f"{f}: 100 samples in {seconds:.2f} s")
    test = x[: args.eval_images]
    for f in HIERARCHICAL:
        model = built[f].eval()
        seconds = timed(lambda m=model: m.log_likelihood(test, 1000))
        print(
            f"{f}: K = 1000 NLL, {seconds / len(test):.1f} s per test image "
            f"({len(test)} images; 10,000 test images: {seconds / len(test) * 1e4 / 3600:.1f} h)"
        )


if __name__ == "__main__":
    main()
