"""The DVP-VAE authors' side of the fidelity driver (AKuzina/dvp_vae, the user's checkout): our
``ladder`` in its DVP form and ``dvp_vae`` against their LADDER_VAE and CTX_LADDER_VAE with their
MNIST experiment configs (configs/experiment/mnist/ladder.yaml, mnist/dvp_vae.yaml).

    python -m fidelity --authors-repo PATH --family dvp_ladder|dvp_vae ...

On the driver's command line the families are ``dvp_ladder`` (our ``ladder`` with
models.hierarchical.dvp_form.DVP_FORM) and ``dvp_vae``: ``ladder`` is fidelity.dct_vae's DCT-VAE
form.

Their code is imported from the checkout (the driver's import_authors); ``model`` and ``utils``
have no ``__init__.py`` (namespace packages), so MODULES names every submodule used
(common.LADDER_MODULES, the DCT-VAE repository's layout). Their modules import hydra, omegaconf,
wandb and torchmetrics, which nothing used here needs: while the checkout is on sys.path a
meta-path finder serves common's empty stand-ins for them (common.serve_stand_ins: ``wandb.log``
a no-op, the rest raising when called), dropped from sys.modules afterwards. One shim
(torch_compat_shim): their noise schedule's derivative at t = 1, which torch 2.14 changed (below,
4). Otherwise their modules run as released, on CPU.

Their side, as their run_experiment.py builds and trains it, without hydra: the experiment config
composed from their yaml files as hydra would (the experiment's choices of dataset, model,
encoder, decoder, z_L_prior and train groups; a defaults list's groups before the file's own
keys; OmegaConf's float syntax; interpolations resolved; their compute_z_L_size), the model
instantiated from it by a recursive ``_target_`` instantiate in hydra's order (children first, in
key order) after ``torch.manual_seed(seed)`` and ``np.random.seed(seed)`` (their configs use seed
123 for every run; here the run's seed). As their init_model: the DCT scale (DVP-VAE) set by
their ``init_dct_normalization`` from their DCT_dataset's statistic, floor(DCT(x)).abs().max(0)
over the first (<= 50,001) grey training images, each transformed alone (their ``DCT.dct2``).
Training is their epoch function ``utils.trainer.run_epoch``: their ``train_step`` loss in bits
per dim, backward, their optim_step (clip_grad_norm 5, no skip threshold, no step on a NaN loss;
then update_ema when there is an EMA), with Adamax(lr 1e-2, wd 1e-6, eps 1e-8), batch 250,
shuffled, drop_last, and their trainer's CosineAnnealingLR(T_max 300, eta_min 1e-5) stepped
after every epoch (train/mnist_defaults.yaml). After each epoch their validation loss
(``train_step`` in "val" mode, the mean of per-batch ``loss`` over batches of 500, as their
run_epoch) on the driver's validation images; it selects nothing: their run_experiment tests
``last_chpt.pth``, which their trainer overwrites with the last epoch's weights when it ends.
Seconds per epoch include that validation pass, as our trainer's epoch includes its own.
build_authors checks that the composed config's training values are sweeps/dvp_vae.py's.
The config is read by fidelity/hydra_config.py (authors_config); the weight pairing of the
same-function check below is fidelity/dvp_weights.py (copy_into_ours, gradient_gap).

Our side (our_config): sweeps/dvp_vae.ARCH of mnist, TRAIN["mnist"] and AUTHORS_TRAIN["mnist"]
(the same Adamax, lr, wd, batch, clip, bpd loss, NaN skipping, cosine over 300 epochs to 1e-5),
Fashion-MNIST dynamically binarised (data/binarize, data/center=false), ``train/test_last_epoch``
(the driver tests the last epoch, as their run does), for dvp_vae ``model/test_grid=authors``,
patience = the epochs; and COMPARISON on both sides: no EMA, no learning-rate warm-up (4, 5).

The same function: before training, each run copies their initial weights (the zero-initialised
tensors perturbed, so that every path counts) into our model and prints, with every noise draw
fixed (no_noise: Gaussian draws 0, uniform ones 1/2), the largest difference of the test
log-weights of 8 test images, of the training loss and the gradients' relative difference
(same_weights_gap). Measured in all 12 runs below: at most 2e-3 nats on log-weights of hundreds
to thousands of nats, 4e-6 bpd on the loss, 2e-7 on the gradients (float32 rounding). So ours
computes what theirs does, the DCT context, diffusion bound and UNet included; what is left to
differ is the initial weights, the noise draws and the data order.

The estimator, behind our contract (AuthorsDVP.log_likelihood, common.AuthorsLadder's):
log-mean-exp over k of single-pass importance weights from their ``forward(batch, mode="test")``:

    log w = log p(x | z) + sum_l [log p(z_l | z_>l[, u]) - log q(z_l | z_>l, x)]
            [+ log p^(u) - log q(u | x)]

with their Normal.log_prob at the sampled z and u, their Bernoulli.log_prob of x, and for u
their DiffusionPrior's test value ``eval_is_ll(u, is_k=1)``: minus the bound L_0 + L_diff + L_T
with one z_0 draw and L_diff the mean over their grid t = i/T, i = 1..T, of 1/2 gamma'(t)
||eps - eps_hat(z_t, t)||^2, a fresh eps at each point. Ours is LadderVAE.log_likelihood with
the same weights (iwae_weights="sampled"; for u, -nll_bound(u, "authors_grid") - log q(u | x)).
The driver runs both on the same binarised test images and seeds.

Differences between the two sides, every one known (removed for the comparison, or not):

1. Binarisation (removed). Their loader gives grey images in [-1, 1]: their encoder and their
   context (CTX_LADDER_VAE.encode recomputes the DCT from batch[0]; the x_dct their DCT_dataset
   appends is never read) see grey levels, and the Bernoulli likelihood scores a fresh
   binarisation (eval_log_p_x: torch.bernoulli per loss evaluation; estimate_nll: one per test
   batch). Ours binarises first: encoder, context and likelihood see the same binary image. Here
   their loader (BinarisedLoader) draws a fresh binarisation of every training batch and gives
   2 b - 1, so their eval_log_p_x draw is the identity and both sides train on the same
   distribution of binary images (not the same draws); validation and test are our binarised
   tensors on both sides.
2. Test grid (removed): their t = i/T (a right Riemann sum, biased low: models.hierarchical.vdm);
   ours runs ``model/test_grid=authors`` here (our default is the stratified grid).
3. Importance weights (removed): their estimate_nll log-mean-exps ELBOs whose latent KLs are the
   analytic ones (no importance weight; ``model/iwae_weights=authors`` is that on our side); both
   sides are scored here by the sampled log-densities above.
4. Their loss weight 1/2 gamma'(t) is a jvp through torch.clamp(t, 0, 1), whose derivative at
   the bounds torch 2.14 made 0 (pytorch/pytorch#195931: [0, 1] closed up to 2.13, open since):
   under this environment's torch their test bound would weigh its t = 1 point by 0, a term of
   their bound missing (0.7-1.9 nats per image at same_weights_gap's weights; training draws t
   in [0, 1) and never meets it). Their torch 1.12.1 (environment.yml) counts it, as the shim.
5. Learning-rate warm-up (removed: off on both sides). Theirs is per epoch (every step of epoch
   0 at lr / 2, of epoch 1 at lr), ours per step (lr (s + 1) / S over the S steps of 2 epochs:
   over the 12 steps of one epoch of 3,000 images from 4.2e-4 to 5e-3, mean 2.7e-3, half of
   theirs): training/optim.py's warm-up is not theirs (not changed here). Without it both
   sides step at lr 1e-2 in epoch 0 and follow the same cosine per epoch after it (ours sets it
   per epoch, theirs steps after the epoch: equal), which moves it by 3e-7 after epoch 0.
6. EMA (removed: off on both sides). Their runs keep an EMA at 0.999 and test it (ours the same
   with the authors' keys). After the 12 steps of one epoch the EMA is 0.999^12 = 98.8% the
   initial weights, whose KLs are heavy-tailed (thousands of nats at init on both sides): a first
   run with the EMA and warm-ups (DVP-VAE, seed 0) scored -5,923 (theirs) and -2,355 (ours):
   initialisations, not trained models. ``COMPARISON = {}`` runs the authors' EMA and warm-up
   on both sides.
7. Their Bernoulli clamps p = sigmoid to [1e-7, 1 - 1e-7]; ours uses logits.
8. Initialisation: each side its own code's, the same scheme but for one tensor: our output
   conv's bias starts at 0 (DCT-VAE's code zeroes it; DVP-VAE's keeps torch's default,
   U(+-1/sqrt(288)) here). Trainable parameters: theirs 600,673 (ladder) / 648,579 (DVP-VAE),
   ours 64 fewer: their last decoder block's z projection, whose output nothing reads (their last
   block's state is only used for its shape); we do not build it. Their instantiation also draws
   their unused Gaussian z_L prior (the ladder) from the seeded stream, as their run does.
9. DCT scale: both from the driver's grey training images by the same formula (their
   DCT_dataset statistic; ours models.hierarchical.dct: the first 50,000 images, a zero scale
   replaced by 1, which Fashion-MNIST's 7 x 7 coefficients never have). In their run it comes
   from all 60,000 MNIST training images (before their random train/validation split).
10. Batches: theirs drop the last incomplete batch, ours keep it (none at 3,000 / 250).
11. Validation selects nothing on either side (the last epoch is tested); theirs is their "val"
    ELBO (one t per example for u), ours our validation ELBO (one t per example too).
12. Sampling of u: their DiffusionPrior.sample returns z_0, ours draws u ~ p(u | z_0)
    (models.hierarchical.vdm); only generation uses it, not this comparison.
13. Cost: each of their DVP importance samples runs 26 UNet passes (their test log_prob also
    predicts at one random t it does not use), ours 25: the measured runs use k = 20 for dvp_vae.

Measured on 2026-12-03 (1 epoch of the first 3,000 training images, i.e. 12 steps, 500
validation images, the first 100 test images, 1 thread on a shared 2-core CPU):

    python -m fidelity --authors-repo PATH --family dvp_ladder --seeds 0 1 2 \
        --epochs 1 --train-images 3000 --val-images 500 --test-images 100 --k 100 --threads 1

and the same with ``--family dvp_vae --k 20``. dvp_ladder, seeds 0 1 2: authors' code -395.13 +-
28.26, ours -452.44 +- 85.10 (seed spreads), ours - theirs -57.31 +- 32.96 (SE over seeds); seeds
3 4 5: +26.38 +- 56.73; all six: theirs -414.73 +- 35.56, ours -430.20 +- 73.51, ours - theirs
-15.46 +- 34.80, not significant; 70.3 / 68.3 s per epoch (theirs / ours, six seeds). dvp_vae,
seeds 0 1 2: authors' code -496.19 +- 48.55, ours -520.64 +- 38.22, ours - theirs -24.45 +-
46.76; seeds 3 4 5 (3, then 4 5 in a second invocation): -36.69 +- 19.61; all six: theirs
-472.96 +- 50.57, ours -503.53 +- 60.08, ours - theirs -30.57 +- 22.84 (per seed +68.9, -66.8,
-75.5, -75.9, -17.7, -16.4), not significant; 73.1 / 69.5 s per epoch. At 12 steps both sides
are far from trained and their seed spreads are 35-85 nats: the runs check the pipelines, not
the paper's numbers; the same-function check above is the sharp test.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import Tensor, nn

from fidelity import common
from fidelity.common import LADDER_MODULES, AuthorsLadder, authors_val_loss
from fidelity.dvp_weights import copy_into_ours, gradient_gap
from fidelity.hydra_config import authors_config
from sweeps.dvp_vae import ARCH, AUTHORS_TRAIN, TRAIN
from training.config import Config
from training.optim import loss_divisor
from training.trainer import build_model

REPO = "AKuzina/dvp_vae"
MARKER = "configs/experiment/mnist/dvp_vae.yaml"
MODULES = LADDER_MODULES
FAMILIES = ("dvp_ladder", "dvp_vae")
OURS = {"dvp_ladder": "ladder", "dvp_vae": "dvp_vae"}
EXPERIMENTS = {"dvp_ladder": "mnist/ladder", "dvp_vae": "mnist/dvp_vae"}
BUDGET = (
    "Fashion-MNIST dynamically binarised on both sides, the authors' MNIST configuration "
    "(Adamax 1e-2 wd 1e-6, batch 250, clip 5 of the bpd loss, cosine over 300 epochs) without "
    "EMA and warm-up, the last epoch tested, test grid t = i/T on both sides"
)
COMPARISON = {"train/ema_rate": 0.0, "train/lr_warmup_epochs": 0.0}
"""What the comparison changes from the authors' protocol, on both sides (module doc, 5 and 6):
no EMA and no learning-rate warm-up. The authors' values (EMA 0.999, 2 warm-up epochs) are
sweeps/dvp_vae.py's; ``COMPARISON = {}`` runs them on both sides (for budgets of many epochs)."""
MAX_DCT_IMAGES = 50_000
"""Their DCT_dataset's i_max: it stops after image i_max + 1."""


