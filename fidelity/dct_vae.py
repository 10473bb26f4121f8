"""The DCT-VAE authors' side of the fidelity driver (AKuzina/dct_vae, the user's checkout): our
``ladder`` and ``dct_vae`` against their LADDER_VAE and CTX_LADDER_VAE with the MNIST experiment
configs (configs/experiment/mnist_ladder.yaml, mnist_dct_ladder.yaml).

Their code is imported from the checkout (the driver's import_authors). Its folders ``model``,
``utils`` and ``datasets`` have no ``__init__.py`` (namespace packages), so MODULES names the
submodules used besides the three top-level names (common.LADDER_MODULES). Their modules import
hydra, wandb, omegaconf and torchmetrics, which this environment does not have and which nothing
used here needs: while the checkout is on sys.path (only during import_authors) a meta-path
finder (common.serve_stand_ins) serves empty stand-ins for those names (``wandb.log`` a no-op, the
rest raising when called); they are dropped from sys.modules afterwards. Nothing else is shimmed:
their modules run as released on CPU under torch 2.x (the driver's ``.cuda()`` shim is not even
reached).

Their side, as their run_experiment.py would build and train it, without hydra: the encoder,
decoder and VAE classes (LadderEncoder; LadderDecoder given their config's Gaussian z_L prior,
which it discards (a Normal becomes None), so the top layer's prior comes from its s_to_p net on
the zero state, as in their runs; ContextLadderDecoder with their DiffusionPrior over a
UNetModel), constructed with the experiment configs' values in the order
hydra's recursive instantiate builds them, after ``torch.manual_seed(seed)`` and
``np.random.seed(seed)`` (their configs use seed 123 for every run; here the run's seed). The
encoder's ``dset`` is "mnist" (the MNIST experiment): their fashion_mnist dataset config would set
"fashion_mnist", which their ``prep_x`` refuses (ValueError), and their "mnist" transform is the
identity on [-1, 1]. Training is their own epoch function ``utils.trainer.run_epoch`` (their
``train_step`` loss in bits per dim, backward, clip_grad_norm 1.0, the step skipped when the norm
is >= 100 or the loss is NaN, as their optim_step) with AdamW(lr 1e-3, wd 1e-2, eps 1e-8), batch
128, shuffled, drop_last as their train loader, no EMA, no KL warm-up (beta 1), free bits off;
their cosine schedule (T_max 600 epochs) is left out on both sides (constant lr: a few epochs of a
600-epoch cosine barely move it). Their batches are (x in [-1, 1], label[, context]): x = 2 g - 1
of our grey training images g = data.train in [0, 1] (data/binarize keeps grey levels there), so
their dynamic binarisation happens where theirs does, inside their loss (``eval_log_p_x``:
Bernoulli((x + 1) / 2) per loss evaluation). The DCT-VAE's context is their
``DCT(28, 28).dct2(g)[..., :7, :7]`` of the grey image, as their DCT_dataset; the decoder's
dct_scale is set by their ``init_dct_normalization`` from floor(DCT).abs().max(0) over the
training images given. Model selection: after every epoch their validation loss (``train_step``
in "val" mode, the mean of per-batch ``loss`` over batches of 512, as their run_epoch) on the
driver's validation images, the best epoch kept (their trainer keeps the best-validation
checkpoint; it also counts the initial model as a candidate to beat, so with no improving epoch it
would have no checkpoint at all; here only trained epochs compete). Seconds per epoch include that
validation pass, as our trainer's epoch includes its own.

Our side (our_config): the same architecture (sweeps/dct_vae.ARCH of mnist), Fashion-MNIST
dynamically binarised (data/binarize, data/center=false), AdamW 1e-3 / 1e-2, constant lr, grad
clip 1.0 and skip 100 on the bits-per-dim loss (train/loss_scale=bpd), NaN steps skipped, ema 0,
batch 128, best-validation epoch (the driver's train_ours), our defaults for everything else.

The estimator, behind our contract (AuthorsHierarchical.log_likelihood, common.AuthorsLadder's):
log-mean-exp over k of single-pass importance weights from their ``forward(batch, mode="test")``:

    log w = log p(x | z[, u]) + sum_l [log p(z_l | z_>l[, u]) - log q(z_l | z_>l, x)]  (+ log p(u))

with their Normal.log_prob at the sampled z and their Bernoulli.log_prob of x. The test images x
are our binarised ones in {0, 1}; their encoder is given 2 x - 1, i.e. it sees the binarised
image, as ours does, and log p(x | z) is scored on x itself. Ours is LadderVAE.log_likelihood, the
same importance weights (iwae_weights="sampled"). The driver runs both with the same test images
and seeds.

Differences between the two sides, every one known:

1. Their estimator's per-pass context term is their DiffusionPrior's own test estimate of
   log p(u) (``eval_is_ll``, is_k = 10: the log-mean-exp of 10 full-T bounds whose T steps are
   drawn independently, which is no importance weight and can exceed log p(u)), recomputed inside
   every one of the k passes, as their estimate_nll does; ours estimates log p(u) once per image by
   10-trajectory importance weights (ddpm_estimator="importance") and adds it to the k-sample
   estimate of log p(x | u).
2. Their diffusion bound leaves out L_T = KL(q(u_T | u) || N(0, I)) and discretises its last step
   with overlapping bins (half-width 1/(2^b - 1) around centres 2/2^b apart, a tanh CDF), so its
   "probabilities" sum to more than one; ours counts L_T and uses disjoint bins with exact normal
   CDFs (our defaults prior_term=true, authors_bins=false). Both make their log p(u) higher.
3. Their context is quantised with the +-1/4-bin dither in test mode too (their ``quantize``
   always dithers), so u can differ between the k passes; ours has no dither in evaluation.
4. Context at test: both sides compute u from the image they are scored on, the binarised test
   image (their code computes it from the grey test image in its loader, side information that a
   likelihood of the binarised image does not model;
   docs/specs/hierarchical.md#10-deviations-from-the-authors-code). Their model is trained on
   contexts of grey images (their protocol) and tested on contexts of binarised ones; ours is
   trained and tested on contexts of binarised images (our deviation, models/hierarchical/
   dct_vae.py). Their dct_scale comes from the driver's training images; in their run it comes from
   all 60,000 MNIST training images (before their random train/validation split).
5. Validation: both on the driver's validation images, binarised once (their loader gives grey
   images, binarised afresh each pass); their DCT-VAE's validation contexts are of those binarised
   images too. Their validation loss is the ELBO with the diffusion bound over all T steps (their
   "val" mode), ours our validation ELBO (our bound over all T steps).
6. Their Bernoulli clamps p to [1e-7, 1 - 1e-7] (at most -16.1 nats per pixel); ours uses logits.
7. Batches: theirs drop the last incomplete batch (drop_last), ours keep it.
8. Initialisation: each side its own code's (their init and ours are the same scheme,
   docs/specs/hierarchical.md#13-decoder; not weight-for-weight). Their DiffusionPrior draws its
   training step t with numpy, seeded here with the run's seed. Trainable parameters: theirs 656,617
   (ladder) / 696,439 (DCT-VAE), ours 644,633 / 687,789; the difference is what their modules build
   and never use (the skip conv and gate of their non-residual prior and posterior blocks, the DCT
   decoder's y_block; tests/unit/test_hierarchical.py), which get no gradient.
9. Cost: 1 makes each of their DCT-VAE importance samples 70 UNet passes (10 bounds x T = 7), so
   their DCT-VAE evaluation is ~5x ours at k = 20 on a CPU; the measured runs use a smaller k for
   dct_vae than for ladder.

Measured (seeds 0 1 2, 1 epoch of the first 3,000 training images, 500 validation images, the
first 100 test images, 1 thread on a shared 2-core CPU): ladder, k = 100: authors' code -327.33
+- 15.21, ours -335.84 +- 20.49 (seed spreads), ours - theirs -8.51 +- 9.53 (SE over seeds), not
significant; 41.6 / 40.5 s per epoch (theirs / ours). dct_vae, k = 20: authors' code -352.96 +-
13.19, ours -357.14 +- 5.70, ours - theirs -4.18 +- 10.61, not significant; 48.9 / 54.8 s per
epoch. At 23 steps both sides are far from trained: this checks the pipelines, not the papers'
numbers.
"""

