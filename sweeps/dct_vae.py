"""DCT-VAE's sweep (Kuzina & Tomczak, arXiv 2302.09976): the Ladder VAE and DCT-VAE.

    python sweeps/dct_vae.py --budget smoke               # Fashion-MNIST, a small network, CPU
    ray submit cluster/gpu.yaml sweeps/dct_vae.py --budget paper
    python -m results table dct_vae

Cells (docs/specs/hierarchical.md, sections 2, 4, 5): ``ladder`` and ``dct_vae`` on dynamically
binarised MNIST and OMNIGLOT (Bernoulli) and on 8-bit CIFAR-10 and SVHN (the discretised
mixture of 10 logistics). Every paper cell fixes the authors' architecture (ARCH, their
``configs/experiment/*.yaml``; tests/unit/test_hierarchical.py checks its parameter count against
docs/specs/hierarchical.md#8-parameter-counts) and their training settings (TRAIN: optimiser, cosine
schedule, clip and skip thresholds, epochs, early stopping) and data (the papers' splits with seed
123, CIFAR-10's horizontal flip). What is left to search is search_spaces.hierarchical without those
keys: the learning rate, weight decay and EMA, plus the clip and batch size on MNIST and OMNIGLOT.

The smoke budget runs both families on Fashion-MNIST with a small network (SMOKE_ARCH) in
minutes on a CPU. The paper budget evaluates the winner with K = 1000 importance samples (full
stochastic passes; docs/specs/hierarchical.md#6-evaluation) over 3 seeds; the authors used K = 100
on CIFAR-10 and SVHN.
"""

import sys

from sweeps.cells import Budget, Cell
from sweeps.engine.cli import main

PAPER = "dct_vae"

LIKELIHOOD = {"mnist": "bernoulli", "omniglot": "bernoulli", "fashion_mnist": "bernoulli",
              "cifar10": "logistic_mixture", "svhn": "logistic_mixture"}  # fmt: skip

# docs/specs/hierarchical.md#4-data
DATA = {  # the papers' splits (seed 123), binarisation or 8-bit levels, CIFAR's flip
    "mnist": {"data/binarize": True, "data/val_size": 5000, "data/split_seed": 123},
    "omniglot": {"data/binarize": True, "data/val_size": 1000, "data/split_seed": 123},
    "cifar10": {"data/pixels": "discrete", "data/val_size": 5000, "data/split_seed": 123,
                "data/hflip": True},
    "svhn": {"data/pixels": "discrete"},
    "fashion_mnist": {"data/binarize": True},
}  # fmt: skip
for _keys in DATA.values():
    _keys["data/center"] = False

_RGB = {"model/encoder": "per_scale", "model/start_scale_at_x": True, "model/weight_norm": True,
        "model/latent_width": 8, "model/scale_ch_mult": 1.0, "model/block_ch_mult": 0.25,
        "model/num_mix": 10, "model/condition_on_last": True, "model/enc_blocks": 1}  # fmt: skip
_RGB_DCT = {"model/ctx_size": 6, "model/ctx_bits": 5, "model/diffusion_steps": 40,
            "model/diffusion_schedule": "cosine", "model/unet_channels": 64,
            "model/unet_mult": "1,1", "model/unet_dropout": 0.2}  # fmt: skip
_BINARY = {"model/num_ch": 32, "model/block_ch_mult": 1.0, "model/latent_width": 1,
           "model/enc_blocks": 1}  # fmt: skip
_BINARY_DCT = {"model/ctx_bits": 2, "model/diffusion_steps": 7,
               "model/diffusion_schedule": "linear", "model/unet_channels": 32,
               "model/unet_mult": "1", "model/unet_dropout": 0.1}  # fmt: skip
CIFAR_STANDARDISATION = {"model/input_mean": 120.63838, "model/input_std": 64.16736}