common.serve_stand_ins(MARKER)


def torch_compat_shim(authors) -> None:
    """Their noise schedule clamps t to [0, 1] and their loss weight is its derivative (a jvp);
    torch 2.14 made clamp's derivative 0 at the bounds (pytorch/pytorch#195931), so at the test
    grid's t = 1 their weight would be 0 and that term dropped. Their torch (1.12.1, their
    environment.yml) and every torch <= 2.13 give 1 on the closed interval; so does this."""
    module = authors.model_ddgm

    def forward(self, ts: Tensor) -> Tensor:
        t = torch.where((ts >= 0) & (ts <= 1), ts, ts.clamp(0, 1))
        return module._linear(self.gamma_min, self.gamma_max, t)

    module.LinearNoiseSchedule.forward = forward


# --- their config, composed as hydra would ------------------------------------------------------
def instantiate(authors, node):
    """hydra.utils.instantiate on plain dicts: children first, in key order; ``_target_``s in
    their modules come from the imported checkout (``authors``), the rest (torch) by import."""
    if isinstance(node, list):
        return [instantiate(authors, v) for v in node]
    if not isinstance(node, dict):
        return copy.deepcopy(node)
    kwargs = {k: instantiate(authors, v) for k, v in node.items() if k != "_target_"}
    if "_target_" not in node:
        return kwargs
    module, name = node["_target_"].rsplit(".", 1)
    owner = getattr(authors, module.replace(".", "_"), None) or importlib.import_module(module)
    return getattr(owner, name)(**kwargs)


