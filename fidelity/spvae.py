"""SPVAE beside the authors' TensorFlow 1 code (cambridge-mlg/SPVAE): a two-step flow.

The fidelity driver (python -m fidelity) imports an authors' PyTorch repository into our
process; the SPVAE authors' code is TensorFlow 1 and runs only in a separate TensorFlow 2 venv
under ``tf.compat.v1`` (fidelity/spvae_tf.py). So the comparison runs in three steps from the
repository's root, the middle one in that venv, with the same images, seeds, budget and k on both
sides:

    # 1. our loader's arrays (Fashion-MNIST, min-max, perturbed pixels, our seeded split)
    .venv/bin/python -m fidelity.spvae prepare --out /tmp/spvae_fid/data.npz
    # 2. their model, their training loop, their estimator (TensorFlow venv, see its docstring)
    /tmp/tfenv/bin/python -m fidelity.spvae_tf \
        --authors-repo /tmp/authors/cambridge-mlg+SPVAE --data /tmp/spvae_fid/data.npz \
        --seeds 0 1 2 --epochs 3 --nnodes 16 16 --nz 5 --k 100 --test-images 500 \
        --out /tmp/spvae_fid/authors.npz
    # 3. ours with the same settings (our venv; may run beside step 2), then the comparison
    .venv/bin/python -m fidelity.spvae ours --data /tmp/spvae_fid/data.npz \
        --seeds 0 1 2 --epochs 3 --nnodes 16 16 --nz 5 --k 100 --test-images 500 \
        --out /tmp/spvae_fid/ours.npz
    .venv/bin/python -m fidelity.spvae compare --ours /tmp/spvae_fid/ours.npz \
        --authors /tmp/spvae_fid/authors.npz
    # (several runs per side with the same settings and other seeds: pass all files, pooled)

Both runs store their settings (seeds, epochs, epoch batches, sizes, lr, k, test images);
``compare`` refuses to pair runs whose settings differ. Each side's per-image estimate is its
own code's estimator at k samples per leaf (theirs: ``model_output`` with their k_samples
variables set to k, as their ``get_evaluation``; ours: ``SPVAE.log_likelihood``); both estimate
the same quantity,
E log SPN(p^_k) <= log P(x) (docs/specs/spvae.md#16-objective-and-estimator), so the per-image
difference averaged over seeds has a paired standard error (fidelity.common.summarise).
With the weight files of step 2, ``compare`` also loads their trained weights into our model
(``load_authors_weights``) and evaluates them by our estimator: the per-image difference between
the two estimators on the same weights checks the estimators (and the weight mapping).

Measured (2026-12-02; 16,16 / nz 5, 3 epochs of 128 batches, k 100, 500 test images, 6 seeds a
side, ~22 CPU-minutes in all): authors' code 1680.36 +- 3.34, ours 1675.98 +- 6.97 (seed
spreads); ours - theirs -4.4 +- 2.5 (SE over seeds), not significant; our estimator minus
theirs on their weights -0.06 +- 0.14 nats per image.

Protocol, both sides: SPVAE with MLP leaves on a 4x4 grid of 7-pixel cells, Gaussian leaves on
'perturbed' pixels, sumK = leafK = 2, K = 5 in training, Adam lr 0.01, batch 128, 128-batch epochs,
validation after each epoch (K = 5), the best validation epoch evaluated. Their iterator restarts
each epoch behind a 1,000-image shuffle buffer (docs/specs/spvae.md#4-training-protocol), so their
training sees about the first 17,384 rows of the training array: ours runs with
``data/spvae_train_subset=true`` (the same rows). Their validation is 10 chunks of a shuffled
repeating stream (about the whole set), ours the whole set; their early stopping (11 strikes) and
ours (patience 11) never trigger within a budget of a few epochs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

from fidelity.common import per_image_difference, per_image_ll, summarise, train_ours
from training.config import Config
from training.data import load_data
from training.trainer import build_model

VAL_FRACTION = 1 / 30
"""2,000 validation images: both sides validate every epoch; the full 6,000 cost more than
the training epoch's forward passes on one thread."""


