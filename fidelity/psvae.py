"""The product-space S-VAE repository's side of the fidelity driver
(trdavidson/increasing-expressivity-s-vae, the user's checkout): our ``psvae`` against their
``ProductSpaceVAE``.

Their modules are imported from the checkout (their own ``hyperspherical_vae`` copy, ``models``,
``utils``) and run unchanged: ``utils.training_utils.init_model`` builds their model from the
flags of ``run_models.py`` (defaults copied below, PyTorch default initialisation), and
``utils.training_utils.train`` is their whole training loop (per-epoch KL warm-up, validation,
NaN restarts, burn-in, look-ahead, "best" checkpoint), fed by their ``TensorLoader``. What
``run_models.run_experiment`` does around it is repeated here, minus its data loading (their
loaders read MNIST-family files from ./data; ours give the tensors): seeds, Adam, ``train``, the
best checkpoint. Their ``test`` is replaced by our estimator.

Data: the Fashion-MNIST tensors our loader gives. Their MNIST loaders pass the unscaled 0..255
pixels to ``x > U(0, 1)`` (data/svae_no_rescale_255, docs/specs/hyperspherical.md#5-data); this
comparison feeds both sides grey levels / 255 with Bernoulli(x) per batch (the UAI paper's and our
default data), so that it tests the model code, not the loader defect, which is a data-only switch
with its own test.
The pseudo-family ``psvae_unscaled`` (our psvae) runs their defect on both sides instead: our
loader's threshold x > 0 of the unscaled pixels (data/svae_no_rescale_255) on every split, fed
to both (their ``x > U(0, 1)`` leaves those 0/1 images as they are).
Their validation images are our fixed-binarised validation split (0/1 survive their
``x > U(0, 1)`` unchanged), the training tensor is ours (or its first ``--train-images`` rows).

Budget: their defaults (batch 100, Adam 1e-3, MLP 256-128, partition "2,3" of d = 5) but for
the epoch count and two flags scaled to it: ``-klw`` (KL warm-up, default 100 epochs) is
WARMUP_EPOCHS, and ``-bi`` (burn-in 100) is clamped as run_models.py clamps it when it exceeds
``-e``: burn-in = epochs - 1, so their "best" checkpoint is the last epoch's.

Ours runs their protocol: spheres "2,3", approximate Bessel ratio in the KL (their copy's
entropy uses ``ive_fraction_approx2``: model/bessel_ratio=approx), batch 100, Adam 1e-3, and a KL
warm-up of WARMUP_EPOCHS + 1 epochs. Their warm-up weight is a staircase, min(e, klw) / klw in
epoch e = 0, 1, ... (0 in the first epoch); ours rises linearly per step over warmup_epochs; with
warmup_epochs = klw + 1 both reach full weight by the end of epoch klw + 1 and give the same
total weight (ours with their exact staircase, kl_weight patched, gave the same test LL: report).
Selection: ours by validation ELBO, theirs the last epoch (above); at the measured budget ours is
the last epoch too (best epoch 10 of 10).

Names: their ``models`` (models.py) and ours share a name, and the UAI library (fidelity.svae)
has a ``hyperspherical_vae`` package too. The driver runs one adapter per process and
import_authors takes their modules out of sys.modules after the import, so neither collides;
their classes stay reachable through the returned namespace (``authors.models``, ...).

Our side of the contract: their encoder's (mu_i, kappa_i) per sphere, in their order (sorted by
dimension, the order of their decoder's input), into our VonMisesFisher, concatenated; so the
estimator and its sampler are the same code on both sides.
"""

from __future__ import annotations

import contextlib
import io
import time
from argparse import Namespace
from pathlib import Path

import torch

from fidelity import common
from fidelity.common import AuthorsModel, bernoulli_of_decode
from models.hyperspherical.distributions import HypersphericalUniform, VonMisesFisher
from models.hyperspherical.hyperspherical import Concatenated
from training.config import Config

REPO = "trdavidson/increasing-expressivity-s-vae"
MARKER = "run_models.py"
MODULES = ("hyperspherical_vae", "models", "utils", "utils.load_data", "utils.training_utils")
FAMILIES = ("psvae", "psvae_unscaled")
SPHERES = "2,3"  # run_models.py's default -zd
WARMUP_EPOCHS = 2  # their -klw, scaled to the budget (default 100 of 200 epochs)
BATCH, LR = 100, 1e-3
BUDGET = (
    f"Fashion-MNIST binarised (Bernoulli(x/255) per batch; psvae_unscaled: x > 0), spheres "
    f"{SPHERES}, MLP 256-128, batch {BATCH}, Adam {LR:g}, KL warm-up {WARMUP_EPOCHS} epochs "
    f"(theirs) / {WARMUP_EPOCHS + 1} (ours), approximate Bessel ratio, last epoch (theirs) / "
    "best validation (ours)"
)