def checkout(authors) -> Path:
    """The folder of the imported checkout (their configs are read from it)."""
    return Path(authors.model_vae.__file__).resolve().parents[1]


# --- our side -----------------------------------------------------------------------------------
def our_config(family: str, seed: int, epochs: int, root: str, authors: bool = False) -> Config:
    """Ours under the comparison's protocol (COMPARISON); ``authors``: under the authors' own
    (sweeps/dvp_vae.py's keys unchanged), what check_protocol holds their config to."""
    ours = OURS[family]
    grid = {"model/test_grid": "authors"} if ours == "dvp_vae" else {}
    return Config.from_dict({
        "family": ours, "data/dataset": "fashion_mnist", "data/root": root,
        "data/binarize": True, "data/center": False, **ARCH["mnist", ours], **grid,
        **TRAIN["mnist"], **AUTHORS_TRAIN["mnist"], **({} if authors else COMPARISON),
        "train/max_epochs": epochs, "train/patience": epochs, "train/test_last_epoch": True,
        "train/seed": seed, "train/device": "cpu",
    })  # fmt: skip


def check_protocol(cfg: dict, ours: Config) -> None:
    """Their composed training values against ours (sweeps/dvp_vae.py); ValueError on any gap."""
    train, data = cfg["train"], cfg["dataset"]["data_module"]
    pairs = {
        "lr": (train["optimizer"]["lr"], ours.train.lr),
        "weight_decay": (train["optimizer"]["weight_decay"], ours.train.weight_decay),
        "optimizer": (train["optimizer"]["_target_"], f"torch.optim.{ours.train.optimizer}"),
        "grad_clip": (train["grad_clip"], ours.train.grad_clip),
        "grad_skip": (train["grad_skip_thr"], ours.train.grad_skip),
        "ema_rate": (train["ema_rate"], ours.train.ema_rate),
        "warm-up epochs": (train["lr_warup_epochs"], ours.train.lr_warmup_epochs),
        "cosine epochs": (train["scheduler"]["T_max"], ours.train.lr_cosine_epochs),
        "min_lr": (train["scheduler"]["eta_min"], ours.train.min_lr),
        "batch": (data["batch_size"], ours.train.batch_size),
        "eval batch": (data["test_batch_size"], ours.train.eval_batch_size),
    }
    gaps = {k: v for k, v in pairs.items() if str(v[0]).lower() != str(v[1]).lower()
            and not (isinstance(v[1], float) and float(v[0]) == v[1])}  # fmt: skip
    if gaps:
        raise ValueError(f"their config and sweeps/dvp_vae.py differ (theirs, ours): {gaps}")