from __future__ import annotations

import contextlib
import copy
import io
import time
from types import SimpleNamespace

import torch
from torch import Tensor, nn

from fidelity import common
from fidelity.common import LADDER_MODULES, X_SHAPE, AuthorsLadder, authors_val_loss
from sweeps.dct_vae import ARCH
from training.config import Config

REPO = "AKuzina/dct_vae"
MARKER = "model/context_ladder_vae.py"
MODULES = LADDER_MODULES
FAMILIES = ("ladder", "dct_vae")
BATCH, EVAL_BATCH, LR, WEIGHT_DECAY, CLIP, SKIP = 128, 512, 1e-3, 1e-2, 1.0, 100.0
BUDGET = (
    f"Fashion-MNIST dynamically binarised, the authors' MNIST architecture, batch {BATCH}, "
    f"AdamW {LR:g} wd {WEIGHT_DECAY:g}, constant lr, clip {CLIP:g} / skip {SKIP:g} (bpd loss), "
    "best validation epoch on both sides"
)
common.serve_stand_ins(MARKER)


# --- our side -----------------------------------------------------------------------------------
def our_config(family: str, seed: int, epochs: int, root: str) -> Config:
    return Config.from_dict({
        "family": family, "data/dataset": "fashion_mnist", "data/root": root,
        "data/binarize": True, "data/center": False, **ARCH["mnist", family],
        "train/optimizer": "adamw", "train/lr": LR, "train/weight_decay": WEIGHT_DECAY,
        "train/lr_schedule": "constant", "train/grad_clip": CLIP, "train/grad_skip": SKIP,
        "train/skip_nan_steps": True, "train/loss_scale": "bpd", "train/ema_rate": 0.0,
        "train/batch_size": BATCH, "train/eval_batch_size": EVAL_BATCH,
        "train/max_epochs": epochs, "train/patience": epochs, "train/seed": seed,
        "train/device": "cpu",
    })  # fmt: skip