def our_config(family: str, seed: int, epochs: int, root: str) -> Config:
    """Ours as their code behaves; ``psvae_unscaled``: with their loaders' defect
    (docs/specs/hyperspherical.md#5-data)."""
    dims = [int(d) for d in SPHERES.split(",")]
    return Config.from_dict({
        "family": "psvae", "data/dataset": "fashion_mnist", "data/root": root,
        "data/binarize": True, "data/svae_no_rescale_255": family == "psvae_unscaled",
        "model/latent_dim": sum(dims), "model/spheres": SPHERES,
        "model/hidden_dims": "256,128", "model/likelihood": "bernoulli",
        "model/bessel_ratio": "approx", "train/lr": LR, "train/batch_size": BATCH,
        "train/warmup_epochs": float(WARMUP_EPOCHS + 1), "train/max_epochs": epochs,
        "train/patience": epochs, "train/seed": seed, "train/device": "cpu",
    })  # fmt: skip


def their_flags(seed: int, epochs: int) -> Namespace:
    """run_models.py's argparse defaults, with what load_dataset sets for dynamic MNIST."""
    return Namespace(
        z=5, z_dims=SPHERES, h_dims="256,128", encode_type="mlp", decode_type="mlp",
        distribution="vmf", covariance_matrix="diagonal", name="productspace",
        loss_function="bce", beta=1.0, burn_in=min(100, epochs - 1), look_ahead=50,
        min_improv=1e-2, epochs=epochs, lr=LR, batch_size=BATCH, kl_warmup=WARMUP_EPOCHS,
        kl_freeze=0, kl_target=0.0, max_restarts=20, ll_sample=100, pf=1, val_nll=False,
        val_f=1, save_f=5, exp_name="fidelity", log_dir="fidelity", dataset="f_mnist",
        binarize=False, rs=seed, verbosity=0, device=torch.device("cpu"),
        dynamic_binarization=True, input_type="binary", input_size=[1, 28, 28],
    )  # fmt: skip


class AuthorsPSVAE(AuthorsModel):
    """Their trained ProductSpaceVAE behind our contract: per sphere (their sorted order, which
    is also the order of the decoder's input) our VonMisesFisher from their encode()'s (mu,
    kappa), concatenated; the product of uniforms; Bernoulli(their decode(z))."""

    analytic_kl = True

    def posterior(self, x):
        mus, kappas = self.net.encode(x.flatten(1))
        return Concatenated(
            VonMisesFisher(mu, kappa, validate_args=False, ratio="approx")
            for mu, kappa in zip(mus, kappas, strict=True)
        )

    def prior(self):
        return Concatenated(
            HypersphericalUniform(int(m), validate_args=False) for m in self.net.z_dims
        )

    def likelihood(self, z):
        return bernoulli_of_decode(self.net, z)


def loaders(authors, data, batch_size: int):
    """Their TensorLoaders over our training grey levels and binarised validation images."""
    dataset = torch.utils.data.TensorDataset
    train = dataset(data.train.flatten(1), torch.zeros(data.train.shape[0], 1))
    val = dataset(data.val.flatten(1), torch.zeros(data.val.shape[0], 1))
    train_loader, val_loader, _ = authors.utils_load_data._init_loaders(train, val, val, batch_size)
    return train_loader, val_loader


def train_authors(authors, family: str, data, seed: int, epochs: int, save_dir: str):
    """run_models.run_experiment on our tensors: their model, their train(), their best
    checkpoint, behind our contract; and the seconds per epoch."""
    tu = authors.utils_training_utils
    flags = their_flags(seed, epochs)
    common.seed(flags.rs)
    train_loader, val_loader = loaders(authors, data, flags.batch_size)
    model = tu.init_model(flags, flags.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=flags.lr)  # name != 'vmf': no model.r
    path = str(Path(save_dir) / flags.exp_name)
    log = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(log):
        loss, _ = tu.train(model, optimizer, train_loader=train_loader, val_loader=val_loader,
                           flags=flags, path=path)  # fmt: skip
    seconds = (time.perf_counter() - start) / epochs
    if loss is None:
        raise RuntimeError(f"{REPO}: training failed (too many NaN restarts):\n{log.getvalue()}")
    best = torch.load(path + "_best.tar", weights_only=False)  # their load_from_checkpoint
    model.load_state_dict(best["model_state_dict"])
    return AuthorsPSVAE(model), seconds