# --- their side ---------------------------------------------------------------------------------
class BinarisedLoader:
    """Their train loader's batches (shuffled, drop_last), each a fresh binarisation b of the grey
    images, given as (2 b - 1, label) as their loader's [-1, 1] tensors."""

    def __init__(self, x01: Tensor, batch_size: int):
        self.x01, self.batch_size = x01, batch_size

    def __len__(self) -> int:
        return self.x01.shape[0] // self.batch_size

    def __iter__(self):
        perm = torch.randperm(self.x01.shape[0])
        for i in range(len(self)):
            x = torch.bernoulli(self.x01[perm[i * self.batch_size : (i + 1) * self.batch_size]])
            yield [2 * x - 1, torch.zeros(x.shape[0], dtype=torch.long)]


def dct_scale(authors, x01: Tensor) -> Tensor:
    """Their DCT_dataset.scale: floor(DCT).abs().max(0) over the first i_max + 1 training images,
    each transformed alone in [-1, 1] as their calculate_dct (batch size 1) does."""
    dct = authors.datasets_dct.DCT(x01.shape[-2], x01.shape[-1])
    with torch.no_grad():
        coeffs = torch.cat([dct.dct2(2 * x - 1) for x in x01[: MAX_DCT_IMAGES + 1].split(1)])
    return torch.floor(coeffs).abs().max(0)[0]