# docs/specs/hierarchical.md#2-latent-hierarchies
ARCH = {  # (dataset, family): the authors' experiment configs
    ("mnist", "ladder"): {**_BINARY, "model/latent_scales": "4,4", "model/scale_ch_mult": 1.25},
    ("mnist", "dct_vae"): {**_BINARY, **_BINARY_DCT, "model/latent_scales": "4,3",
                         "model/ctx_size": 7},
    ("omniglot", "ladder"): {**_BINARY, "model/latent_scales": "4,4",
                             "model/scale_ch_mult": 1.25},
    ("omniglot", "dct_vae"): {**_BINARY, **_BINARY_DCT, "model/latent_scales": "4,3",
                              "model/ctx_size": 8,
                              "model/condition_on_last": False},
    ("cifar10", "ladder"): {**_RGB, **CIFAR_STANDARDISATION, "model/num_ch": 384,
                            "model/latent_scales": "10,10,5,3,0,1"},
    ("cifar10", "dct_vae"): {**_RGB, **_RGB_DCT, **CIFAR_STANDARDISATION, "model/num_ch": 380,
                             "model/latent_scales": "10,5,5,2,0,1"},
    ("svhn", "ladder"): {**_RGB, "model/num_ch": 320, "model/latent_scales": "5,5,5,4,0,1"},
    ("svhn", "dct_vae"): {**_RGB, **_RGB_DCT, "model/num_ch": 300,
                          "model/latent_scales": "5,5,5,2,0,1"},
}  # fmt: skip

_ADAMW = {"train/optimizer": "adamw", "train/lr_schedule": "cosine", "train/skip_nan_steps": True}
# docs/specs/hierarchical.md#5-training, DCT-VAE columns
TRAIN = {  # the loss in bits per dim, as the thresholds assume
    "mnist": {**_ADAMW, "train/lr_cosine_epochs": 600, "train/min_lr": 1e-5,
              "train/max_epochs": 600, "train/patience": 300, "train/grad_skip": 100.0,
              "train/eval_batch_size": 512, "train/loss_scale": "bpd"},
    "cifar10": {**_ADAMW, "train/lr_cosine_epochs": 8000, "train/min_lr": 5e-5,
                "train/max_epochs": 8000, "train/patience": 300, "train/grad_clip": 0.2,
                "train/grad_skip": 100.0, "train/batch_size": 96, "train/eval_batch_size": 192,
                "train/loss_scale": "bpd_per_dim"},
    "svhn": {**_ADAMW, "train/lr_cosine_epochs": 1200, "train/min_lr": 5e-5,
             "train/max_epochs": 1200, "train/patience": 100, "train/grad_clip": 1.0,
             "train/grad_skip": 400.0, "train/batch_size": 96, "train/eval_batch_size": 256,
             "train/loss_scale": "bpd_per_dim"},
}  # fmt: skip
TRAIN["omniglot"] = TRAIN["mnist"]
AUTHORS_TRAIN = {"mnist": {"train/lr": 1e-3, "train/weight_decay": 1e-2, "train/grad_clip": 1.0,
                           "train/batch_size": 128},
                 "cifar10": {"train/lr": 4e-4, "train/weight_decay": 1e-2},
                 "svhn": {"train/lr": 4e-4, "train/weight_decay": 1e-2}}  # fmt: skip
"""The searched keys' values in the authors' configs (the fidelity benchmark runs these)."""
AUTHORS_TRAIN["omniglot"] = AUTHORS_TRAIN["mnist"]
AMP = {("cifar10", "dct_vae"): {"train/amp": "fp16"}}
"""Mixed precision, on only for the authors' CIFAR-10 DCT-VAE."""

SMOKE_ARCH = {  # a few minutes per cell on 2 CPU cores (benchmarks/hierarchical.py)
    "ladder": {"model/num_ch": 8, "model/latent_scales": "1,1", "model/latent_width": 1,
               "model/block_ch_mult": 0.5, "model/enc_blocks": 1},
    "dct_vae": {"model/num_ch": 8, "model/latent_scales": "1,1", "model/latent_width": 1,
                "model/block_ch_mult": 0.5, "model/enc_blocks": 1, "model/ctx_size": 7,
                "model/ctx_bits": 2, "model/diffusion_steps": 7, "model/unet_channels": 16,
                "model/unet_blocks": 1},
}  # fmt: skip


def cell(family: str, dataset: str) -> Cell:
    if dataset == "fashion_mnist":
        fixed = {**DATA[dataset], **SMOKE_ARCH[family], "train/optimizer": "adamw"}
    else:
        fixed = {**DATA[dataset], **TRAIN[dataset], **ARCH[dataset, family],
                 **AMP.get((dataset, family), {})}  # fmt: skip
    return Cell(PAPER, family, dataset, LIKELIHOOD[dataset], fixed=fixed)


CELLS = [cell(f, d) for d in ("fashion_mnist", "mnist", "omniglot", "cifar10", "svhn")
         for f in ("ladder", "dct_vae")]  # fmt: skip

BUDGETS = {
    "smoke": Budget(
        trials=2,
        max_epochs=3,
        grace_epochs=1,
        reduction_factor=2,
        patience=3,
        eval_k=20,
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
        max_epochs=8000,
        grace_epochs=50,
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
