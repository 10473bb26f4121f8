"""DVP-VAE's sweep (Kuzina & Tomczak, TMLR 2024): the Ladder VAE in its DVP form and DVP-VAE.

    python sweeps/dvp_vae.py --budget smoke               # Fashion-MNIST, a small network, CPU
    ray submit cluster/gpu.yaml sweeps/dvp_vae.py --budget paper
    python -m results table dvp_vae
    python -m results plot samples --storage sweep-results

Cells (docs/specs/hierarchical.md, sections 2, 4, 5; the DVP-VAE columns): ``ladder`` and
``dvp_vae`` on dynamically binarised MNIST and OMNIGLOT (Bernoulli) and on 8-bit CIFAR-10 (the
discretised mixture of 10 logistics with the RGB mean coefficients). Every paper cell fixes the
authors' architecture (ARCH, their ``configs/experiment/*/*.yaml``; tests/unit/test_dvp_vae.py
checks its parameter count against docs/specs/hierarchical.md#8-parameter-counts) and training
settings (TRAIN: Adamax, the cosine schedule with its warm-up, the clip thresholds of the
bits-per-dim loss, epochs, early stopping), with the papers' splits (seed 123). Their ladder is the
"ladder" family with the DVP form's keys (models.hierarchical.dvp_form.DVP_FORM): the same backbone
without the context. The authors have no CIFAR-10 ladder config; the project's is DVP-VAE's CIFAR-10
architecture without the context [P]. Searched (search_spaces.hierarchical without the fixed keys):
the Adamax learning rate, weight decay and EMA, and on MNIST and OMNIGLOT the clip and batch size.

The winner is tested on its best-validation EMA weights; ``--set train/test_last_epoch=true``
tests the last epoch's, as the authors' code does. The smoke budget runs both families on
Fashion-MNIST with a small network (SMOKE_ARCH) in minutes on a CPU. The paper budget evaluates
the winner with K = 1000 importance samples (docs/specs/hierarchical.md#6-evaluation), each with the
T-point grid bound of log p(u), over 3 seeds.
"""

import sys

from models.hierarchical.dvp_form import DVP_FORM
from sweeps.cells import Budget, Cell
from sweeps.engine.cli import main

PAPER = "dvp_vae"

LIKELIHOOD = {"mnist": "bernoulli", "omniglot": "bernoulli", "fashion_mnist": "bernoulli",
              "cifar10": "logistic_mixture"}  # fmt: skip

# docs/specs/hierarchical.md#4-data
DATA = {  # the papers' splits (seed 123); DVP-VAE's CIFAR-10 runs without the flip
    "mnist": {"data/binarize": True, "data/val_size": 5000, "data/split_seed": 123},
    "omniglot": {"data/binarize": True, "data/val_size": 1000, "data/split_seed": 123},
    "cifar10": {"data/pixels": "discrete", "data/val_size": 5000, "data/split_seed": 123},
    "fashion_mnist": {"data/binarize": True},
}  # fmt: skip
for _keys in DATA.values():
    _keys["data/center"] = False

_FORM = {f"model/{k}": v for k, v in DVP_FORM.items()}
_BINARY = {**_FORM, "model/latent_width": 1}
CIFAR = {**_FORM, "model/num_ch": 128, "model/block_ch_mult": 0.75,
         "model/latent_scales": "10,8,6,4", "model/latent_width": 3,
         "model/start_scale_at_x": True, "model/enc_blocks": 4, "model/num_mix": 10,
         "model/input_mean": 120.63838, "model/input_std": 64.16736}  # fmt: skip
# docs/specs/hierarchical.md, sections 3.1, 3.3
CONTEXT = {  # the context and its prior per dataset
    "mnist": {"model/ctx_size": 7, "model/gamma_min": -6.0, "model/gamma_max": 7.0,
              "model/diffusion_steps": 25, "model/unet_channels": 16, "model/unet_blocks": 2,
              "model/unet_dropout": 0.0},
    "omniglot": {"model/ctx_size": 5, "model/gamma_min": -6.0, "model/gamma_max": 7.0,
                 "model/diffusion_steps": 50, "model/unet_channels": 32, "model/unet_blocks": 3,
                 "model/unet_dropout": 0.05},
    "cifar10": {"model/ctx_size": 7, "model/gamma_min": -10.0, "model/gamma_max": 7.0,
                "model/diffusion_steps": 25, "model/unet_channels": 32, "model/unet_blocks": 3,
                "model/unet_dropout": 0.0},
}  # fmt: skip
_SIZES = {
    "mnist": {**_BINARY, "model/num_ch": 32, "model/block_ch_mult": 1.0},
    "omniglot": {**_BINARY, "model/num_ch": 80, "model/block_ch_mult": 0.5},
    "cifar10": CIFAR,
}
ARCH = {(d, "ladder"): _SIZES[d] for d in _SIZES} | {
    (d, "dvp_vae"): {**_SIZES[d], **CONTEXT[d]} for d in _SIZES
}
"""(dataset, family): the authors' experiment configs
(docs/specs/hierarchical.md#2-latent-hierarchies)."""

