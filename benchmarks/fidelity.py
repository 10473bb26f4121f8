"""Our model beside the authors' code: same data, seeds, budget and estimator, paired per image.

    python benchmarks/fidelity.py --authors-repo ~/src/VLAE --family vae \
        [--seeds 0 1 2] [--epochs 10] [--test-images 2000] [--k 1000] [--threads 2]

``--authors-repo`` is a checkout of the authors' code that the user provides (yookoon/VLAE for the
VLAE paper's models); nothing is downloaded and none of it enters this repository. Their modules
are imported from that folder and run unchanged but for a CPU shim (their ``.cuda()`` calls return
the tensor or module as it is): their model classes, their initialisation
(``Experiment.initialize_params``), their training epoch and their test-set model selection
(``Experiment.train_epoch``, ``Experiment.test``), fed the same Fashion-MNIST tensors our loader
gives (all 60,000 training images, as their code uses).

Ours runs the authors' protocol: ``data/validation=test`` (train on everything, select the epoch
on the test set, as they do), their single-sample Monte-Carlo KL (``model/analytic_kl=false``),
z = 50, H = 500, batch 128, Adam 5e-4, no early stopping. Both sides' best epochs are then
evaluated by the same estimator, our importance-sampled ``log_likelihood`` with k samples, on the
same first ``--test-images`` test images with the same random stream, image by image, so the
difference of the two sides has a paired standard error.

Families: vae (the VLAE repository's VAE). The VLAE repository's other models (SA-VAE, HF, IAF,
VLAE) and the S-VAE and SPVAE repositories are not wired in yet.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn
from torch.distributions import Independent, Normal

from models.base import DEFAULT_MAX_ROWS, LatentVariableModel
from training import checkpoint
from training.config import Config
from training.data import load_data
from training.trainer import build_model, fit

X_SHAPE = (1, 28, 28)
AUTHORS_MODULES = ("utils", "distribution", "network", "models", "datasets", "experiment")


def cpu_shim() -> None:
    """The authors' code calls .cuda() on every tensor and module; here those are no-ops."""
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    nn.Module.cuda = lambda self, *args, **kwargs: self


def import_authors(repo: Path) -> SimpleNamespace:
    """The authors' modules, imported from their checkout under their own names for the time of
    the import (their experiment.py says `import models`), then put back out of the way."""
    if not (repo / "experiment.py").is_file():
        raise SystemExit(f"error: {repo} is not a checkout of yookoon/VLAE (no experiment.py)")
    ours = {name: sys.modules.pop(name) for name in AUTHORS_MODULES if name in sys.modules}
    sys.path.insert(0, str(repo))
    try:
        theirs = {name: importlib.import_module(name) for name in AUTHORS_MODULES}
    finally:
        sys.path.remove(str(repo))
        for name in AUTHORS_MODULES:
            sys.modules.pop(name, None)
        sys.modules.update(ours)
    return SimpleNamespace(**theirs)


class NullWriter:
    """Stands in for their tensorboardX SummaryWriter."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


class AuthorsVAE(LatentVariableModel):
    """The authors' trained encoder and decoder behind our model contract, so that our estimator
    (LatentVariableModel.log_likelihood) evaluates them exactly as it evaluates ours."""

    analytic_kl = False

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def posterior(self, x):
        q, _ = self.net.encoder(x.flatten(1))
        return Independent(Normal(q.mu, torch.exp(0.5 * q.logvar)), 1)

    def prior(self):
        zeros = torch.zeros(self.net.z_dim)
        return Independent(Normal(zeros, torch.ones_like(zeros)), 1)

    def likelihood(self, z):
        p = self.net.decoder(z.reshape(-1, z.shape[-1]))
        mu = p.mu.reshape(*z.shape[:-1], *X_SHAPE)
        return Independent(Normal(mu, torch.exp(0.5 * p.logvar).expand_as(mu)), 3)


def our_config(seed: int, epochs: int, root: str) -> Config:
    return Config.from_dict({
        "family": "vae", "data/dataset": "fashion_mnist", "data/root": root,
        "data/validation": "test", "model/latent_dim": 50, "model/hidden_dim": 500,
        "model/analytic_kl": False, "train/lr": 5e-4, "train/batch_size": 128,
        "train/max_epochs": epochs, "train/patience": epochs, "train/seed": seed,
        "train/device": "cpu",
    })  # fmt: skip


def train_ours(cfg: Config, data) -> tuple[nn.Module, float]:
    """Our trainer; returns the best epoch's model and the seconds per epoch."""
    model = build_model(cfg, data.x_shape)
    best = {}

    def keep_best(metrics: dict, ckpt_dir: Path) -> None:
        if metrics["finished"]:
            best["state"] = checkpoint.load(ckpt_dir)["best_model"]

    start = time.perf_counter()
    fit(model, data, cfg.train, report=keep_best)
    seconds = (time.perf_counter() - start) / cfg.train.max_epochs
    model.load_state_dict(best["state"])
    return model, seconds


