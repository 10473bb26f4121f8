"""The S-VAE library's side of the fidelity driver (nicola-decao/s-vae-pytorch, the user's
checkout): our ``svae`` and ``nvae`` against the MLP VAE of their ``examples/mnist.py``.

Their package ``hyperspherical_vae`` is imported from the checkout (the driver's import_authors).
Their example script is not importable (at import it downloads MNIST and trains), so its class
``ModelVAE`` and its epoch function ``train`` are taken from ``examples/mnist.py`` itself: the
file is parsed and only its imports, classes and functions are executed, in a namespace where
``VonMisesFisher`` and ``HypersphericalUniform`` are the checkout's and the global
``train_loader`` that their ``train`` reads is a DataLoader over our tensors. So their model
class, their initialisation (PyTorch defaults), their dynamic binarisation ``x > U(0, 1)`` and
their loss (summed BCE + analytic KL, batch mean, no warm-up) run unchanged; the epoch loop
around their ``train`` is ours: their script runs one epoch and then tests, with no validation
and no model selection, so here it runs ``epochs`` epochs and the last one is evaluated.

Data: the Fashion-MNIST tensors our loader gives (grey levels in [0, 1]; the training split, or
its first ``--train-images`` rows), Bernoulli(x) per batch on both sides. Their example reads
MNIST through torchvision's ``ToTensor`` (grey levels / 255), so this library does *not* have
the unscaled-pixel defect of docs/specs/hyperspherical.md#5-data (data/svae_no_rescale_255 is the
product-space repository's loaders): both sides get rescaled pixels, our default.

Ours runs their protocol: d = 5 (their Z_DIM; S^5 in R^6 for the S-VAE, R^5 for the N-VAE),
hidden 256-128 (their H_DIM = 128: layers 2 H and H), exact Bessel ratio, Adam 1e-3, batch 64, no
KL warm-up, analytic KL. Selection differs: ours keeps its best validation epoch (the driver's
train_ours), theirs the last; at the measured budget (10 epochs of 20,000 images) the validation
ELBO still rises every epoch, so both are the last epoch (checked: best epoch 10 of 10).

Our side of the contract: their trained encoder's (mu, kappa) or (mu, sigma) are put into our
VonMisesFisher / Normal, so the estimator (sampler included) is the same code on both sides and
only the trained weights differ.
"""

from __future__ import annotations

import ast
import time
from pathlib import Path

import torch
from torch.distributions import Independent, Normal

from fidelity import common
from fidelity.common import AuthorsModel, bernoulli_of_decode, standard_normal
from models.hyperspherical.distributions import HypersphericalUniform, VonMisesFisher
from training.config import Config

REPO = "nicola-decao/s-vae-pytorch"
MARKER = "examples/mnist.py"
MODULES = ("hyperspherical_vae",)
FAMILIES = ("svae", "nvae")
LATENT_DIM = 5  # their example's Z_DIM
H_DIM = 128  # their example's H_DIM: encoder 784-256-128, decoder 128-256-784
BATCH, LR = 64, 1e-3
BUDGET = (
    f"Fashion-MNIST dynamically binarised (x/255), d {LATENT_DIM}, MLP 256-128, batch {BATCH}, "
    f"Adam {LR:g}, no warm-up, last epoch (theirs) / best validation (ours)"
)
LATENT = {"svae": "vmf", "nvae": "normal"}


def our_config(family: str, seed: int, epochs: int, root: str) -> Config:
    return Config.from_dict({
        "family": family, "data/dataset": "fashion_mnist", "data/root": root,
        "data/binarize": True, "model/latent_dim": LATENT_DIM,
        "model/hidden_dims": f"{2 * H_DIM},{H_DIM}", "model/likelihood": "bernoulli",
        "train/lr": LR, "train/batch_size": BATCH, "train/warmup_epochs": 0.0,
        "train/max_epochs": epochs, "train/patience": epochs, "train/seed": seed,
        "train/device": "cpu",
    })  # fmt: skip


def example_namespace(authors) -> dict:
    """Their examples/mnist.py without its module-level script: imports, classes, functions."""
    package = Path(authors.hyperspherical_vae.__file__).parent
    source = (package.parent / MARKER).read_text()
    keep = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hyperspherical"):
            continue  # bound below to the checkout's classes, already imported
        if isinstance(node, ast.ImportFrom) and node.module == "torchvision":
            continue  # only their MNIST loaders use it
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.ClassDef, ast.FunctionDef)):
            keep.append(node)
    dists = authors.hyperspherical_vae.distributions
    ns = {"__name__": "s_vae_example", "VonMisesFisher": dists.VonMisesFisher,
          "HypersphericalUniform": dists.HypersphericalUniform}  # fmt: skip
    exec(compile(ast.Module(keep, type_ignores=[]), str(package.parent / MARKER), "exec"), ns)
    return ns


class AuthorsSVAE(AuthorsModel):
    """Their trained ModelVAE behind our contract: q(z|x) from their encode() as our
    VonMisesFisher (S-VAE) or Normal (N-VAE), the matching prior, Bernoulli(their decode(z))."""

    analytic_kl = True

    def posterior(self, x):
        mu, scale = self.net.encode(x.flatten(1))
        if self.net.distribution == "vmf":
            return VonMisesFisher(mu, scale, validate_args=False)
        return Independent(Normal(mu, scale, validate_args=False), 1)

    def prior(self):
        m = self.net.z_dim
        if self.net.distribution == "vmf":
            return HypersphericalUniform(m, validate_args=False)
        return standard_normal(m)

    def likelihood(self, z):
        return bernoulli_of_decode(self.net, z)


def train_authors(authors, family: str, data, seed: int, epochs: int, save_dir: str):
    """Their ModelVAE, optimiser and epoch function on our training tensor, ``epochs`` times; the
    last epoch's model behind our contract, and the seconds per epoch."""
    ns = example_namespace(authors)
    common.seed(seed)
    distribution = LATENT[family]
    z_dim = LATENT_DIM + 1 if distribution == "vmf" else LATENT_DIM  # as their script
    net = ns["ModelVAE"](h_dim=H_DIM, z_dim=z_dim, distribution=distribution)
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    x = data.train  # grey levels in [0, 1]: their train() binarises x > U(0, 1) per batch
    labels = torch.zeros(x.shape[0])
    ns["train_loader"] = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, labels), batch_size=BATCH, shuffle=True
    )
    start = time.perf_counter()
    for _ in range(epochs):
        ns["train"](net, optimizer)
    seconds = (time.perf_counter() - start) / epochs
    return AuthorsSVAE(net), seconds
