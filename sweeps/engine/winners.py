"""A cell's winner on the test set: its importance-sampled log-likelihood and that of its
re-trainings with other training seeds (sweeps.engine.seeds), once per evaluation seed each, each in
a Ray task with a trial's resources, and the winner's sample grids (drawn by its first task).

    evaluate_winner(cell, budget, storage, resources) -> the new ``evaluations`` rows
"""

from __future__ import annotations

import json
import time

import ray
import torch
from ray import tune

from results import rows, samples, store
from results.crash_points import crash_point
from results.selection import training_runs, winners
from sweeps.cells import Budget, Cell
from sweeps.engine.provenance import provenance
from sweeps.engine.trial import setup
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
    """(a trained model's test log-likelihood with ``seed``, or None without one; its sample
    grids when ``draw``, else None; the task's seconds). One task per seed; the winner's first
    also draws the grids, so that a cell's end loads its winner once, not once more for them."""
    start = time.perf_counter()
    cfg, data, model = _winner(ckpt_path, config)
    ll = None if seed is None else estimate_log_likelihood(model, data.test, k, seed=seed)
    return ll, _sample(model, data) if draw else None, time.perf_counter() - start


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


def evaluation_jobs(trials, done, budget: Budget, draw: bool) -> list[tuple]:
    """(trial row, importance-sampling seed or None, draw) for each evaluation still to do: every
    eval seed of the winner (``trials``' first row) and of each of its re-trainings (the rest),
    the grids drawn by the winner's first (or by a job of their own when it has none left)."""
    jobs = []
    for _, t in trials.iterrows():
        for s in range(budget.eval_seeds):
            mine = (
                done.empty
                or not (
                    (done["trial_id"] == t["trial_id"])
                    & (done["seed"] == s)
                    & (done["k"] == budget.eval_k)
                ).any()
            )
            if mine:
                jobs.append((t, s, False))
    winner = trials.iloc[0]["trial_id"]
    if draw:
        first = next((i for i, (t, _, _) in enumerate(jobs) if t["trial_id"] == winner), None)
        if first is None:
            jobs.append((trials.iloc[0], None, True))
        else:
            jobs[first] = (*jobs[first][:2], True)
    return jobs


def evaluate_winner(
    cell: Cell, budget: Budget, storage: str, resources: dict, winner=None
) -> list[dict]:
    """Test log-likelihood of the cell's best-by-validation trial (or of the trial row
    ``winner``, e.g. a second selection rule's, then without sample grids) and of its completed
    re-trainings with other seeds (sweeps.engine.seeds), once per evaluation seed each, and the
    winner's sample grids (training.evaluate.sample_grids, seed 0) under ``samples/`` when it
    has none yet. Each row records what its evaluation cost (wall, CPU and GPU seconds)."""
    trials = store.load(storage, "trials", sweep=cell.name)
    best = winners(trials, cell.paper) if winner is None else winner.to_frame().T
    if best.empty:
        print(f"[{cell.name}] no completed trial: nothing to evaluate")
        return []
    w = best.iloc[0]
    runs = training_runs(trials, w)  # the winner, then its completed re-trainings
    done = store.load(storage, "evaluations", sweep=cell.name)
    draw = winner is None and not samples.stored(storage, cell.name, w["trial_id"])
    jobs = evaluation_jobs(runs, done, budget, draw)
    cpus, gpus = resources.get("cpu", 1), resources.get("gpu", 0)
    task = _evaluate.options(num_cpus=cpus, num_gpus=gpus)
    refs = [
        task.remote(store.locate(storage, t["checkpoint_path"]), json.loads(t["config_json"]),
                    budget.eval_k, s, d)
        for t, s, d in jobs
    ]  # fmt: skip
    try:
        outs = ray.get(refs)
    except Exception as e:  # a lost worker, say
        if draw and all(s is None for _, s, _ in jobs):  # the grids alone failed: optional
            write_samples(storage, cell, w["trial_id"], f"{type(e).__name__}: {e}")
            return []
        raise
    new = []
    for (t, s, _), (ll, _, seconds) in zip(jobs, outs, strict=True):
        if s is None:
            continue
        cost = {"wall_seconds": seconds, "cpu_seconds": seconds * cpus,
                "gpu_seconds": seconds * gpus}  # fmt: skip
        row = rows.evaluation_row(cell.name, t["trial_id"], s, {**ll, **cost}, provenance())
        store.write(storage, "evaluations", cell.name, f"{t['trial_id']}-seed{s}", [row])
        new.append(row)
    drawn = next((out[1] for (_, _, d), out in zip(jobs, outs, strict=True) if d), None)
    if draw and (path := write_samples(storage, cell, w["trial_id"], drawn)):
        # under the storage: the summary names the storage; its full path would make a long line
        print(f"   [{cell.name}] sample grids: {store.relative(storage, path)} under --storage")
        crash_point("samples")
    return new
