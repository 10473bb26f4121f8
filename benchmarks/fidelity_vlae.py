"""The VLAE repository's side of benchmarks/fidelity.py (yookoon/VLAE, the user's checkout).

Their modules are imported from the checkout and run unchanged but for the driver's CPU shim:
their model classes, their initialisation (``Experiment.initialize_params``), their training epoch
and their test-set model selection (``Experiment.train_epoch``, ``Experiment.test``), fed the same
Fashion-MNIST tensors our loader gives (all 60,000 training images, as their code uses).

Ours runs the authors' protocol: ``data/validation=test`` (train on everything, select the epoch on
the test set, as they do), their single-sample Monte-Carlo KL (``model/analytic_kl=false``), z = 50,
H = 500, batch 128, Adam 5e-4, no early stopping.

An adapter exposes: REPO (what the checkout is), MARKER (a file it must have), MODULES (its
top-level modules, imported under their own names), FAMILIES, BUDGET (one line for the report),
``our_config(family, seed, epochs, root)`` and ``train_authors(authors, family, data, seed,
epochs, save_dir) -> (model behind our contract, seconds per epoch)``.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn
from torch.distributions import Independent, Normal

from models.base import LatentVariableModel
from training.config import Config

REPO = "yookoon/VLAE"
MARKER = "experiment.py"
MODULES = ("utils", "distribution", "network", "models", "datasets", "experiment")
FAMILIES = ("vae",)
BUDGET = "Fashion-MNIST, z 50, H 500, batch 128, Adam 5e-4, all 60,000 training images"
X_SHAPE = (1, 28, 28)


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


def our_config(family: str, seed: int, epochs: int, root: str) -> Config:
    return Config.from_dict({
        "family": family, "data/dataset": "fashion_mnist", "data/root": root,
        "data/validation": "test", "model/latent_dim": 50, "model/hidden_dim": 500,
        "model/analytic_kl": False, "train/lr": 5e-4, "train/batch_size": 128,
        "train/max_epochs": epochs, "train/patience": epochs, "train/seed": seed,
        "train/device": "cpu",
    })  # fmt: skip


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


def build_authors(authors, family: str, ds) -> nn.Module:
    """Their model class of `family` with the run's sizes."""
    kwargs = dict(dataset=ds, z_dim=50, output_dist="gaussian", x_dim=list(X_SHAPE),
                  enc_dim=500, dec_dim=500)  # fmt: skip
    return authors.models.VAE(**kwargs)


def wrap(family: str, net: nn.Module) -> LatentVariableModel:
    """Their trained model behind our contract."""
    return AuthorsVAE(net)


def train_authors(authors, family: str, data, seed: int, epochs: int, save_dir: str):
    """Their model, initialisation, epochs and test-set selection; the best epoch's model behind
    our contract, and the seconds per epoch."""
    torch.manual_seed(seed)
    ds = authors_dataset(authors, data)
    net = build_authors(authors, family, ds)
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
    return wrap(family, net), seconds