# --- their side ---------------------------------------------------------------------------------
def build_authors(authors, family: str) -> nn.Module:
    """Their VAE with the MNIST experiment config's values (mnist_ladder.yaml or
    mnist_dct_ladder.yaml over configs/model/*), modules in hydra's instantiation order."""
    dct = family == "dct_vae"
    scales = [4, 3] if dct else [4, 4]
    scale_ch_mult = 1.0 if dct else 1.25
    shared = dict(num_ch=32, scale_ch_mult=scale_ch_mult, block_ch_mult=1, data_ch=1,
                  data_dim=28, weight_norm=False, batch_norm=False, activation="silu",
                  start_scale_at_x=False)  # fmt: skip

    def encoder():
        return authors.model_encoder.LadderEncoder(
            num_init_blocks=0, num_blocks_per_scale=1, latent_scales=list(scales),
            latent_width=[1, 1], dset="mnist", **shared,
        )  # fmt: skip

    decoder_args = dict(num_postprocess_blocks=0, likelihood="bernoulli", num_mix=1,
                        latent_width=[1, 1], latent_scales=list(scales), num_blocks_per_scale=1,
                        arch_mode="separate", var_mode="softplus", softplus_beta=0.7,
                        disconnect=False, **shared)  # fmt: skip
    vae_args = dict(likelihood="bernoulli", beta_start=1, beta_end=1, warmup=0, is_k=1000,
                    latent_scales=list(scales), free_bits_thr=0)  # fmt: skip
    if not dct:  # ladder_vae.yaml: decoder (its z_L_prior first), then encoder
        prior = authors.utils_distribution.create_gaussian_prior(size=(1, 7, 7))
        dec = authors.model_decoder.LadderDecoder(
            z_L_prior=prior, z_L_bits=None, condition_on_last=False, **decoder_args
        )
        return authors.model_vae.LADDER_VAE(encoder(), dec, **vae_args)
    # context_ladder_vae.yaml: encoder, then decoder (its z_L_prior's UNet, the prior, itself)
    enc = encoder()
    unet = authors.utils_thirdparty_unet.UNetModel(
        image_size=7, in_channels=1, out_channels=2, model_channels=32, num_res_blocks=3,
        dropout=0.1, num_heads=2, channel_mult=[1], use_scale_shift_norm=True,
        attention_resolutions="tuple([])",
    )  # fmt: skip
    prior = authors.model_ddgm.DiffusionPrior(
        model=unet, T=7, beta_schedule="linear", t_sample="uniform", parametrization="x",
        num_bits=2, ll="discretized_gaussian", use_noise_scale=False,
    )  # fmt: skip
    dec = authors.model_context_decoder.ContextLadderDecoder(
        z_L_prior=prior, z_L_bits=2, condition_on_last=True, ctx_type="dct", ctx_size=7,
        ctx_posterior_var="delta", ctx_posterior_var_init=-10, **decoder_args,
    )  # fmt: skip
    return authors.model_context_ladder_vae.CTX_LADDER_VAE(enc, dec, **vae_args)