def our_config(seed: int, meta: dict, root: str = "") -> Config:
    hidden = ",".join(str(n) for n in meta.get("nnodes", [30, 30]))
    return Config.from_dict({
        "family": "spvae", "data/dataset": "fashion_mnist", "data/root": root,
        "data/val_fraction": VAL_FRACTION, "data/minmax": True, "data/center": False,
        "data/pixels": "perturbed", "data/spvae_train_subset": True,
        "model/likelihood": "gaussian", "model/cell_size": 7, "model/hidden_dims": hidden,
        "model/latent_dim": meta.get("nz", 25), "model/samples": 5,
        "train/lr": meta.get("lr", 0.01), "train/batch_size": 128,
        "train/epoch_batches": meta.get("epoch_batches", 128),
        "train/max_epochs": meta.get("epochs", 3), "train/patience": 11,
        "train/seed": seed, "train/device": "cpu",
    })  # fmt: skip


def prepare(args) -> int:
    """Our loader's validation/test arrays and the FULL training split (their pipeline restricts
    itself to its first rows; ours does the same through data/spvae_train_subset)."""
    cfg = our_config(0, {}, args.data_root)
    data = load_data(dataclasses.replace(cfg.data, spvae_train_subset=False))
    arrays = {k: getattr(data, k).numpy().reshape(-1, 784) for k in ("train", "val", "test")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **arrays)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))
    return 0


SETTINGS = ("seeds", "epochs", "epoch_batches", "nnodes", "nz", "lr", "k", "test_images")
"""What both sides must share; step 2 stores them in its npz (``meta``), step 3 checks them."""


def ours(args) -> int:
    """Train and evaluate ours for every seed; per-image values and the settings to ``--out``."""
    meta = {name: getattr(args, name) for name in SETTINGS}
    torch.set_num_threads(args.threads)
    arrays = np.load(args.data)
    lls, seconds = [], []
    for seed in args.seeds:
        cfg = our_config(seed, meta, args.data_root)
        data = load_data(cfg.data)
        x = data.test[: args.test_images]
        # the same images as the authors' side (the arrays of step 1)
        rows = data.train.shape[0]
        same = np.allclose(x.numpy().reshape(-1, 784), arrays["test"][: len(x)]) and np.allclose(
            data.train.numpy().reshape(-1, 784), arrays["train"][:rows]
        )
        assert same, "our loader's images differ from step 1's arrays"
        model, s = train_ours(cfg, data)
        seconds.append(s)
        lls.append(per_image_ll(model, x, args.k, seed=1000 + seed).numpy())
        print(f"seed {seed}: ours {lls[-1].mean():.2f} ({s:.0f} s/epoch)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, ll=np.stack(lls), seeds=np.array(args.seeds), k=args.k,
             seconds=np.array(seconds), meta=json.dumps(meta))  # fmt: skip
    print(f"wrote {args.out}")
    return 0


# --- their trained weights in our model ------------------------------------------------------


