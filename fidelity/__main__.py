"""Our model beside the authors' code: same data, seeds, budget and estimator, paired per image.

    python -m fidelity --authors-repo ~/src/VLAE --family vae \
        [--seeds 0 1 2] [--epochs 10] [--test-images 2000] [--k 1000] [--threads 2]

``--authors-repo`` is a checkout of the authors' code that the user provides (the family's
adapter names the repository); nothing is downloaded and none of it enters this repository. Their
modules are imported from that folder and run unchanged but for a CPU shim (their ``.cuda()``
calls return the tensor or module as it is). Each adapter (``fidelity/<repo>.py``) trains their
model their way and puts the result behind our model contract; ours is trained by our trainer
under the authors' protocol. Both sides' best epochs are then evaluated by the same
estimator, our importance-sampled ``log_likelihood`` with k samples, on the same first
``--test-images`` test images with the same random stream, image by image, so the difference of
the two sides has a paired standard error. ``--train-images`` / ``--val-images`` keep the first N
training / validation (selection) images on both sides; ``--t`` sets T of the families with steps.

Adapters: fidelity.vlae (yookoon/VLAE: vae, savae, vae_hf, vae_iaf, vlae), fidelity.svae
(nicola-decao/s-vae-pytorch: svae, nvae), fidelity.psvae
(trdavidson/increasing-expressivity-s-vae: psvae), fidelity.dct_vae (AKuzina/dct_vae: ladder,
dct_vae), fidelity.dvp_vae (AKuzina/dvp_vae: dvp_ladder, dvp_vae). SPVAE's authors' code is
TensorFlow 1: its comparison runs in steps (fidelity.spvae, fidelity.spvae_tf).

An adapter exposes: REPO (what the checkout is), MARKER (a file it must have), MODULES (its
top-level modules, imported under their own names), FAMILIES, BUDGET (one line for the report),
``our_config(family, seed, epochs, root)`` and ``train_authors(authors, family, data, seed,
epochs, save_dir) -> (model behind our contract, seconds per epoch)``; one with a T also STEPS
(the default T), STEPPED (its families with a T) and a ``t=STEPS`` keyword on both functions.
What the adapters share is fidelity.common.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from fidelity import dct_vae, dvp_vae, psvae, svae, vlae
from fidelity.common import cpu_shim, import_authors, per_image_ll, summarise, train_ours
from training.data import load_data

ADAPTERS = (vlae, svae, psvae, dct_vae, dvp_vae)
FAMILIES = {family: adapter for adapter in ADAPTERS for family in adapter.FAMILIES}


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m fidelity", description=__doc__.splitlines()[0])
    p.add_argument("--authors-repo", type=Path, required=True,
                   help="checkout of the family's authors' repository")  # fmt: skip
    p.add_argument("--family", choices=sorted(FAMILIES), default="vae")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--test-images", type=int, default=2000)
    p.add_argument("--train-images", type=int, default=0,
                   help="train both sides on the first N training images (0: all)")  # fmt: skip
    p.add_argument("--val-images", type=int, default=0,
                   help="select the epoch on the first N validation (and, with validation = test, "
                   "test) images on both sides (0: all)")  # fmt: skip
    p.add_argument("--t", type=int, default=None,
                   help="T (SVI steps, flows, updates) where the family has one (default: the "
                   "adapter's)")  # fmt: skip
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-root", default="", help="data/root (default: the usual lookup)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    adapter = FAMILIES[args.family]
    cpu_shim()
    authors = import_authors(adapter, args.authors_repo.expanduser().resolve())
    ours, theirs = [], []
    steps = {} if args.t is None else {"t": args.t}  # only adapters with a T take it
    for seed in args.seeds:
        cfg = adapter.our_config(args.family, seed, args.epochs, args.data_root, **steps)
        data = load_data(cfg.data)
        if args.train_images:  # the same first rows on both sides
            data.train = data.train[: args.train_images]
        if args.val_images:  # e.g. the authors' per-epoch test-set pass, on both sides
            data.val = data.val[: max(args.val_images, args.test_images)]
            if cfg.data.validation == "test":  # a copy of the test split: keep them the same
                data.test = data.val
        x = data.test[: args.test_images]
        model, s_ours = train_ours(cfg, data)
        ours.append(per_image_ll(model, x, args.k, seed=1000 + seed))
        with tempfile.TemporaryDirectory(prefix="authors-") as save_dir:
            their_model, s_theirs = adapter.train_authors(
                authors, args.family, data, seed, args.epochs, save_dir, **steps
            )
        theirs.append(per_image_ll(their_model, x, args.k, seed=1000 + seed))
        print(f"seed {seed}: authors' code {theirs[-1].mean():.2f} ({s_theirs:.1f} s/epoch), "
              f"ours {ours[-1].mean():.2f} ({s_ours:.1f} s/epoch)", flush=True)  # fmt: skip
    n_train = args.train_images or "all"
    stepped = args.family in getattr(adapter, "STEPPED", ())
    t = f"T = {args.t or adapter.STEPS}, " if stepped else ""
    print(f"\n{args.family}: {adapter.BUDGET}, {n_train} training images, {args.epochs} epochs, "
          f"{t}test LL (k = {args.k}) of "
          f"the first {args.test_images} test images, {args.threads} threads")  # fmt: skip
    print("\n".join(summarise(ours, theirs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
