"""The SPVAE authors' side of the SPVAE fidelity check (cambridge-mlg/SPVAE, TensorFlow 1 code).

Run with a TensorFlow 2 interpreter OUTSIDE this repository's venv (TF 1.x has no Python 3.11
wheel), from the repository's root; it imports nothing of ours (fidelity/__init__.py imports
nothing). Their code runs under ``tf.compat.v1`` with a small runtime shim (below), their files
unchanged and nothing of theirs copied here:

    python3 -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu tf_keras numpy \
        matplotlib   # tested: tensorflow-cpu 2.21.0, tf_keras 2.21.0, numpy 2.4.6
    /tmp/tfenv/bin/python -m fidelity.spvae_tf \
        --authors-repo /tmp/authors/cambridge-mlg+SPVAE --data /tmp/spvae_fid/data.npz \
        --seeds 0 1 2 --epochs 3 --epoch-batches 32 --k 100 --out /tmp/spvae_fid/authors.npz

``--data`` is the arrays our loader produced (``python -m fidelity.spvae prepare``), so both
sides see the same images; without it the Fashion-MNIST idx files are read with numpy and
preprocessed here as docs/specs/spvae.md#3-data-and-preprocessing describes (min-max, Gaussian
perturbation with reflection, min-max again; a seeded 10% validation split), which is NOT
pixel-identical to our loader's split and noise.

What is theirs: the graph (``scripts/sp_iwae._make_computationgraph``: their PoonRegionGraph,
SPNTFLayer, IWAETFLayer_Factory_globalinference with GaussianIWAE leaves, DenseNetArchitecture),
their data pipeline (``data/read_dataset.three_constant_datasets`` on .npy files written in their
layout, i.e. their shuffle_and_repeat(1000) iterator re-initialised every epoch), their model
(``src/model.DensityEstimatorModel``: compile, Adam, ``fit_earlystopping`` with its checkpoint on
each validation improvement) and their estimator (``model_output`` after loading k into the leaves'
k_samples variables, as their ``get_evaluation`` does). What is ours: the shim, the seeds
(``tf.set_random_seed``), one thread, the epoch cap (``--epochs``: their loop has none, only
early stopping, so the budget stops it from outside) and feeding the test images in batches of
``--eval-batch`` instead of 1 (each image's estimate is independent of its batch-mates).

The shim. ``import tensorflow as tf`` in their modules binds, while they are imported, a module
that forwards every attribute to ``tf.compat.v1`` (with v2 behaviour disabled) and adds
``tf.contrib`` with exactly the pieces their SPVAE path touches:
``contrib.layers.variance_scaling_initializer`` (re-implemented from TF 1's contrib source:
factor 2 default, FAN_IN, truncated_normal(0, sqrt(1.3 factor / n))), ``contrib.layers.
l2_regularizer`` / ``l1_regularizer`` (scale * l2_loss; only their unused ``MLP`` class uses it)
and ``contrib.data.shuffle_and_repeat`` (= ``tf.data.experimental.shuffle_and_repeat``).
``tf.layers.Dense`` needs Keras 2: the tf_keras package and TF_USE_LEGACY_KERAS=1 (set here);
their ``src/model.py`` imports matplotlib. Nothing else of TF 1 was missing for the SPVAE-MLP path
(tf.compat.v1 has variable_scope, get_variable, layers, Session, Saver, AdamOptimizer, tf.data
initialisable iterators, summaries, lgamma, check_numerics, assert_*).

Output (``--out``, .npz): ``ll`` [n_seeds, n_test] per-image log P^(x) by their estimator with k
samples per leaf, ``seeds``, ``k``, ``best_val`` and ``seconds`` per seed, ``reg_losses`` (how
many regularisation losses their graph collected: 0), ``init`` statistics of the freshly
initialised weights, and the run's settings (json in ``meta``); beside it, per seed,
``<out>_weights_seed<s>.npz``: their best checkpoint's variables by TF name and the built SPN's
structure (json), from which ``fidelity/spvae.py`` loads their weights into our model to evaluate
them with our estimator too.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import sys
import tempfile
import time
import types
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import tensorflow as real_tf  # noqa: E402

V1 = real_tf.compat.v1
MODULES = ("src", "scripts", "data")


class BudgetReached(Exception):
    """Raised from the training-iterator switch once --epochs epochs have run."""


# --- the tf.contrib shim ----------------------------------------------------------------------


def variance_scaling_initializer(factor=2.0, mode="FAN_IN", uniform=False, seed=None,
                                 dtype=real_tf.float32):  # fmt: skip
    """tf.contrib.layers.variance_scaling_initializer as in TF 1.x (contrib/layers/python/layers/
    initializers.py), on tf.compat.v1 random ops."""

    def _initializer(shape, dtype=dtype, partition_info=None):
        shape = [int(d) for d in shape]
        fan_in = float(shape[-2]) if len(shape) > 1 else float(shape[-1])
        fan_out = float(shape[-1])
        for dim in shape[:-2]:
            fan_in *= float(dim)
            fan_out *= float(dim)
        n = {"FAN_IN": fan_in, "FAN_OUT": fan_out, "FAN_AVG": (fan_in + fan_out) / 2.0}[mode]
        if uniform:
            limit = math.sqrt(3.0 * factor / n)
            return V1.random_uniform(shape, -limit, limit, dtype, seed=seed)
        return V1.truncated_normal(shape, 0.0, math.sqrt(1.3 * factor / n), dtype, seed=seed)

    return _initializer


def _regularizer(kind):
    def make(scale, scope=None):
        def reg(w):
            loss = real_tf.nn.l2_loss(w) if kind == "l2" else real_tf.reduce_sum(real_tf.abs(w))
            return real_tf.multiply(float(scale), loss, name=f"{kind}_regularizer")

        return reg

    return make


class _TFProxy(types.ModuleType):
    """``tensorflow`` as their TF 1 code sees it: tf.compat.v1 plus a minimal tf.contrib."""

    def __init__(self):
        super().__init__("tensorflow")
        self.contrib = types.SimpleNamespace(
            layers=types.SimpleNamespace(
                variance_scaling_initializer=variance_scaling_initializer,
                l2_regularizer=_regularizer("l2"),
                l1_regularizer=_regularizer("l1"),
            ),
            data=types.SimpleNamespace(
                shuffle_and_repeat=real_tf.data.experimental.shuffle_and_repeat
            ),
        )

    def __getattr__(self, name):
        return getattr(V1, name)


def import_authors(repo: Path) -> types.SimpleNamespace:
    """Their modules, imported from the checkout with ``tensorflow`` bound to the proxy during the
    import (the real module is put back afterwards; their modules keep the proxy as ``tf``)."""
    if not (repo / "src" / "tflayer_spn.py").is_file():
        raise SystemExit(f"error: {repo} is not a checkout of cambridge-mlg/SPVAE")
    V1.disable_v2_behavior()
    _ = V1.layers.Dense  # load tf_keras' legacy layers before the proxy goes in
    saved = {n: m for n, m in sys.modules.items() if n.split(".")[0] in MODULES}
    for n in saved:
        sys.modules.pop(n)
    real = sys.modules["tensorflow"]
    sys.modules["tensorflow"] = _TFProxy()
    sys.path.insert(0, str(repo))
    try:
        import scripts.sp_iwae as sp_iwae
        import src.model as model
        import src.tfdensitynet as tfdensitynet
    finally:
        sys.modules["tensorflow"] = real
        sys.path.remove(str(repo))
    return types.SimpleNamespace(sp_iwae=sp_iwae, model=model, tfdensitynet=tfdensitynet)


# --- data ---------------------------------------------------------------------------------------


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[4:8], "big")
    return np.frombuffer(raw, np.uint8, offset=16).reshape(n, 784)


def _minmax(x):
    lo, hi = x.min(1, keepdims=True), x.max(1, keepdims=True)
    return np.where(hi > lo, (x - lo) / np.maximum(hi - lo, 1e-12), 0.0).astype(np.float32)


def _perturb(x, rs):
    x = x + rs.randn(*x.shape).astype(np.float32) / 255.0
    x = np.where(x < 0, -x, x)
    return np.where(x > 1, 2.0 - x, x).astype(np.float32)


def idx_data(root: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Fashion-MNIST from the idx files, preprocessed the 'perturbed' way
    (docs/specs/spvae.md#3-data-and-preprocessing)."""
    train = _idx(root / "train-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    test = _idx(root / "t10k-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    rs = np.random.RandomState(seed)
    perm = rs.permutation(len(train))
    n_val = len(train) // 10
    splits = {"train": train[perm[n_val:]], "val": train[perm[:n_val]], "test": test}
    return {k: _minmax(_perturb(_minmax(v), rs)) for k, v in splits.items()}


def write_their_layout(d: dict, folder: Path, n_test: int) -> None:
    """<folder>/mnist/perturbed/combined/{train,validation,test}.npy and dataset_size.txt, which
    their three_constant_datasets reads (the name 'mnist' selects their 28x28, 7-pixel-cell
    graph; the images are Fashion-MNIST)."""
    out = folder / "mnist" / "perturbed" / "combined"
    out.mkdir(parents=True, exist_ok=True)
    test = d["test"][:n_test]
    for name, x in (("train", d["train"]), ("validation", d["val"]), ("test", test)):
        np.save(out / f"{name}.npy", np.ascontiguousarray(x.reshape(len(x), 784), np.float32))
    sizes = [[len(d["train"]), len(d["val"]), len(test)], [0, 0, 0]]  # two rows: their sum(0)
    np.savetxt(folder / "mnist" / "dataset_size.txt", np.array(sizes), fmt="%d")


# --- one run ------------------------------------------------------------------------------------


def init_stats(sess) -> dict:
    """max|w| * sqrt(fan_in) and Var(w) * fan_in over the leaves' kernels, and the sum logits'
    mean and std, of the freshly initialised graph."""
    kern = [v for v in V1.trainable_variables() if v.name.endswith("kernel:0")]
    bias = [v for v in V1.trainable_variables() if v.name.endswith("bias:0")]
    sums = [v for v in V1.trainable_variables() if "weights" in v.name]
    kv, bv, sv = sess.run([kern, bias, sums])
    scaled_max = max(float(np.abs(w).max() * math.sqrt(w.shape[0])) for w in kv)
    # pooled over all kernels: mean of w^2 * fan_in (the means are ~0)
    var_fan = float(sum((w**2).sum() * w.shape[0] for w in kv) / sum(w.size for w in kv))
    logits = np.concatenate([s.ravel() for s in sv])
    return {
        "kernels": len(kv),
        "max_abs_w_sqrt_fan_in": scaled_max,  # contrib default: < 2 sqrt(2.6) = 3.225
        "mean_var_w_times_fan_in": var_fan,  # contrib default: 2.6 * 0.7737 = 2.01
        "max_abs_bias": float(max(np.abs(b).max() for b in bv)),
        "sum_logits": int(logits.size),
        "sum_logit_mean": float(logits.mean()),
        "sum_logit_std": float(logits.std()),
    }


def spn_structure(spn) -> dict:
    """Their SPN as built, for loading their weights into ours: every leaf region's pixels and
    leaf variables' prefix, and every sum region's pixels with its partitions in the order their
    SumTFLayer concatenates them (sorted by partition id), each child pair in the order their
    ProductOp used (product column j2 * K1 + j1), and the name of its weight variable."""
    f = spn.splayer_factory
    leaves = [{"vars": sorted(int(v) for v in s.vars), "id": int(s.id)}
              for s in spn.region_graph.get_leaf_scopes()]  # fmt: skip
    sums = []
    for scope, layer in f.sumlayer.items():
        parts = []
        for part in sorted(scope.children, key=lambda b: b.id):
            a, b = part.children  # the same set, iterated as their ProductOp did
            parts.append([sorted(int(v) for v in a.vars), sorted(int(v) for v in b.vars)])
        sums.append({"vars": sorted(int(v) for v in scope.vars), "partitions": parts,
                     "weights": layer.W.name, "k": int(layer.K)})  # fmt: skip
    return {"leaves": leaves, "sums": sums}


def run_seed(authors, data_dir: str, seed: int, args, x_test: np.ndarray) -> dict:
    built = {}

    class RecordingSPN(authors.sp_iwae.SPNTFLayer):
        def __call__(self, x):
            built["spn"] = self
            return super().__call__(x)

    authors.sp_iwae.SPNTFLayer = RecordingSPN
    with real_tf.Graph().as_default():
        V1.set_random_seed(seed)
        np.random.seed(seed)
        dg, output = authors.sp_iwae._make_computationgraph(
            dataset="mnist", data_dir=data_dir, category=-1, dist_type="perturbed",
            take_frac=1, batch_size=128, nnodes_recog=tuple(args.nnodes),
            nnodes_gener=tuple(args.nnodes), nz=args.nz, k_samples=5, sumK=2, leafK=2,
        )  # fmt: skip
        model = authors.model.DensityEstimatorModel(dg.next_batch, output)
        model.compile()
        reg = V1.get_collection(V1.GraphKeys.REGULARIZATION_LOSSES)
        config = V1.ConfigProto(intra_op_parallelism_threads=args.threads,
                                inter_op_parallelism_threads=1)  # fmt: skip
        sess = V1.Session(config=config)
        model.init_session(session=sess)
        stats = init_stats(sess)
        save_dir = tempfile.mkdtemp(prefix="spvae-authors-")
        model.init_trainingutils(save_dir=save_dir)
        epochs = {"n": 0}
        switch = dg.switch2trainds

        def capped(s):
            if epochs["n"] >= args.epochs:
                raise BudgetReached
            epochs["n"] += 1
            switch(s)

        dg.switch2trainds = capped
        start = time.perf_counter()
        best_val = None
        try:
            model.fit_earlystopping(
                dg, learning_rate=args.lr, validation_period=args.epoch_batches, maxStrikes=10
            )
        except BudgetReached:
            pass
        train_seconds = time.perf_counter() - start
        model.load_last_checkpoint()  # their checkpoint of the best validation epoch
        names = [v.name for v in V1.trainable_variables()]
        weights = dict(zip(names, sess.run(V1.trainable_variables()), strict=True))
        structure = spn_structure(built["spn"])
        # their get_evaluation: k samples per leaf through the k_samples variables
        for v in V1.global_variables():
            if "Variable" in v.name:
                assert "Leaf" in v.name
                v.load(args.k, sess)
        outs = []
        start = time.perf_counter()
        for i in range(0, len(x_test), args.eval_batch):
            batch = x_test[i : i + args.eval_batch].reshape(-1, 784)
            outs.append(sess.run(output, feed_dict={dg.next_batch: batch}).reshape(-1))
        eval_seconds = time.perf_counter() - start
        sess.close()
        return {
            "ll": np.concatenate(outs),
            "train_seconds": train_seconds,
            "eval_seconds": eval_seconds,
            "epochs": epochs["n"],
            "reg_losses": len(reg),
            "init": stats,
            "best_val": best_val,
            "weights": weights,
            "structure": structure,
        }


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m fidelity.spvae_tf",
                                description=__doc__.splitlines()[0])  # fmt: skip
    p.add_argument("--authors-repo", type=Path, required=True)
    p.add_argument("--data", type=Path, help="npz from fidelity.spvae prepare")
    p.add_argument("--idx-root", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--epoch-batches", type=int, default=128)
    p.add_argument("--nnodes", type=int, nargs="+", default=[30, 30])
    p.add_argument("--nz", type=int, default=25)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--test-images", type=int, default=1000)
    p.add_argument("--eval-batch", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    authors = import_authors(args.authors_repo.expanduser().resolve())
    if args.data:
        z = np.load(args.data)
        d = {k: z[k].reshape(len(z[k]), 784).astype(np.float32) for k in ("train", "val", "test")}
    else:
        d = idx_data(args.idx_root)
    x_test = d["test"][: args.test_images]
    runs = []
    with tempfile.TemporaryDirectory(prefix="spvae-data-") as data_dir:
        write_their_layout(d, Path(data_dir), len(x_test))
        for seed in args.seeds:
            r = run_seed(authors, data_dir, seed, args, x_test)
            runs.append(r)
            print(f"seed {seed}: authors' code mean log P^ (k={args.k}) {r['ll'].mean():.2f} "
                  f"over {len(r['ll'])} test images; {r['epochs']} epochs in "
                  f"{r['train_seconds']:.0f} s, eval {r['eval_seconds']:.0f} s; reg losses "
                  f"{r['reg_losses']}; init {json.dumps(r['init'])}", flush=True)  # fmt: skip
    meta = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        args.out,
        ll=np.stack([r["ll"] for r in runs]).astype(np.float64),
        seeds=np.array(args.seeds),
        k=args.k,
        seconds=np.array([r["train_seconds"] for r in runs]),
        eval_seconds=np.array([r["eval_seconds"] for r in runs]),
        reg_losses=np.array([r["reg_losses"] for r in runs]),
        init=json.dumps([r["init"] for r in runs]),
        meta=json.dumps(meta),
    )
    for seed, r in zip(args.seeds, runs, strict=True):  # their trained weights, for our estimator
        w = args.out.with_name(f"{args.out.stem}_weights_seed{seed}.npz")
        np.savez(w, structure=json.dumps(r["structure"]), **r["weights"])
    print(f"wrote {args.out} and the weights of each seed beside it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