def dct_context(authors, x01: Tensor, size: int = 7) -> Tensor:
    """Their DCT_dataset's context of images in [0, 1]: DCT(28, 28).dct2, top-left size x size."""
    dct = authors.datasets_dct.DCT(X_SHAPE[1], X_SHAPE[2])
    return torch.cat([dct.dct2(x01[i : i + 1000])[:, :, :size, :size]
                      for i in range(0, x01.shape[0], 1000)])  # fmt: skip


def batches(authors, family: str, x01: Tensor) -> list[Tensor]:
    """Their batch layout: x in [-1, 1], a label (unused), and the DCT-VAE's raw DCT context."""
    parts = [2 * x01 - 1, torch.zeros(x01.shape[0], dtype=torch.long)]
    if family == "dct_vae":
        parts.append(dct_context(authors, x01))
    return parts


def train_authors(authors, family: str, data, seed: int, epochs: int, save_dir: str):
    """Their model built and trained their way on our tensors; the best validation epoch behind
    our contract, and the seconds per epoch (training and validation)."""
    common.drop_stand_ins()
    common.seed(seed)
    with contextlib.redirect_stdout(io.StringIO()):  # their constructors print their shapes
        net = build_authors(authors, family)
    train = batches(authors, family, data.train)  # grey levels: their loss binarises them
    val = batches(authors, family, data.val)  # binarised once by our loader
    if family == "dct_vae":  # their init_dct_normalization reads its loader's dataset stats
        ctx = train[-1]
        stats = SimpleNamespace(mean=ctx.mean(0), std=ctx.std(0),
                                scale=torch.floor(ctx).abs().max(0)[0])  # fmt: skip
        net.decoder.init_dct_normalization(SimpleNamespace(dataset=stats))
    optimizer = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=WEIGHT_DECAY, eps=1e-8)
    dataset = torch.utils.data.TensorDataset(*train)
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, drop_last=True)
    args = SimpleNamespace(device="cpu", loss_per_pixel=False, acc_grad=1, grad_clip=CLIP,
                           grad_skip_thr=SKIP, ema_rate=0)  # fmt: skip
    best, best_loss = None, float("inf")
    start = time.perf_counter()
    for epoch in range(epochs):
        authors.utils_trainer.run_epoch(args, epoch, net, loader, optimizer, mode="train")
        loss = authors_val_loss(net, val, EVAL_BATCH)  # nats per image
        if loss < best_loss:
            best, best_loss = copy.deepcopy(net.state_dict()), loss
    seconds = (time.perf_counter() - start) / epochs
    if best is not None:
        net.load_state_dict(best)
    return AuthorsHierarchical(authors, family, net), seconds


class AuthorsHierarchical(AuthorsLadder):
    """Their trained LADDER_VAE / CTX_LADDER_VAE behind our contract: log_likelihood(x, k); for
    the context their log p(u) estimate (eval_is_ll) minus log delta = 0."""

    def batch(self, x: Tensor) -> list[Tensor]:
        """x binarised: their encoder sees 2 x - 1; the DCT-VAE's context from x (module doc, 4)."""
        return batches(self.authors, self.family, x)