def build_authors(authors, family: str, data, seed: int, ema_rate: float):
    """Their model (and EMA model, with ema_rate > 0) as their run_experiment.init_model makes
    them, and their composed config."""
    cfg = authors_config(checkout(authors), EXPERIMENTS[family])
    check_protocol(cfg, our_config(family, 0, 1, "", authors=True))
    common.seed(seed)
    ema = None
    with contextlib.redirect_stdout(io.StringIO()):  # their constructors print their shapes
        net = instantiate(authors, cfg["model"])
        if "context" in cfg["model"]["name"]:
            stats = SimpleNamespace(scale=dct_scale(authors, data.train))
            net.decoder.init_dct_normalization(SimpleNamespace(dataset=stats))
        if ema_rate > 0:
            ema = instantiate(authors, cfg["model"])
            ema.load_state_dict(copy.deepcopy(net.state_dict()))
            ema.requires_grad_(False)
    return net, ema, cfg


def train_authors(authors, family: str, data, seed: int, epochs: int, save_dir: str):
    """Their model built and trained their way (their trainer's loop) on our tensors; the last
    epoch's model (its EMA, with one) behind our contract, and the seconds per epoch (training
    and validation)."""
    common.drop_stand_ins()
    torch_compat_shim(authors)
    protocol = our_config(family, seed, epochs, "").train  # their values but for COMPARISON
    net, ema, cfg = build_authors(authors, family, data, seed, protocol.ema_rate)
    gap, loss_gap, grad_gap = same_weights_gap(authors, family, net, data)
    print(f"{family}, their initial weights in ours, no noise: max |log w ours - theirs| = "
          f"{gap:.2g} nats, |loss ours - theirs| = {loss_gap:.2g} bpd, gradients "
          f"{grad_gap:.2g} relative", flush=True)  # fmt: skip
    train, batch = cfg["train"], cfg["dataset"]["data_module"]
    warmup = protocol.lr_warmup_epochs
    opt = cfg["train"]["optimizer"]
    optimizer = torch.optim.Adamax(net.parameters(), lr=opt["lr"], eps=opt["eps"],
                                   weight_decay=opt["weight_decay"])  # fmt: skip
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=train["scheduler"]["T_max"], eta_min=train["scheduler"]["eta_min"]
    )
    loader = BinarisedLoader(data.train, batch["batch_size"])
    val = [2 * data.val - 1, torch.zeros(data.val.shape[0], dtype=torch.long)]
    args = SimpleNamespace(device="cpu", acc_grad=train["acc_grad"], grad_clip=train["grad_clip"],
                           grad_skip_thr=train["grad_skip_thr"],
                           ema_rate=protocol.ema_rate)  # fmt: skip
    start = time.perf_counter()
    for epoch in range(epochs):
        if epoch < warmup:  # their trainer.train's warm-up, per epoch
            for group in optimizer.param_groups:
                group["lr"] = opt["lr"] * (epoch + 1) / warmup
        authors.utils_trainer.run_epoch(args, epoch, net, loader, optimizer, mode="train",
                                        ema_model=ema)  # fmt: skip
        tested = net if ema is None else ema  # their trainer validates (and tests) the EMA
        authors_val_loss(tested, val, batch["test_batch_size"])  # selects nothing (module doc)
        scheduler.step()
    seconds = (time.perf_counter() - start) / epochs
    return AuthorsDVP(authors, family, tested), seconds


