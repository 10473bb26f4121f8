"""A cell's winner on the test set: its importance-sampled log-likelihood, once per evaluation
seed, and its sample grids, each in a Ray task with a trial's resources.

    evaluate_winner(cell, budget, storage, resources) -> the new ``evaluations`` rows
"""

from __future__ import annotations

import json

import ray
import torch
from ray import tune

from results import samples, store
from results.tables import winners
from sweeps.cells import Budget, Cell
from sweeps.provenance import provenance
from sweeps.tune_glue import setup
from training import checkpoint as ckpt_io
from training.config import Config
from training.data import Data
from training.evaluate import estimate_log_likelihood, sample_grids, shows_mean


def _winner(ckpt_path: str, config: dict) -> tuple[Config, Data, torch.nn.Module]:
    """The winner's config, data and model with its test weights loaded."""
    cfg, data, model = setup(config)
    with tune.Checkpoint(ckpt_path).as_directory() as d:
        saved = ckpt_io.load(d, data.test.device)
        model.load_state_dict(ckpt_io.test_weights(saved, cfg.train.test_last_epoch))
    return cfg, data, model


@ray.remote
def _evaluate(ckpt_path: str, config: dict, k: int, seed: int) -> dict:
    cfg, data, model = _winner(ckpt_path, config)
    return estimate_log_likelihood(model, data.test, k, seed=seed)


@ray.remote
def _sample(ckpt_path: str, config: dict) -> tuple[dict, bool] | str:
    """(the winner's sample grids, whether they are decoder means), or why there are none."""
    cfg, data, model = _winner(ckpt_path, config)
    try:
        return sample_grids(model, data=data), shows_mean(model)
    except Exception as e:  # optional output: the evaluation rows stand without it
        return f"{type(e).__name__}: {e}"


def write_samples(
    storage: str, cell: Cell, trial_id: str, drawn: ray.ObjectRef | tuple | str
) -> str | None:
    """Store the outcome of a _sample task (an ObjectRef, or its value); the path written, or
    None after one warning line: a failed draw never costs the evaluation its rows."""
    try:
        out = ray.get(drawn) if isinstance(drawn, ray.ObjectRef) else drawn
        if isinstance(out, str):
            raise RuntimeError(out)
        grids, mean = out
        return samples.write(storage, cell.name, trial_id, cell.family, grids, mean)
    except Exception as e:  # a lost worker, a failed draw, an unwritable storage
        why = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        print(f"[{cell.name}] warning: no sample grids for trial {trial_id} ({why})")
        return None


def evaluate_winner(cell: Cell, budget: Budget, storage: str, resources: dict) -> list[dict]:
    """Test log-likelihood of the cell's best-by-validation trial, once per evaluation seed, and
    its sample grids (training.evaluate.sample_grids, seed 0) under ``samples/`` when it has
    none yet, drawn in a task of its own beside the evaluation seeds'."""
    best = winners(store.load(storage, "trials", sweep=cell.name), cell.paper)
    if best.empty:
        print(f"[{cell.name}] no completed trial: nothing to evaluate")
        return []
    w = best.iloc[0]
    config = json.loads(w["config_json"])
    done = store.load(storage, "evaluations", sweep=cell.name)
    seeds = [
        s
        for s in range(budget.eval_seeds)
        if done.empty
        or not (
            (done["trial_id"] == w["trial_id"]) & (done["seed"] == s) & (done["k"] == budget.eval_k)
        ).any()
    ]
    opts = {"num_cpus": resources.get("cpu", 1), "num_gpus": resources.get("gpu", 0)}
    draw = None
    if not samples.stored(storage, cell.name, w["trial_id"]):
        draw = _sample.options(**opts).remote(w["checkpoint_path"], config)
    task = _evaluate.options(**opts)
    outs = ray.get([task.remote(w["checkpoint_path"], config, budget.eval_k, s) for s in seeds])
    rows = [
        {"sweep": cell.name, "trial_id": w["trial_id"], "seed": s, **o, **provenance()}
        for s, o in zip(seeds, outs, strict=True)
    ]
    for r in rows:
        store.write(storage, "evaluations", cell.name, f"{w['trial_id']}-seed{r['seed']}", [r])
    if draw is not None and (path := write_samples(storage, cell, w["trial_id"], draw)):
        print(f"   sample grids: {path}")
    return rows