def authors_dataset(authors, data, batch_size: int = 128):
    """Their FashionMNIST class, built on our tensors instead of a download: their preprocess
    (x - the training mean) and their output variance initialisation run unchanged."""
    ds = authors.datasets.FashionMNIST.__new__(authors.datasets.FashionMNIST)
    x_train = (data.train + data.pixel_mean).flatten(1)  # grey levels in [0, 1]
    x_test = (data.test + data.pixel_mean).flatten(1)
    ds.logit_transform, ds.dim = False, list(X_SHAPE)
    ds.mean = x_train.mean(0)
    ds.logvar = torch.log(torch.mean((x_train - ds.mean) ** 2)).unsqueeze(0)
    labels = torch.zeros(x_train.shape[0]), torch.zeros(x_test.shape[0])
    loader = torch.utils.data.DataLoader
    ds.train_loader = loader(torch.utils.data.TensorDataset(x_train, labels[0]),
                             batch_size=batch_size, shuffle=True)  # fmt: skip
    ds.test_loader = loader(torch.utils.data.TensorDataset(x_test, labels[1]),
                            batch_size=batch_size, shuffle=False)  # fmt: skip
    return ds


def train_authors(authors, data, seed: int, epochs: int, save_dir: str) -> tuple[nn.Module, float]:
    """Their VAE, initialisation, epochs and test-set selection; the best epoch's model."""
    torch.manual_seed(seed)
    ds = authors_dataset(authors, data)
    net = authors.models.VAE(dataset=ds, z_dim=50, output_dist="gaussian", x_dim=list(X_SHAPE),
                             enc_dim=500, dec_dim=500)  # fmt: skip
    exp = authors.experiment.Experiment.__new__(authors.experiment.Experiment)
    exp.model, exp.dataset, exp.output_dist = net, ds, "gaussian"
    exp.optimizer = torch.optim.Adam(net.parameters(), lr=5e-4, weight_decay=0.0)
    exp.epoch, exp.best_epoch, exp.best_test_loss = 1, None, None
    exp.log_interval, exp.writer, exp.save_dir = None, NullWriter(), save_dir
    exp.initialize_params()
    start = time.perf_counter()
    while exp.epoch <= epochs:
        exp.train_epoch()
        exp.test()
        exp.epoch += 1
    seconds = (time.perf_counter() - start) / epochs
    net.load_state_dict(torch.load(Path(save_dir) / f"{exp.best_epoch}.pkl"))
    return AuthorsVAE(net), seconds


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
    lines.append(f"difference (ours - authors' code): {d.mean():+.2f} ± {se:.2f} (paired SE "
                 f"over {d.numel()} images)")  # fmt: skip
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--authors-repo", type=Path, required=True, help="checkout of yookoon/VLAE")
    p.add_argument("--family", choices=["vae"], default="vae")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--test-images", type=int, default=2000)
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-root", default="", help="data/root (default: the usual lookup)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cpu_shim()
    authors = import_authors(args.authors_repo.expanduser().resolve())
    ours, theirs = [], []
    for seed in args.seeds:
        cfg = our_config(seed, args.epochs, args.data_root)
        data = load_data(cfg.data)
        x = data.test[: args.test_images]
        model, s_ours = train_ours(cfg, data)
        ours.append(per_image_ll(model, x, args.k, seed=1000 + seed))
        with tempfile.TemporaryDirectory(prefix="authors-") as save_dir:
            their_model, s_theirs = train_authors(authors, data, seed, args.epochs, save_dir)
        theirs.append(per_image_ll(their_model, x, args.k, seed=1000 + seed))
        print(f"seed {seed}: authors' code {theirs[-1].mean():.2f} ({s_theirs:.1f} s/epoch), "
              f"ours {ours[-1].mean():.2f} ({s_ours:.1f} s/epoch)", flush=True)  # fmt: skip
    print(f"\n{args.family}: Fashion-MNIST, z 50, H 500, batch 128, Adam 5e-4, {args.epochs} "
          f"epochs on all 60,000 training images, test LL (k = {args.k}) of the first "
          f"{args.test_images} test images, {args.threads} threads")  # fmt: skip
    print("\n".join(summarise(ours, theirs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