# --- the same function: their initial weights in our model ------------------------------------
@contextlib.contextmanager
def no_noise():
    """Every Gaussian draw of both sides zero (torch.randn_like, Tensor.normal_), every uniform
    one 1/2 (torch.rand: their and our training t): both passes become deterministic."""
    saved = torch.randn_like, torch.Tensor.normal_, torch.rand
    torch.randn_like = lambda t, *args, **kwargs: torch.zeros_like(t)
    torch.Tensor.normal_ = lambda self, *args, **kwargs: self.zero_()
    torch.rand = lambda *size, **kwargs: torch.full(
        size[0] if len(size) == 1 and not isinstance(size[0], int) else size, 0.5, **kwargs
    )
    try:
        yield
    finally:
        torch.randn_like, torch.Tensor.normal_, torch.rand = saved


def same_weights_gap(authors, family: str, net: nn.Module, data) -> tuple[float, float, float]:
    """Their initial weights (the zero-initialised tensors perturbed, so that every path counts)
    in our model, with no noise (no_noise): max |log w ours - theirs| over 8 test images,
    |training loss ours - theirs| (bits per dim) and the gradients' relative gap. Torch's random
    state is left as it was."""
    state = torch.get_rng_state()
    theirs = copy.deepcopy(net)
    with torch.no_grad():
        for p in theirs.parameters():
            if p.requires_grad and not p.any():
                p.add_(0.05 * torch.randn_like(p))
    cfg = our_config(family, 0, 1, "")
    ours = build_model(cfg, tuple(data.x_shape))
    ours.initialise(data.train)
    copy_into_ours(theirs, ours)
    x = data.test[:8]
    with no_noise():
        with torch.no_grad():
            ours.eval()
            log_w = ours.log_weight(x) - AuthorsDVP(authors, family, theirs).log_weight(x)
        ours.train()
        theirs.train()
        terms = ours(x)
        loss = -(terms.log_px_z - terms.kl).mean() / loss_divisor(cfg.train, data.x_shape)
        their_loss, _ = theirs.train_step([2 * x - 1, torch.zeros(x.shape[0])], mode="train")
        loss.backward()
        their_loss.backward()
    torch.set_rng_state(state)
    loss_gap = abs(loss.item() - their_loss.item())
    return log_w.abs().max().item(), loss_gap, gradient_gap(theirs, ours)


class AuthorsDVP(AuthorsLadder):
    """Their trained LADDER_VAE / CTX_LADDER_VAE behind our contract: log_likelihood(x, k) from
    one pass of their forward(mode="test") per sample: log p(x|z) + sum_l log p(z_l) - log q(z_l)
    at the sampled z; for u their log p(u) estimate (eval_is_ll) minus log q(u | x). Their batch
    is (2 x - 1, label) of the binary x."""
