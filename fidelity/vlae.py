"""The VLAE repository's side of the fidelity driver (yookoon/VLAE, the user's checkout).

Their modules are imported from the checkout and run unchanged but for the driver's CPU shim and
``torch_compat_shim`` (their torch 1.0 ``torch.cholesky``, now removed): their model classes (VAE,
SAVAE, HF, IAF, VLAE), their initialisation (``Experiment.initialize_params``), their training epoch
and their test-set model selection (``Experiment.train_epoch``, ``Experiment.test``), fed the same
Fashion-MNIST tensors our loader gives (all 60,000 training images as their code uses, or the
driver's ``--train-images`` first ones on both sides). Their trained model is put behind our
contract by fidelity.vlae_wrappers.

Ours runs the authors' protocol: ``data/validation=test`` (train on everything, select the epoch on
the test set, as they do; docs/specs/vlae.md#12-deviations-from-the-authors-code), their
single-sample Monte-Carlo KL (``model/analytic_kl=false`` where the family has the field: vae,
savae, vae_hf, vlae; IAF's KL is always Monte-Carlo), z = 50, H = 500, batch 128, Adam 5e-4, no
early stopping, and for

    savae    T SVI steps (model/svi_steps), svi_lr 5e-4 (their default), and all three
             repository switches on: savae_repo_sign (their step adds the gradient of the loss
             -ELBO: descent on the ELBO, docs/specs/vlae.md#3-sa-vae), savae_batch_mean_grad (their
             gradient of the batch-mean loss in training and test-set selection, per example in
             importance sampling; validation in batches of 128 as their test pass, so the 1/B is
             theirs), savae_squared_norm_clip (their utils.clip_grad_norm g / max(1, |g|^2 / 5),
             |g|^2 per example)
    vae_hf   T reflections (model/flows)
    vae_iaf  T IAF steps, iaf_dim 500, iaf_mask_context on (their MADE masks zero the context h,
             docs/specs/vlae.md#5-inverse-autoregressive-flow); their MADE degrees come from numpy,
             seeded here with the run's seed
    vlae     T updates (model/updates), update_lr 0.5, vlae_eta_schedule harmonic (0.5 / (t + 1),
             their code at HEAD, docs/specs/vlae.md#62-mode-search)

Before training, each run copies their freshly initialised weights into our model of the same
switches and prints the largest per-image log p(x) difference from one random stream
(fidelity.vlae_wrappers.same_weights_gap): ~1e-4 nats (float32 rounding) for every family, i.e. ours
computes what theirs does; so do the training losses and parameter gradients (checked to ~1e-7
relative for savae, vae_hf, vae_iaf on used MADE entries; their VLAE draws its training sample with
a Cholesky factor of the covariance, ours of the precision: same distribution, mean loss over 300
draws equal within 0.02 nats). Initialisation (Experiment.initialize_params: Kaiming-uniform, a =
2^(1/3), fan-out, on every Linear; biases torch's default) matches ours parameter by parameter: HF's
flow layers, the IAF MADE's W (fan-out iaf_dim), V_m, V_s (fan-out z), b, c_m ~ N(0, 1), c_s = 2,
PReLU 0.25, the VLAE's mean head (tests/unit/test_vlae_config.py).

T (the driver's ``--t``) defaults to STEPS = 2 here: their README runs T = 4, but T = 2 keeps the
VLAE's per-step Jacobians (H = 500) affordable on a CPU and still exercises every step's code.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from fidelity import common
from fidelity.common import X_SHAPE
from fidelity.vlae_wrappers import WRAPPERS, same_weights_gap
from models.base import LatentVariableModel
from training.config import Config
from training.trainer import build_model

REPO = "yookoon/VLAE"
MARKER = "experiment.py"
MODULES = ("utils", "distribution", "network", "models", "datasets", "experiment")
FAMILIES = ("vae", "savae", "vae_hf", "vae_iaf", "vlae")
BUDGET = "Fashion-MNIST, z 50, H 500, batch 128, Adam 5e-4"
STEPS = 2
STEPPED = ("savae", "vae_hf", "vae_iaf", "vlae")
"""The families with a T (SVI steps, flows, updates)."""
"""T (SVI steps, flows, mode updates) unless the driver's --t says otherwise."""
SVI_LR, UPDATE_LR, IAF_DIM = 5e-4, 0.5, 500  # their run.py defaults
THEIR_CLASS = {"vae": "VAE", "savae": "SAVAE", "vae_hf": "HF", "vae_iaf": "IAF", "vlae": "VLAE"}


