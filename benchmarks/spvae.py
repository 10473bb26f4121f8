"""SPVAE against the plain VAE of the same parameter count: training and k = 5000 evaluation.

The issue's goal: the SPN layer (the sum-product network alone, without the leaf VAEs) takes under
20% of a training step. Setting: the paper's MNIST configuration
(docs/specs/spvae.md#72-configurations-behind-the-numbers: hidden 30,30, nz 25, cell 7, sumK 2,
leafK 2), x_shape (1, 28, 28), Gaussian likelihood, batch 128, K = 5 importance samples per leaf;
the baseline is the paper's MLP VAE ("spvae_vae") with "w,w" hidden layers and a latent size found
by a small search so that its parameter count is the SPVAE's within a few %. ``--conv`` adds
ConvSPVAE (n_dense 64, nz 25) against a ConvVAE matched the same way.

Measures, in one run, the models alternating step by step (evaluation: batch by batch) so a change
in machine load hits all of them:
  1. training: examples/s of full steps (forward, loss = -log_px_z.mean(), backward, fused Adam
     as in training/trainer.py), a block of --steps steps per repeat after warm-up;
  2. evaluation: examples/s of ``log_likelihood(x, k)`` on --eval-examples images, batched as
     ``training.evaluate.estimate_log_likelihood`` does (max_rows // k images per call);
  3. the SPN's share of a training step: ``model.spn`` forward + backward alone on the model's own
     leaf log-values [128, n_leaves] (requires_grad), over the SPVAE's whole step;
  4. (--profile) a torch.profiler table of the SPVAE step's most expensive ops.
Pixels are uniform in [0, 1] (timings do not depend on the data). Throughputs: medians over
--repeats; ratios and the SPN share: the median over repeats of the ratio within each repeat.

Run:  python benchmarks/spvae.py [--repeats 7] [--steps 20] [--eval-examples 8] [--k 5000]
                                 [--threads N] [--conv] [--profile]
Timings are wall-clock: other jobs on the machine inflate them (the load average is printed). With
more threads than idle cores, OpenMP synchronisation inflates every small op, the SPN's most (it is
~20 small ops per layer): on a busy machine, compare with a --threads 1 run.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from dataclasses import dataclass, field

import torch
from torch import nn

import models
from models.base import DEFAULT_MAX_ROWS

X_SHAPE, BATCH, SAMPLES = (1, 28, 28), 128, 5
SPN_GOAL = 0.20
SPVAE = {"hidden_dims": "30,30", "latent_dim": 25, "cell_size": 7, "sum_k": 2, "leaf_k": 2}
CONVSPVAE = {"n_dense": 64, "latent_dim": 25, "cell_size": 7, "sum_k": 2, "leaf_k": 2}
# docs/specs/spvae.md#4-training-protocol
LR = {"spvae": 1e-2, "convspvae": 1e-2, "spvae_vae": 1e-3, "spvae_convvae": 1e-3}


@dataclass
class Entry:
    """One model under test and its timings (seconds per repeat)."""

    label: str
    family: str
    config: dict
    model: nn.Module | None = None
    step: list[float] = field(default_factory=list)  # s per training step
    evaluate: list[float] = field(default_factory=list)  # s per evaluated example
    spn: list[float] = field(default_factory=list)  # s per SPN forward + backward

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def count_params(family: str, config: dict) -> int:
    with torch.device("meta"):  # shapes only: no allocation, no initialisation
        return sum(p.numel() for p in models.build(family, config, X_SHAPE).parameters())


def matched_config(family: str, target: int, config_of, latent: int = 25, window: int = 8):
    """The config_of(width, latent_dim) whose parameter count is closest to ``target``: for each
    latent size in latent +- window, a bisection on the width (the count grows with it)."""
    best = None
    for d in range(max(1, latent - window), latent + window + 1):
        lo, hi = 1, 4096
        while hi - lo > 1:  # count(lo) < target <= count(hi), or lo/hi at the search's edge
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if count_params(family, config_of(mid, d)) < target else (lo, mid)
        for w in (lo, hi):
            gap = abs(count_params(family, config_of(w, d)) - target)
            if best is None or (gap, abs(d - latent)) < best[:2]:
                best = (gap, abs(d - latent), config_of(w, d))
    return best[2]


def build_entries(conv: bool) -> list[Entry]:
    """SPVAE (and ConvSPVAE) at the paper's MNIST configuration and their matched baselines."""
    pairs = [("SPVAE", "spvae", SPVAE, "VAE", "spvae_vae", lambda w, d: {
        "hidden_dims": f"{w},{w}", "latent_dim": d})]  # fmt: skip
    if conv:
        pairs.append(("ConvSPVAE", "convspvae", CONVSPVAE, "ConvVAE", "spvae_convvae",
                      lambda w, d: {"n_dense": w, "latent_dim": d}))  # fmt: skip
    entries = []
    for sp_label, sp_family, sp_config, label, family, config_of in pairs:
        target = count_params(sp_family, sp_config)
        entries.append(Entry(sp_label, sp_family, sp_config))
        entries.append(Entry(label, family, matched_config(family, target, config_of)))
    for i, e in enumerate(entries):
        torch.manual_seed(i)
        e.model = models.build(e.family, e.config, X_SHAPE)
    return entries


