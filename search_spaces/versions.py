"""A search space as data, so that a study can outlive a change of it.

    distributions(space)          -> {name: distribution}, every parameter the space can draw
    misfits(params, dists)        -> why a configuration lies outside a space ([] if it fits)
    changes(old, new)             -> (what changed, what one Optuna study cannot hold)
    to_json(dists) / from_json(d) -> the cell record's form of a space version
    FittingTPESampler(space=...)  -> TPE that learns only from trials that fit ``space``

A family's space is define-by-run (search_spaces.SPACES): which parameters it draws can depend on
what it drew before. ``distributions`` runs it on many random draws of an in-memory study and
keeps every parameter it met. A study continued under a widened or narrowed space (``--add-trials``
after search_spaces/ changed) keeps its old trials; the sampler sees those whose values lie inside
the new space, so that what it learnt still applies where it fits. Optuna refuses, in any of its
storages, to give one parameter name a categorical distribution with other choices, another log
scale or another kind: such a change cannot continue the same study (``changes`` says which, and
the sweep refuses it before anything starts; --warm-start carries the trials into a new storage).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    check_distribution_compatibility,
    distribution_to_json,
    json_to_distribution,
)

DRAWS = 256
"""Random draws of a space that ``distributions`` makes to meet each of its branches."""


def distributions(space: Callable[[optuna.Trial], object], draws: int = DRAWS,
                  seed: int = 0) -> dict[str, BaseDistribution]:  # fmt: skip
    """Every parameter ``space`` draws, with its distribution, from ``draws`` random draws (the
    space's code only: nothing is trained). Sorted by name."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" line
    try:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        found: dict[str, BaseDistribution] = {}
        for _ in range(draws):
            trial = study.ask()
            space(trial)
            found.update(trial.distributions)
            study.tell(trial, 0.0)
    finally:
        optuna.logging.set_verbosity(level)
    return dict(sorted(found.items()))


def misfits(params: dict, dists: dict[str, BaseDistribution]) -> list[str]:
    """Why ``params`` (a configuration's drawn values) lie outside the space ``dists``: a value
    out of its range or not among its choices; a parameter the space does not draw. []: it fits
    (parameters of the space it lacks are drawn afresh, as for any new draw)."""
    out = []
    for name, value in sorted(params.items()):
        dist = dists.get(name)
        if dist is None:
            out.append(f"{name} is not in this space")
            continue
        try:
            inside = dist._contains(dist.to_internal_repr(value))
        except (ValueError, TypeError):  # not one of a categorical's choices, or not a number
            inside = False
        if not inside:
            out.append(f"{name}={value!r} is outside {_said(dist)}")
    return out


def changes(old: dict[str, BaseDistribution],
            new: dict[str, BaseDistribution]) -> tuple[list[str], list[str]]:  # fmt: skip
    """(each difference between two versions of a space, those of them one Optuna study cannot
    hold: a categorical's choices, a log scale or a kind changed)."""
    said, refused = [], []
    for name in sorted(set(old) | set(new)):
        was, now = old.get(name), new.get(name)
        if was == now:
            continue
        if was is None or now is None:
            said.append(f"{name} {'added' if was is None else 'removed'}")
            continue
        line = f"{name}: {_said(was)} -> {_said(now)}"
        said.append(line)
        try:
            check_distribution_compatibility(was, now)
        except ValueError:
            refused.append(line)
        else:
            if isinstance(was, CategoricalDistribution):  # Optuna checks these when set
                refused.append(line)
    return said, refused


def to_json(dists: dict[str, BaseDistribution]) -> dict[str, dict]:
    return {name: json.loads(distribution_to_json(d)) for name, d in sorted(dists.items())}


def from_json(data: dict[str, dict]) -> dict[str, BaseDistribution]:
    return {name: json_to_distribution(json.dumps(d)) for name, d in data.items()}


def _said(dist: BaseDistribution) -> str:
    if isinstance(dist, CategoricalDistribution):
        return f"choices {list(dist.choices)}"
    log = ", log" if getattr(dist, "log", False) else ""
    step = getattr(dist, "step", None)
    by = f", step {step:g}" if step not in (None, 1) else ""
    return f"[{dist.low:g}, {dist.high:g}{log}{by}]"


class _Fitting:
    """A study as a sampler reads it, whose finished trials are those that fit ``space``."""

    def __init__(self, study: optuna.Study, space: dict[str, BaseDistribution]):
        self._study, self._space = study, space

    def __getattr__(self, name: str):
        return getattr(self._study, name)

    def _get_trials(self, deepcopy=True, states=None, use_cache=False):
        trials = self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache)
        return [t for t in trials if not t.state.is_finished() or _fits(t, self._space)]

    def get_trials(self, deepcopy=True, states=None):
        return self._get_trials(deepcopy=deepcopy, states=states)


def _fits(trial: optuna.trial.FrozenTrial, space: dict[str, BaseDistribution]) -> bool:
    """Every parameter the trial shares with ``space`` lies inside it (one it lacks, or one the
    space lost since, says nothing against it)."""
    shared = {k: v for k, v in trial.params.items() if k in space}
    return not misfits(shared, space)


class FittingTPESampler(optuna.samplers.TPESampler):
    """TPE that learns only from the study's trials that fit ``space`` (the space this run draws
    from, as ``distributions`` finds it; None: every trial, as TPE). Pickled with the searcher."""

    def __init__(self, *args, space: dict[str, BaseDistribution] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.space = space

    def _seen(self, study):
        return study if self.space is None else _Fitting(study, self.space)

    def infer_relative_search_space(self, study, trial):
        return super().infer_relative_search_space(self._seen(study), trial)

    def sample_relative(self, study, trial, search_space):
        return super().sample_relative(self._seen(study), trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        seen = self._seen(study)
        return super().sample_independent(seen, trial, param_name, param_distribution)