class NullWriter:
    """Stands in for their tensorboardX SummaryWriter."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def torch_compat_shim() -> None:
    """Their distribution.Gaussian (VLAE) calls torch.cholesky, removed since torch 1.9 in favour
    of torch.linalg.cholesky (the same lower factor); this process gets it back."""
    torch.cholesky = lambda a, upper=False: (
        torch.linalg.cholesky(a).mH if upper else torch.linalg.cholesky(a)
    )


def family_config(family: str, t: int) -> dict:
    """Our model keys that make the family behave as their code does (module docstring)."""
    return {
        "vae": {"model/analytic_kl": False},
        "savae": {"model/analytic_kl": False, "model/svi_steps": t, "model/svi_lr": SVI_LR,
                  "model/savae_repo_sign": True, "model/savae_batch_mean_grad": True,
                  "model/savae_squared_norm_clip": True,
                  "train/eval_batch_size": 128},  # their test-set batch: the 1/B of their steps
        "vae_hf": {"model/analytic_kl": False, "model/flows": t},
        "vae_iaf": {"model/flows": t, "model/iaf_dim": IAF_DIM, "model/iaf_mask_context": True},
        "vlae": {"model/analytic_kl": False, "model/updates": t, "model/update_lr": UPDATE_LR,
                 "model/vlae_eta_schedule": "harmonic"},
    }[family]  # fmt: skip


def our_config(family: str, seed: int, epochs: int, root: str, t: int = STEPS) -> Config:
    return Config.from_dict({
        "family": family, "data/dataset": "fashion_mnist", "data/root": root,
        "data/validation": "test", "model/latent_dim": 50, "model/hidden_dim": 500,
        "train/lr": 5e-4, "train/batch_size": 128,
        "train/max_epochs": epochs, "train/patience": epochs, "train/seed": seed,
        "train/device": "cpu", **family_config(family, t),
    })  # fmt: skip


def authors_dataset(authors, data, batch_size: int = 128):
    """Their FashionMNIST class, built on our tensors instead of a download: their preprocess
    (x - mean) and their output variance initialisation run unchanged. Their mean is our
    pixel_mean (the full training set's), so their preprocess gives exactly our centred tensors
    also when the driver keeps only the first training images; the variance is their formula on
    the training images they are fed."""
    ds = authors.datasets.FashionMNIST.__new__(authors.datasets.FashionMNIST)
    x_train = (data.train + data.pixel_mean).flatten(1)  # grey levels in [0, 1]
    x_test = (data.test + data.pixel_mean).flatten(1)
    ds.logit_transform, ds.dim = False, list(X_SHAPE)
    ds.mean = data.pixel_mean.flatten()
    ds.logvar = torch.log(torch.mean((x_train - x_train.mean(0)) ** 2)).unsqueeze(0)
    labels = torch.zeros(x_train.shape[0]), torch.zeros(x_test.shape[0])
    loader = torch.utils.data.DataLoader
    ds.train_loader = loader(torch.utils.data.TensorDataset(x_train, labels[0]),
                             batch_size=batch_size, shuffle=True)  # fmt: skip
    ds.test_loader = loader(torch.utils.data.TensorDataset(x_test, labels[1]),
                            batch_size=batch_size, shuffle=False)  # fmt: skip
    return ds


def build_authors(authors, family: str, ds, t: int = STEPS) -> nn.Module:
    """Their model class of `family` with the run's sizes and T (their run.py passes every
    family's keyword; each class takes the ones it needs)."""
    kwargs = dict(dataset=ds, z_dim=50, output_dist="gaussian", x_dim=list(X_SHAPE),
                  enc_dim=500, dec_dim=500, svi_lr=SVI_LR, n_svi_step=t, n_update=t,
                  update_lr=UPDATE_LR, n_flow=t, iaf_dim=IAF_DIM)  # fmt: skip
    return getattr(authors.models, THEIR_CLASS[family])(**kwargs)


def wrap(family: str, net: nn.Module) -> LatentVariableModel:
    """Their trained model behind our contract (fidelity.vlae_wrappers)."""
    return WRAPPERS[family](net)


def check_same_weights(family: str, net: nn.Module, data, seed: int, epochs: int, t: int) -> None:
    """Print how far our model with their initial weights is from theirs on 8 test images
    (fidelity.vlae_wrappers.same_weights_gap); torch's random state is left as it was."""
    state = torch.get_rng_state()
    ours = build_model(our_config(family, seed, epochs, "", t), X_SHAPE)
    gap = same_weights_gap(family, net, ours, data.test[:8])
    torch.set_rng_state(state)
    print(f"{family}, their initial weights in ours: max |log p(x) ours - theirs| = {gap:.2g}")


def train_authors(authors, family: str, data, seed: int, epochs: int, save_dir: str,
                  t: int = STEPS):  # fmt: skip
    """Their model, initialisation, epochs and test-set selection; the best epoch's model behind
    our contract, and the seconds per epoch."""
    torch_compat_shim()
    common.seed(seed)  # numpy: their MADE mask degrees (unseeded numpy in their code)
    ds = authors_dataset(authors, data)
    net = build_authors(authors, family, ds, t)
    exp = authors.experiment.Experiment.__new__(authors.experiment.Experiment)
    exp.model, exp.dataset, exp.output_dist = net, ds, "gaussian"
    exp.optimizer = torch.optim.Adam(net.parameters(), lr=5e-4, weight_decay=0.0)
    exp.epoch, exp.best_epoch, exp.best_test_loss = 1, None, None
    exp.log_interval, exp.writer, exp.save_dir = None, NullWriter(), save_dir
    exp.initialize_params()
    check_same_weights(family, net, data, seed, epochs, t)
    start = time.perf_counter()
    while exp.epoch <= epochs:
        exp.train_epoch()
        exp.test()
        exp.epoch += 1
    seconds = (time.perf_counter() - start) / epochs
    net.load_state_dict(torch.load(Path(save_dir) / f"{exp.best_epoch}.pkl"))
    return wrap(family, net), seconds
