"""Our model beside the authors' code: same data, seeds, budget and estimator, paired per image.

    python benchmarks/fidelity.py --authors-repo ~/src/VLAE --family vae \
        [--seeds 0 1 2] [--epochs 10] [--test-images 2000] [--k 1000] [--threads 2]

``--authors-repo`` is a checkout of the authors' code that the user provides (the family's
adapter names the repository); nothing is downloaded and none of it enters this repository. Their
modules are imported from that folder and run unchanged but for a CPU shim (their ``.cuda()``
calls return the tensor or module as it is). Each adapter (``benchmarks/fidelity_<repo>.py``)
trains their model their way and puts the result behind our model contract; ours is trained by our
trainer under the authors' protocol. Both sides' best epochs are then evaluated by the same
estimator, our importance-sampled ``log_likelihood`` with k samples, on the same first
``--test-images`` test images with the same random stream, image by image, so the difference of
the two sides has a paired standard error. ``--train-images`` / ``--val-images`` keep the first N
training / validation (selection) images on both sides; ``--t`` sets T of the families with steps.

Adapters: fidelity_vlae (yookoon/VLAE: vae, savae, vae_hf, vae_iaf, vlae), fidelity_svae
(nicola-decao/s-vae-pytorch: svae, nvae), fidelity_psvae
(trdavidson/increasing-expressivity-s-vae: psvae), fidelity_dct (AKuzina/dct_vae: ladder,
dct_vae), fidelity_dvp (AKuzina/dvp_vae: dvp_ladder, dvp_vae).
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace

import fidelity_dct
import fidelity_dvp
import fidelity_psvae
import fidelity_svae
import fidelity_vlae
import torch
from torch import nn

from models.base import DEFAULT_MAX_ROWS
from training import checkpoint
from training.config import Config
from training.data import load_data
from training.trainer import build_model, fit

ADAPTERS = (fidelity_vlae, fidelity_svae, fidelity_psvae, fidelity_dct, fidelity_dvp)
FAMILIES = {family: adapter for adapter in ADAPTERS for family in adapter.FAMILIES}


def cpu_shim() -> None:
    """The authors' code calls .cuda() on every tensor and module; here those are no-ops."""
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    nn.Module.cuda = lambda self, *args, **kwargs: self


def import_authors(adapter: ModuleType, repo: Path) -> SimpleNamespace:
    """The authors' modules, imported from their checkout under their own names for the time of
    the import (e.g. their experiment.py says `import models`), then put back out of the way."""
    if not (repo / adapter.MARKER).is_file():
        raise SystemExit(f"error: {repo} is not a checkout of {adapter.REPO} "
                         f"(no {adapter.MARKER})")  # fmt: skip
    names = adapter.MODULES
    clashes = [m for m in sys.modules if m.split(".")[0] in names]  # ours, e.g. models.*
    ours = {m: sys.modules.pop(m) for m in clashes}
    sys.path.insert(0, str(repo))
    try:
        theirs = {name: importlib.import_module(name) for name in names}
    finally:
        sys.path.remove(str(repo))
        for name in list(sys.modules):
            if name.split(".")[0] in names:
                sys.modules.pop(name)
        sys.modules.update(ours)
    return SimpleNamespace(**{name.replace(".", "_"): m for name, m in theirs.items()})


def train_ours(cfg: Config, data) -> tuple[nn.Module, float]:
    """Our trainer; returns the tested epoch's model (the best-validation one, or the last with
    train/test_last_epoch) and the seconds per epoch."""
    model = build_model(cfg, data.x_shape)
    best = {}

    def keep_best(metrics: dict, ckpt_dir: Path) -> None:
        if metrics["finished"]:
            saved = checkpoint.load(ckpt_dir)
            best["state"] = checkpoint.test_weights(saved, cfg.train.test_last_epoch)

    start = time.perf_counter()
    fit(model, data, cfg.train, report=keep_best)
    seconds = (time.perf_counter() - start) / cfg.train.max_epochs
    model.load_state_dict(best["state"])
    return model, seconds


