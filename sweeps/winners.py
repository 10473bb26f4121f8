"""A cell's winner on the test set: its importance-sampled log-likelihood, once per evaluation
seed, each in a Ray task with a trial's resources, and its sample grids (drawn by the first).

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
from sweeps.trial import setup
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
def _evaluate(ckpt_path: str, config: dict, k: int, seed: int | None, draw: bool) -> tuple:
    """(the winner's test log-likelihood with ``seed``, or None without one; its sample grids
    when ``draw``, else None). One task per seed; the first also draws the grids, so that a
    cell's end starts one worker and loads its winner once, not once more for the grids."""
    cfg, data, model = _winner(ckpt_path, config)
    ll = None if seed is None else estimate_log_likelihood(model, data.test, k, seed=seed)
    return ll, _sample(model, data) if draw else None


def _sample(model: torch.nn.Module, data: Data) -> tuple[dict, bool] | str:
    """(the winner's sample grids, whether they are decoder means), or why there are none."""
    try:
        return sample_grids(model, data=data), shows_mean(model)
    except Exception as e:  # optional output: the evaluation rows stand without it
        return f"{type(e).__name__}: {e}"


def write_samples(storage: str, cell: Cell, trial_id: str, drawn: tuple | str) -> str | None:
    """Store the grids an _evaluate task drew (or why it drew none); the path written, or None
    after one warning line: a failed draw never costs the evaluation its rows."""
    try:
        if isinstance(drawn, str):
            raise RuntimeError(drawn)
        grids, mean = drawn
        return samples.write(storage, cell.name, trial_id, cell.family, grids, mean)
    except Exception as e:  # a lost worker, a failed draw, an unwritable storage
        why = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        print(f"[{cell.name}] warning: no sample grids for trial {trial_id} ({why})")
        return None


def evaluate_winner(cell: Cell, budget: Budget, storage: str, resources: dict) -> list[dict]:
    """Test log-likelihood of the cell's best-by-validation trial, once per evaluation seed, and
    its sample grids (training.evaluate.sample_grids, seed 0) under ``samples/`` when it has
    none yet, drawn by the first seed's task."""
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
    draw = not samples.stored(storage, cell.name, w["trial_id"])
    jobs = [(s, draw and i == 0) for i, s in enumerate(seeds)] or ([(None, True)] if draw else [])
    task = _evaluate.options(**opts)
    refs = [task.remote(w["checkpoint_path"], config, budget.eval_k, s, d) for s, d in jobs]
    try:
        outs = ray.get(refs)
    except Exception as e:  # a lost worker, say
        if draw and not seeds:  # the grids alone failed: optional, one warning line
            write_samples(storage, cell, w["trial_id"], f"{type(e).__name__}: {e}")
            return []
        raise
    rows = [
        {"sweep": cell.name, "trial_id": w["trial_id"], "seed": s, **ll, **provenance()}
        for (s, _), (ll, _) in zip(jobs, outs, strict=True)
        if s is not None
    ]
    for r in rows:
        store.write(storage, "evaluations", cell.name, f"{w['trial_id']}-seed{r['seed']}", [r])
    if draw and (path := write_samples(storage, cell, w["trial_id"], outs[0][1])):
        print(f"   [{cell.name}] sample grids: {path}")
    return rows