def training_step(model: nn.Module, lr: float, x: torch.Tensor):
    """One full step as training/trainer.py takes it (loss of the model contract, kl = 0 here)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr, fused=True)

    def step() -> None:
        loss = -model(x).log_px_z.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def spn_pass(model: nn.Module, x: torch.Tensor):
    """Forward + backward of a copy of the SPN alone, on the model's own leaf log-values."""
    spn = copy.deepcopy(model.spn)
    with torch.no_grad():
        leaf = model.leaf_log_values(x, SAMPLES)  # [B, n_leaves]
    leaf.requires_grad_(True)

    def run() -> None:
        spn.zero_grad(set_to_none=True)
        leaf.grad = None
        spn(leaf).mean().backward()

    return run


def evaluation(model: nn.Module, k: int):
    """log_likelihood on a batch of estimate_log_likelihood's size (max_rows // k images)."""

    def run(x: torch.Tensor) -> None:
        model.log_likelihood(x, k, DEFAULT_MAX_ROWS)

    return run


def seconds(fn, calls: int, *args) -> float:
    """Mean wall time of fn(*args) over ``calls`` back-to-back calls."""
    start = time.perf_counter()
    for _ in range(calls):
        fn(*args)
    return (time.perf_counter() - start) / calls


def measure(entries: list[Entry], x: torch.Tensor, x_eval: torch.Tensor, args) -> None:
    """Warm-up, then --repeats rounds. The models alternate step by step (and the SPN pass right
    after its model's step), and evaluation batch by batch, so that what is divided by what in a
    ratio ran within a fraction of a second of each other."""
    steps = {e.label: training_step(e.model, LR[e.family], x) for e in entries}
    spns = {e.label: spn_pass(e.model, x) for e in entries if hasattr(e.model, "spn")}
    evals = {e.label: evaluation(e.model, args.k) for e in entries}
    batch = max(1, DEFAULT_MAX_ROWS // args.k)  # as estimate_log_likelihood
    for e in entries:  # first calls allocate, pick kernels, fill caches: untimed
        seconds(steps[e.label], args.warmup)
        if e.label in spns:
            seconds(spns[e.label], args.warmup)
        seconds(evals[e.label], 1, x_eval[:batch])
    for _ in range(args.repeats):
        step_s, spn_s, eval_s = ({e.label: 0.0 for e in entries} for _ in range(3))
        for _ in range(args.steps):
            for e in entries:
                step_s[e.label] += seconds(steps[e.label], 1)
                if e.label in spns:
                    spn_s[e.label] += seconds(spns[e.label], 2)
        for i in range(0, x_eval.shape[0], batch):
            for e in entries:
                torch.manual_seed(i)
                eval_s[e.label] += seconds(evals[e.label], 1, x_eval[i : i + batch])
        for e in entries:
            e.step.append(step_s[e.label] / args.steps)
            e.evaluate.append(eval_s[e.label] / x_eval.shape[0])
            if e.label in spns:
                e.spn.append(spn_s[e.label] / args.steps)


def profile_step(entry: Entry, x: torch.Tensor, steps: int) -> None:
    """torch.profiler over a few training steps; the SPN's forward is labelled by module hooks
    (its backward ops are not attributable by module and appear under their op names)."""
    from torch.profiler import ProfilerActivity, profile, record_function

    step, spn = training_step(entry.model, LR[entry.family], x), entry.model.spn
    open_ranges = []

    def enter(*_) -> None:
        open_ranges.append(record_function("SPN forward"))
        open_ranges[-1].__enter__()

    hooks = [
        spn.register_forward_pre_hook(enter),
        spn.register_forward_hook(lambda *_: open_ranges.pop().__exit__(None, None, None)),
    ]
    seconds(step, 2)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        wall = seconds(step, steps)
    for hook in hooks:
        hook.remove()
    table = prof.key_averages().table(
        sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=48
    )
    rows = {a.key: a for a in prof.key_averages()}
    spn_ms = rows["SPN forward"].cpu_time_total / 1e3 / steps if "SPN forward" in rows else 0.0
    print(f"\n[profile] {entry.label}, {steps} steps, {wall * 1e3:.1f} ms/step under the profiler; "
          f"'SPN forward' (CPU total incl. children) {spn_ms:.2f} ms/step (the SPN's backward is "
          f"under the op names below); ops by self CPU time:\n{table}")  # fmt: skip


def paired(numerators: list[float], denominators: list[float]) -> tuple[float, list[float]]:
    """Median over repeats of the per-repeat ratio (both timed in the same round), and all."""
    ratios = [n / d for n, d in zip(numerators, denominators, strict=True)]
    return statistics.median(ratios), [round(r, 3) for r in ratios]


def report(entries: list[Entry]) -> None:
    median = statistics.median
    print(f"\n{'model':<10}{'config':<58}{'params':>10}{'train ex/s':>12}{'eval ex/s':>11}")
    for e in entries:
        config = ", ".join(f"{k} {v}" for k, v in e.config.items())
        print(f"{e.label:<10}{config:<58}{e.params:>10,}{BATCH / median(e.step):>12.0f}"
              f"{1 / median(e.evaluate):>11.2f}")  # fmt: skip
    print(f"\n{'examples/s ratio, per repeat':<30}{'train':>9}{'eval':>9}{'params':>9}")
    for sp, base in zip(entries[::2], entries[1::2], strict=True):
        train, _ = paired(base.step, sp.step)
        evaluate, _ = paired(base.evaluate, sp.evaluate)
        print(f"{sp.label + ' / ' + base.label:<30}{train:>9.2f}{evaluate:>9.2f}"
              f"{sp.params / base.params:>9.3f}")  # fmt: skip
    for e in (e for e in entries if e.spn):
        share, shares = paired(e.spn, e.step)
        print(f"\n[SPN share] {e.label}: SPN forward + backward {median(e.spn) * 1e3:.2f} ms, "
              f"step {median(e.step) * 1e3:.2f} ms (medians); share (median per repeat) "
              f"{share:.1%}, goal < {SPN_GOAL:.0%}: {'met' if share < SPN_GOAL else 'NOT met'}\n"
              f"  per repeat: {shares}")  # fmt: skip
    print("\nper repeat (a slow repeat is machine load; ratios pair models within a repeat):")
    for e in entries:
        steps, evals = [round(t * 1e3, 1) for t in e.step], [round(t, 3) for t in e.evaluate]
        spn = f"; SPN ms {[round(t * 1e3, 2) for t in e.spn]}" if e.spn else ""
        print(f"  {e.label:<10} step ms {steps}; eval s/example {evals}{spn}")


def setup(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)
    with open("/proc/cpuinfo") as f:
        cpus = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; CPU: {cpus[0]} x "
          f"{len(cpus)}; load average {os.getloadavg()[0]:.2f}")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=7, help="timed rounds (medians reported)")
    p.add_argument("--steps", type=int, default=20, help="training steps per model and round")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per model first")
    p.add_argument("--k", type=int, default=5000, help="importance samples in the evaluation")
    p.add_argument("--eval-examples", type=int, default=8, help="images per evaluation round")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--conv", action="store_true", help="also ConvSPVAE against a ConvVAE")
    p.add_argument("--profile", action="store_true", help="torch.profiler table of a step")
    args = p.parse_args()
    setup(args.threads)
    entries = build_entries(args.conv)
    print(f"x {X_SHAPE}, Gaussian likelihood, batch {BATCH}, K = {SAMPLES} training samples, "
          f"eval k = {args.k} on {args.eval_examples} images; {args.repeats} repeats of "
          f"{args.steps} steps")  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(BATCH, *X_SHAPE, generator=generator)
    x_eval = torch.rand(args.eval_examples, *X_SHAPE, generator=generator)
    measure(entries, x, x_eval, args)
    report(entries)
    if args.profile:
        profile_step(entries[0], x, args.steps)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