def _rect(pixels: list[int], cell: int = 7, width: int = 28) -> tuple[int, int, int, int]:
    """The cell rectangle (r0, r1, c0, c1) of a set of raster pixel indices."""
    rows = {p // width // cell for p in pixels}
    cols = {p % width // cell for p in pixels}
    return min(rows), max(rows) + 1, min(cols), max(cols) + 1


@torch.no_grad()
def load_authors_weights(model, path: Path) -> None:
    """Their best checkpoint (fidelity/spvae_tf.py's ``*_weights_seed<s>.npz``) into our SPVAE of
    the same sizes: leaf t of their leaf region over cell i is our leaf i * leaf_k + t (encoder
    groups: var_mean_mlp -> head 0, var_sigma_mlp -> head 1; decoder: gen_mlp -> 0, var_mlp -> 1;
    TF kernels are [in, out] like ours); their sum weights W [1, J, K] of a region go to our logits
    [K, J'] column by column, matching partitions by their child rectangles and products by
    their flattening (column j2 * K1 + j1 of children (A1, A2)) against ours (i * K_b + j)."""
    z = np.load(path)
    structure = json.loads(str(z["structure"]))
    graph, spn, leaves = model.graph, model.spn, model.leaves
    leaf_k, n_leaves = model.cfg.leaf_k, leaves.n_leaves
    nets = {
        "var_mean_mlp": (leaves.encoder, 0),
        "var_sigma_mlp": (leaves.encoder, 1),
        "activation/gen_mlp": (leaves.decoder, 0),
        "activation/var_mlp": (leaves.decoder, 1),
    }
    used = set()
    for leaf in structure["leaves"]:
        cell = graph.index[_rect(leaf["vars"])]
        for t in range(leaf_k):
            for net_name, (net, head) in nets.items():
                g = head * n_leaves + cell * leaf_k + t
                layers = [f"hid_{i}" for i in range(len(net.weights) - 1)] + ["out"]
                for i, layer in enumerate(layers):
                    prefix = f"Leaf{leaf['id']}/{t}/{net_name}/{layer}"
                    net.weights[i][g].copy_(torch.from_numpy(z[f"{prefix}/kernel:0"]))
                    net.biases[i][g, 0].copy_(torch.from_numpy(z[f"{prefix}/bias:0"]))
                    used.update((f"{prefix}/kernel:0", f"{prefix}/bias:0"))
    by_parent: dict[int, list[tuple[int, int]]] = {}
    for parent, a, b in graph.partitions:
        by_parent.setdefault(parent, []).append((a, b))
    for region_spec in structure["sums"]:
        region = graph.index[_rect(region_spec["vars"])]
        layer, row = spn._where[region]
        w = z[region_spec["weights"]][0]  # [J, K]
        used.add(region_spec["weights"])
        offsets, start = {}, 0
        for a, b in by_parent[region]:
            offsets[(a, b)] = start
            start += len(spn.nodes[a]) * len(spn.nodes[b])
        logits = spn.layers[layer].logits
        col = 0
        for first, second in region_spec["partitions"]:
            c1, c2 = graph.index[_rect(first)], graph.index[_rect(second)]
            k1, k2 = len(spn.nodes[c1]), len(spn.nodes[c2])
            for j2 in range(k2):
                for j1 in range(k1):
                    if (c1, c2) in offsets:  # their A1 is our a
                        ours_col = offsets[(c1, c2)] + j1 * k2 + j2
                    else:
                        ours_col = offsets[(c2, c1)] + j2 * k1 + j1
                    logits[row, :, ours_col] = torch.from_numpy(w[col])
                    col += 1
        assert col == start == int(spn.layers[layer].mask[row].sum()), "partitions differ"
    missing = set(z.files) - used - {"structure"}
    assert not missing, f"weights not loaded: {sorted(missing)[:5]}"


def authors_by_our_estimator(args, runs: list[tuple[Path, int]], meta: dict):
    """Their trained weights evaluated by our estimator, per (authors npz, seed); None if any
    weight file is missing."""
    lls = []
    for path, seed in runs:
        weights = path.with_name(f"{path.stem}_weights_seed{seed}.npz")
        if not weights.is_file():
            return None
        cfg = our_config(seed, meta, args.data_root)
        data = load_data(cfg.data)
        model = build_model(cfg, data.x_shape)
        load_authors_weights(model, weights)
        x = data.test[: meta["test_images"]]
        lls.append(per_image_ll(model, x, meta["k"], seed=1000 + seed))
    return lls


def _side(paths: list[Path]) -> tuple[dict, list[torch.Tensor], list[float], list[tuple]]:
    """Runs of one side from one or more npz files: settings (seeds pooled), per-seed values,
    seconds, and (file, seed) of every run."""
    metas, lls, seconds, where = [], [], [], []
    for path in paths:
        z = np.load(path)
        metas.append(json.loads(str(z["meta"])))
        lls += [torch.from_numpy(r).double() for r in z["ll"]]
        seconds += [float(t) for t in z["seconds"]]
        where += [(path, int(seed)) for seed in z["seeds"]]
    meta = {**metas[0], "seeds": [seed for _, seed in where]}
    for other in metas[1:]:
        for key in SETTINGS:
            if key != "seeds" and other[key] != meta[key]:
                raise SystemExit(f"error: runs of one side differ in {key}")
    return meta, lls, seconds, where


def compare(args) -> int:
    """Both sides' means, seed spreads, the paired per-image difference, the seed-level standard
    error of the difference, and (with their weight files) their weights by our estimator."""
    meta, ours_ll, ours_s, _ = _side(args.ours)
    theirs_meta, theirs_ll, theirs_s, theirs_where = _side(args.authors)
    for key in SETTINGS:
        if meta[key] != theirs_meta[key]:
            ours_v, theirs_v = meta[key], theirs_meta[key]
            raise SystemExit(f"error: different {key}: ours {ours_v}, theirs {theirs_v}")
    for i, seed in enumerate(meta["seeds"]):
        print(f"seed {seed}: authors' code {theirs_ll[i].mean():.2f} "
              f"({theirs_s[i] / meta['epochs']:.0f} s/epoch wall, with their per-epoch test "
              f"pass), ours {ours_ll[i].mean():.2f} ({ours_s[i]:.0f} s/epoch wall)")  # fmt: skip
    print(f"\nspvae: Fashion-MNIST perturbed, nnodes {meta['nnodes']}, nz {meta['nz']}, "
          f"{meta['epochs']} epochs of {meta['epoch_batches']} batches, lr {meta['lr']}; test "
          f"log P^ (k = {meta['k']} per leaf, each side's own estimator) of the first "
          f"{meta['test_images']} test images, 1 thread")  # fmt: skip
    print("\n".join(summarise(ours_ll, theirs_ll)))
    # The paired SE above is over images for these seeds; between seeds the means move more.
    means = [torch.stack([r.mean() for r in side]) for side in (ours_ll, theirs_ll)]
    se = math.sqrt(sum(m.var().item() / m.numel() for m in means))
    print(f"seed-level: {means[0].mean() - means[1].mean():+.2f} ± {se:.2f} (SE from the two "
          f"sides' seed spreads, {means[0].numel()} + {means[1].numel()} seeds)")  # fmt: skip
    torch.set_num_threads(args.threads)
    by_ours = authors_by_our_estimator(args, theirs_where, meta)
    if by_ours is not None:
        print("\ntheir trained weights loaded into our model, by OUR estimator (same k, images):")
        print("\n".join(summarise(ours_ll, by_ours)))
        print("our estimator on their weights minus their estimator on their weights, per image:")
        d, se = per_image_difference(by_ours, theirs_ll)
        print(f"  {d.mean():+.3f} ± {se:.3f} (paired SE over {d.numel()} images)")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m fidelity.spvae",
                                description=__doc__.splitlines()[0])  # fmt: skip
    sub = p.add_subparsers(dest="step", required=True)
    pp = sub.add_parser("prepare", help="write our loader's arrays for the TensorFlow side")
    pp.add_argument("--out", type=Path, required=True)
    pp.add_argument("--data-root", default="")
    po = sub.add_parser("ours", help="train and evaluate ours with the TensorFlow side's settings")
    po.add_argument("--data", type=Path, required=True, help="the npz of step 1")
    po.add_argument("--out", type=Path, required=True)
    po.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    po.add_argument("--epochs", type=int, default=3)
    po.add_argument("--epoch-batches", type=int, default=128)
    po.add_argument("--nnodes", type=int, nargs="+", default=[30, 30])
    po.add_argument("--nz", type=int, default=25)
    po.add_argument("--lr", type=float, default=0.01)
    po.add_argument("--k", type=int, default=100)
    po.add_argument("--test-images", type=int, default=1000)
    po.add_argument("--threads", type=int, default=1)
    po.add_argument("--data-root", default="")
    pc = sub.add_parser("compare", help="summarise the two sides' per-image values")
    pc.add_argument("--ours", type=Path, nargs="+", required=True, help="npz files of 'ours'")
    pc.add_argument("--authors", type=Path, nargs="+", required=True,
                    help="npz files of step 2 (same settings, other seeds: pooled)")  # fmt: skip
    pc.add_argument("--threads", type=int, default=1)
    pc.add_argument("--data-root", default="")
    args = p.parse_args()
    return {"prepare": prepare, "ours": ours, "compare": compare}[args.step](args)


if __name__ == "__main__":
    sys.exit(main())