_ADAMAX = {"train/optimizer": "adamax", "train/lr_schedule": "cosine", "train/ema_rate": 0.999,
           "train/skip_nan_steps": True, "train/loss_scale": "bpd"}  # fmt: skip
# docs/specs/hierarchical.md#5-training, DVP-VAE columns
TRAIN = {  # the loss in bits per dim, as the clip thresholds assume
    "mnist": {**_ADAMAX, "train/lr_cosine_epochs": 300, "train/min_lr": 1e-5,
              "train/lr_warmup_epochs": 2, "train/max_epochs": 300, "train/patience": 150,
              "train/eval_batch_size": 500},
    "omniglot": {**_ADAMAX, "train/lr_cosine_epochs": 500, "train/min_lr": 1e-4,
                 "train/lr_warmup_epochs": 2, "train/max_epochs": 500, "train/patience": 200,
                 "train/eval_batch_size": 1000},
    "cifar10": {**_ADAMAX, "train/lr_cosine_epochs": 3000, "train/min_lr": 1e-4,
                "train/lr_warmup_epochs": 5, "train/max_epochs": 3000, "train/patience": 300,
                "train/grad_clip": 150.0, "train/batch_size": 128,
                "train/eval_batch_size": 512},
}  # fmt: skip
PATIENCE = {("omniglot", "ladder"): {"train/patience": 150}}
"""The authors' OMNIGLOT ladder stops after 150 epochs without a gain, DVP-VAE after 200."""
AUTHORS_TRAIN = {"mnist": {"train/lr": 1e-2, "train/weight_decay": 1e-6, "train/grad_clip": 5.0,
                           "train/batch_size": 250},
                 "omniglot": {"train/lr": 1e-2, "train/weight_decay": 1e-6,
                              "train/grad_clip": 2.0, "train/batch_size": 250},
                 "cifar10": {"train/lr": 3e-3, "train/weight_decay": 1e-6}}  # fmt: skip
"""The searched keys' values in the authors' configs (the fidelity benchmark runs these)."""

SMOKE_ARCH = {  # minutes per cell on 2 CPU cores (benchmarks/hierarchical.py)
    "ladder": {**_BINARY, "model/num_ch": 8, "model/latent_scales": "1,1",
               "model/block_ch_mult": 0.5, "model/enc_blocks": 1},
    "dvp_vae": {**_BINARY, "model/num_ch": 8, "model/latent_scales": "1,1",
                "model/block_ch_mult": 0.5, "model/enc_blocks": 1, "model/ctx_size": 7,
                "model/diffusion_steps": 5, "model/unet_channels": 16, "model/unet_blocks": 1},
}  # fmt: skip


def cell(family: str, dataset: str) -> Cell:
    if dataset == "fashion_mnist":
        # no EMA: at 0.999 the average of a smoke run's 30 steps is its initial weights
        fixed = {**DATA[dataset], **SMOKE_ARCH[family], **_ADAMAX, "train/ema_rate": 0.0}
    else:
        fixed = {**DATA[dataset], **TRAIN[dataset], **ARCH[dataset, family],
                 **PATIENCE.get((dataset, family), {})}  # fmt: skip
    return Cell(PAPER, family, dataset, LIKELIHOOD[dataset], fixed=fixed)


CELLS = [cell(f, d) for d in ("fashion_mnist", "mnist", "omniglot", "cifar10")
         for f in ("ladder", "dvp_vae")]  # fmt: skip

BUDGETS = {
    "smoke": Budget(
        trials=2,
        max_epochs=3,
        grace_epochs=1,
        reduction_factor=2,
        patience=3,
        eval_k=10,
        eval_seeds=1,
        fixed={
            "train/epoch_batches": 10,
            "data/val_fraction": 0.02,
            "train/batch_size": 64,
            "train/eval_batch_size": 500,
        },
    ),  # fmt: skip
    "paper": Budget(
        trials=16,
        max_epochs=3000,
        grace_epochs=30,
        reduction_factor=3,
        patience=300,
        eval_k=1000,
        eval_seeds=3,
        winner_seeds=3,  # the winner trained with 3 seeds (sweeps.engine.seeds)
    ),  # fmt: skip
}
"""The paper budget's max_epochs and patience are ceilings: each cell's TRAIN keys set its own."""

DEFAULT_DATASETS = {"smoke": ["fashion_mnist"]}

if __name__ == "__main__":
    sys.exit(main(PAPER, CELLS, BUDGETS, DEFAULT_DATASETS))
