"""What the fidelity driver (``python -m fidelity``) and its adapters share, written once.

Importing the authors' code: ``cpu_shim``, ``import_authors`` and the stand-ins for packages
their modules import but nothing used here needs (``serve_stand_ins``, ``drop_stand_ins``).
Their side: ``seed`` (torch's and numpy's generators), ``AuthorsModel`` (their trained
``nn.Module`` behind our model contract), ``standard_normal``, ``bernoulli_of_decode``, and for
AKuzina's two repositories (dct_vae, dvp_vae) ``AuthorsLadder`` and ``authors_val_loss``.
Our side and the comparison: ``train_ours``, ``per_image_ll``, ``per_image_difference``,
``summarise``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import math
import sys
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Independent, Normal

from models.base import DEFAULT_MAX_ROWS, LatentVariableModel, streaming_iwae
from models.likelihoods import BernoulliImage
from training import checkpoint
from training.config import Config
from training.trainer import build_model, fit

X_SHAPE = (1, 28, 28)
"""Every adapter's images: Fashion-MNIST's one channel of 28 x 28."""


# --- importing the authors' code ----------------------------------------------------------------
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
    # an installed package a stand-in replaces (wandb, with the trackers extra), imported here
    # already: out of the way while their modules import, so they get the stand-in
    served = adapter.MARKER in _STAND_IN_MARKERS
    roots = {name.split(".")[0] for name in STAND_INS} if served else set()
    real = {m: sys.modules.pop(m) for m in list(sys.modules) if m.split(".")[0] in roots}
    sys.path.insert(0, str(repo))
    try:
        theirs = {name: importlib.import_module(name) for name in names}
    finally:
        sys.modules.update(real)
        sys.path.remove(str(repo))
        for name in list(sys.modules):
            if name.split(".")[0] in names:
                sys.modules.pop(name)
        sys.modules.update(ours)
    return SimpleNamespace(**{name.replace(".", "_"): m for name, m in theirs.items()})


STAND_INS = ("hydra", "hydra.utils", "wandb", "omegaconf", "torchmetrics",
             "torchmetrics.image", "torchmetrics.image.fid")  # fmt: skip
"""Packages AKuzina's repositories import (dct_vae.py, dvp_vae.py) that nothing used here needs:
empty stand-ins, ``wandb.log`` a no-op (their optim_step logs every step), the rest raising when
called; served even where the package is installed (wandb and the others may be), so their
code never logs to a tracker or needs its login."""
_STAND_IN_MARKERS: set[str] = set()
"""The MARKER files of the checkouts the stand-ins are served to (serve_stand_ins)."""


def _unavailable(name: str):
    def refuse(*args, **kwargs):
        raise RuntimeError(f"{name} is a stand-in of fidelity/common.py (not installed)")

    return refuse


class _StandInLoader(importlib.abc.Loader):
    def create_module(self, spec):
        return None

    def exec_module(self, module: ModuleType) -> None:
        module.__dict__["__fidelity_stand_in__"] = True
        module.__path__ = []  # a package, so that the dotted names below it import too
        if module.__name__ == "hydra.utils":
            module.instantiate = _unavailable("hydra.utils.instantiate")
        if module.__name__ == "wandb":
            module.log = lambda *args, **kwargs: None  # their optim_step logs every step
            for attr in ("Image", "Histogram", "init", "save", "watch"):
                setattr(module, attr, _unavailable(f"wandb.{attr}"))


class _StandInFinder(importlib.abc.MetaPathFinder):
    """Serves the stand-ins only while a checkout with one of the registered MARKERs is on
    sys.path (the driver's import_authors), before any installed package of the same name (it is
    first on sys.meta_path)."""

    def find_spec(self, name, path=None, target=None):
        if name not in STAND_INS:
            return None
        if not any(isinstance(p, str) and (Path(p) / marker).is_file()
                   for p in sys.path for marker in _STAND_IN_MARKERS):  # fmt: skip
            return None
        return importlib.machinery.ModuleSpec(name, _StandInLoader(), is_package=True)


def serve_stand_ins(marker: str) -> None:
    """Serve the stand-ins to the checkouts that have ``marker`` (an adapter's MARKER)."""
    _STAND_IN_MARKERS.add(marker)
    if not any(isinstance(f, _StandInFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _StandInFinder())


def drop_stand_ins() -> None:
    """Take the stand-ins out of sys.modules (after the import of the authors' modules)."""
    for name in STAND_INS:
        if getattr(sys.modules.get(name), "__fidelity_stand_in__", False):
            del sys.modules[name]


# --- their side ---------------------------------------------------------------------------------
def seed(value: int) -> None:
    """Torch's and numpy's global generators (their code draws from both)."""
    torch.manual_seed(value)
    np.random.seed(value)


class AuthorsModel(LatentVariableModel):
    """An authors' trained ``nn.Module`` behind our model contract; a subclass reads q(z|x), p(z)
    and p(x|z) from ``self.net``, so that our estimator (LatentVariableModel.log_likelihood)
    evaluates it exactly as it evaluates ours."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net


def standard_normal(dim: int) -> Independent:
    """N(0, I) over ``dim`` latent dimensions."""
    zeros = torch.zeros(dim)
    return Independent(Normal(zeros, torch.ones_like(zeros)), 1)


def bernoulli_of_decode(net: nn.Module, z: Tensor) -> BernoulliImage:
    """Our Bernoulli over the image of their ``decode(z)`` logits, for z of any leading shape."""
    logits = net.decode(z.reshape(-1, z.shape[-1]))
    return BernoulliImage(logits.reshape(*z.shape[:-1], -1), X_SHAPE)


LADDER_MODULES = ("model", "utils", "datasets", "model.vae", "model.context_ladder_vae",
                  "model.encoder", "model.decoder", "model.context_decoder", "model.ddgm",
                  "utils.distribution", "utils.thirdparty.unet", "utils.trainer",
                  "datasets.dct")  # fmt: skip
"""The modules of AKuzina/dct_vae and AKuzina/dvp_vae (the same layout) the adapters use:
``model``, ``utils`` and ``datasets`` have no ``__init__.py`` (namespace packages), so every
submodule used is named besides the three top-level names."""


class AuthorsLadder(nn.Module):
    """Their trained LADDER_VAE / CTX_LADDER_VAE (AKuzina's repositories) behind our contract:
    log_likelihood(x, k), the log-mean-exp over k of single-pass log-weights of their
    ``forward(batch, mode="test")``."""

    def __init__(self, authors, family: str, net: nn.Module):
        super().__init__()
        self.authors, self.family, self.net = authors, family, net

    def batch(self, x: Tensor) -> list[Tensor]:
        """Their batch of binary images x: 2 x - 1 (their [-1, 1] layout) and a label (unused)."""
        return [2 * x - 1, torch.zeros(x.shape[0], dtype=torch.long)]

    def log_weight(self, x: Tensor) -> Tensor:
        """One pass of their forward(mode="test"): log p(x|z) + sum_l log p(z_l) - log q(z_l) at
        the sampled z (the context's term in the adapter's module doc)."""
        _, p_xz, z_samples, q_dist, p_dist = self.net(self.batch(x), mode="test")
        log_w = p_xz.log_prob(x)
        for z, q, p in zip(z_samples, q_dist, p_dist, strict=True):
            log_p = p.log_prob(z) if hasattr(p, "log_prob") else p.reshape(z.shape[0], -1).sum(1)
            log_w = log_w + log_p - q.log_prob(z)
        return log_w

    @torch.no_grad()
    def log_likelihood(self, x: Tensor, k: int, max_rows: int = DEFAULT_MAX_ROWS) -> Tensor:
        chunk = max(1, max_rows // x.shape[0])
        self.net.eval()

        def log_w(c: int) -> Tensor:
            rows = x.repeat(c, *([1] * (x.dim() - 1)))
            return self.log_weight(rows).view(c, x.shape[0])

        return streaming_iwae(log_w, k, chunk)


@torch.no_grad()
def authors_val_loss(net: nn.Module, val: list[Tensor], batch: int) -> float:
    """Their validation loss (AKuzina's repositories): train_step in "val" mode, the mean of
    per-batch ``loss`` over batches of ``batch``, as their run_epoch(mode="val") averages it."""
    net.eval()
    losses = []
    for i in range(0, val[0].shape[0], batch):
        _, logs = net.train_step([t[i : i + batch] for t in val], mode="val")
        losses.append(float(logs["loss"]))
    return sum(losses) / len(losses)


# --- our side and the comparison ----------------------------------------------------------------
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


def per_image_difference(ours: list[Tensor], theirs: list[Tensor]) -> tuple[Tensor, float]:
    """Each image's difference ours - theirs of the means over seeds, and its paired standard
    error over the images (which leaves out the seed-to-seed variation)."""
    d = torch.stack(ours).mean(0) - torch.stack(theirs).mean(0)
    return d, (d.std() / math.sqrt(d.numel())).item()


def summarise(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> list[str]:
    """Both sides' mean and seed spread, and the difference with its paired standard error."""
    lines = []
    for name, runs in (("authors' code", theirs), ("ours", ours)):
        means = torch.stack([r.mean() for r in runs])
        spread = means.std().item() if len(runs) > 1 else math.nan
        each = ", ".join(f"{m:.2f}" for m in means.tolist())
        lines.append(f"{name:14s} {means.mean():9.2f} ± {spread:5.2f} (seeds: {each})")
    d, se = per_image_difference(ours, theirs)
    per_seed = torch.stack([a.mean() - b.mean() for a, b in zip(ours, theirs, strict=True)])
    seed_se = per_seed.std().item() / math.sqrt(len(per_seed)) if len(per_seed) > 1 else math.nan
    lines.append(f"difference (ours - authors' code): {d.mean():+.2f} ± {seed_se:.2f} (SE over "
                 f"{len(per_seed)} seeds' differences; ± {se:.2f} over {d.numel()} images "
                 "leaves out the seed-to-seed variation)")  # fmt: skip
    return lines
