"""The DVP-VAE authors' Hydra experiment configs, composed without hydra: authors_config reads
configs/experiment/<experiment>.yaml from their checkout (AKuzina/dvp_vae) and composes it as
hydra would (the experiment's choices of groups, a defaults list's groups before the file's own
keys, OmegaConf's float syntax, interpolations resolved, their compute_z_L_size). Used by the
DVP-VAE adapter (fidelity/dvp_vae.py), whose build_authors instantiates their model from it.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import yaml


class _Loader(yaml.SafeLoader):
    """OmegaConf's YAML loader: "1e-08" is a float (YAML 1.1 alone reads it as a string)."""


_Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _yaml(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=_Loader) or {}


def _merge(a: dict, b: dict) -> dict:
    """OmegaConf's merge: dicts recursively (new keys appended), anything else replaced."""
    out = copy.deepcopy(a)
    for key, value in b.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _with_groups(root: Path, node: dict, choices: dict, prefix: str) -> dict:
    """A config file with its defaults list expanded: each group's chosen file (itself expanded)
    under the group's key, then the file's own keys (hydra's implicit _self_ last)."""
    composed: dict = {}
    for entry in node.pop("defaults", []):
        ((group, default),) = entry.items()
        name = choices.get(f"{prefix}{group}", default)
        if name is not None:
            child = _yaml(root / prefix / group / f"{name}.yaml")
            composed[group] = _with_groups(root, child, choices, f"{prefix}{group}/")
    return _merge(composed, node)


_INTERPOLATION = re.compile(r"^\$\{([^}]+)\}$")


def _resolve(node, root: dict):
    if isinstance(node, dict):
        return {k: _resolve(v, root) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, root) for v in node]
    match = _INTERPOLATION.match(node) if isinstance(node, str) else None
    if match is None:
        return node
    value = root
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", match.group(1)):
        value = value[int(part[1:-1])] if part.startswith("[") else value[part]
    return _resolve(copy.deepcopy(value), root)


def authors_config(repo: Path, experiment: str) -> dict:
    """configs/experiment/<experiment>.yaml composed (dataset, model, train) and resolved, with
    their run_experiment.compute_z_L_size applied."""
    root = repo / "configs"
    exp = _yaml(root / "experiment" / f"{experiment}.yaml")
    choices = {}
    for entry in exp.pop("defaults"):
        ((key, value),) = entry.items()
        choices[key.replace("override", "").strip(" /")] = value
    cfg = {
        "dataset": _yaml(root / "dataset" / f"{choices['dataset']}.yaml"),
        "model": _with_groups(root, _yaml(root / "model" / f"{choices['model']}.yaml"), choices,
                              "model/"),
        "train": _with_groups(root, _yaml(root / "train" / f"{choices['train']}.yaml"), choices,
                              "train/"),
    }  # fmt: skip
    cfg = _merge(cfg, exp)
    cfg = _resolve(cfg, cfg)
    model, image = cfg["model"], cfg["dataset"]["image_size"]
    if model["name"] == "ladder":
        side = image[1] // 2 ** len(model["latent_width"])
        z_l = (model["latent_width"][-1], side, side)
    else:
        z_l = (image[0], model["ctx_size"], model["ctx_size"])
    prior = model["decoder"]["z_L_prior"]
    if "Diffusion" in prior["_target_"]:
        out = z_l[0] * (1 if prior["parametrization"] == "eps" else 2)
        prior["model"].update(image_size=z_l[1], in_channels=z_l[0], out_channels=out)
    else:
        prior["size"] = z_l
    return cfg