@torch.no_grad()
def per_image_ll(model: nn.Module, x: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """log p(x) of each image by our estimator, from one seeded random stream."""
    model.eval()
    torch.manual_seed(seed)
    batch = max(1, DEFAULT_MAX_ROWS // k)
    parts = [model.log_likelihood(x[i : i + batch], k) for i in range(0, x.shape[0], batch)]
    return torch.cat(parts).double()


def summarise(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> list[str]:
    """Both sides' mean and seed spread, and the difference with its paired standard error."""
    lines = []
    for name, runs in (("authors' code", theirs), ("ours", ours)):
        means = torch.stack([r.mean() for r in runs])
        spread = means.std().item() if len(runs) > 1 else math.nan
        each = ", ".join(f"{m:.2f}" for m in means.tolist())
        lines.append(f"{name:14s} {means.mean():9.2f} ± {spread:5.2f} (seeds: {each})")
    d = torch.stack(ours).mean(0) - torch.stack(theirs).mean(0)  # per image, over seeds
    se = (d.std() / math.sqrt(d.numel())).item()
    per_seed = torch.stack([a.mean() - b.mean() for a, b in zip(ours, theirs, strict=True)])
    seed_se = per_seed.std().item() / math.sqrt(len(per_seed)) if len(per_seed) > 1 else math.nan
    lines.append(f"difference (ours - authors' code): {d.mean():+.2f} ± {seed_se:.2f} (SE over "
                 f"{len(per_seed)} seeds' differences; ± {se:.2f} over {d.numel()} images "
                 "leaves out the seed-to-seed variation)")  # fmt: skip
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--authors-repo", type=Path, required=True,
                   help="checkout of the family's authors' repository")  # fmt: skip
    p.add_argument("--family", choices=sorted(FAMILIES), default="vae")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--test-images", type=int, default=2000)
    p.add_argument("--train-images", type=int, default=0,
                   help="train both sides on the first N training images (0: all)")  # fmt: skip
    p.add_argument("--val-images", type=int, default=0,
                   help="select the epoch on the first N validation (and, with validation = test, "
                   "test) images on both sides (0: all)")  # fmt: skip
    p.add_argument("--t", type=int, default=None,
                   help="T (SVI steps, flows, updates) where the family has one (default: the "
                   "adapter's)")  # fmt: skip
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-root", default="", help="data/root (default: the usual lookup)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    adapter = FAMILIES[args.family]
    cpu_shim()
    authors = import_authors(adapter, args.authors_repo.expanduser().resolve())
    ours, theirs = [], []
    steps = {} if args.t is None else {"t": args.t}  # only adapters with a T take it
    for seed in args.seeds:
        cfg = adapter.our_config(args.family, seed, args.epochs, args.data_root, **steps)
        data = load_data(cfg.data)
        if args.train_images:  # the same first rows on both sides
            data.train = data.train[: args.train_images]
        if args.val_images:  # e.g. the authors' per-epoch test-set pass, on both sides
            data.val = data.val[: max(args.val_images, args.test_images)]
            if cfg.data.validation == "test":  # a copy of the test split: keep them the same
                data.test = data.val
        x = data.test[: args.test_images]
        model, s_ours = train_ours(cfg, data)
        ours.append(per_image_ll(model, x, args.k, seed=1000 + seed))
        with tempfile.TemporaryDirectory(prefix="authors-") as save_dir:
            their_model, s_theirs = adapter.train_authors(
                authors, args.family, data, seed, args.epochs, save_dir, **steps
            )
        theirs.append(per_image_ll(their_model, x, args.k, seed=1000 + seed))
        print(f"seed {seed}: authors' code {theirs[-1].mean():.2f} ({s_theirs:.1f} s/epoch), "
              f"ours {ours[-1].mean():.2f} ({s_ours:.1f} s/epoch)", flush=True)  # fmt: skip
    n_train = args.train_images or "all"
    stepped = args.family in getattr(adapter, "STEPPED", ())
    t = f"T = {args.t or adapter.STEPS}, " if stepped else ""
    print(f"\n{args.family}: {adapter.BUDGET}, {n_train} training images, {args.epochs} epochs, "
          f"{t}test LL (k = {args.k}) of "
          f"the first {args.test_images} test images, {args.threads} threads")  # fmt: skip
    print("\n".join(summarise(ours, theirs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
