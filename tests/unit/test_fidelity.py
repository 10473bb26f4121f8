"""The fidelity harness (fidelity/): what runs without the authors' checkouts."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from fidelity import common, dct_vae, dvp_vae
from fidelity.__main__ import ADAPTERS, FAMILIES
from training.config import Config

ROOT = Path(__file__).resolve().parents[2]


def test_every_adapter_keeps_the_contract():
    families = [f for adapter in ADAPTERS for f in adapter.FAMILIES]
    assert len(families) == len(set(families)) == len(FAMILIES)
    for family, adapter in FAMILIES.items():
        assert adapter.REPO and adapter.MARKER and adapter.MODULES and adapter.BUDGET
        assert callable(adapter.train_authors)
        cfg = adapter.our_config(family, 1, 2, "")
        assert isinstance(cfg, Config) and cfg.train.seed == 1 and cfg.train.max_epochs == 2
        if family in getattr(adapter, "STEPPED", ()):
            assert adapter.our_config(family, 0, 1, "", t=3) != adapter.our_config(family, 0, 1, "")


def test_the_stand_ins_are_served_to_a_registered_checkout_only(tmp_path):
    """hydra, wandb, ... for AKuzina's checkouts while they are imported, then dropped: also
    where wandb is installed (the trackers extra) and imported already."""
    installed = importlib.util.find_spec("wandb") is not None
    if installed:
        import wandb  # noqa: F401 - imported before their code is: they still get the stand-in
    for adapter, name in ((dct_vae, "dct"), (dvp_vae, "dvp")):
        repo = tmp_path / name
        (repo / adapter.MARKER).parent.mkdir(parents=True, exist_ok=True)
        (repo / adapter.MARKER).touch()
        module = f"fidelity_test_{name}"
        (repo / f"{module}.py").write_text(
            "import hydra.utils\nimport torchmetrics.image.fid\nimport wandb\n"
            "def log(): return wandb.log(1)\ndef instantiate(): hydra.utils.instantiate({})\n"
        )
        theirs = common.import_authors(SimpleNamespace(MARKER=adapter.MARKER, MODULES=(module,)),
                                       repo)  # fmt: skip
        mod = getattr(theirs, module)
        assert mod.log() is None
        with pytest.raises(RuntimeError, match="stand-in"):
            mod.instantiate()
        assert getattr(mod.wandb, "__fidelity_stand_in__", False)
        common.drop_stand_ins()
        assert not {"hydra", "hydra.utils", "torchmetrics"} & set(sys.modules)
        assert ("wandb" in sys.modules) is installed  # the real one, put back
        assert not getattr(sys.modules.get("wandb"), "__fidelity_stand_in__", False)
        assert module not in sys.modules
    if not installed:
        with pytest.raises(ImportError):  # no checkout on sys.path: nothing is served
            import wandb  # noqa: F401


def test_summary_pairs_the_sides_per_image():
    ours = [torch.tensor([1.0, 2.0, 3.0, 6.0]), torch.full((4,), 3.0)]
    theirs = [torch.tensor([1.0, 1.0, 1.0, 1.0]), torch.full((4,), 2.0)]
    ours, theirs = ([r.double() for r in side] for side in (ours, theirs))  # as per_image_ll's
    d, se = common.per_image_difference(ours, theirs)
    assert d.tolist() == [0.5, 1.0, 1.5, 3.0]
    assert se == pytest.approx(d.std().item() / 2)
    lines = common.summarise(ours, theirs)
    assert lines[0] == "authors' code       1.50 ±  0.71 (seeds: 1.00, 2.00)"
    assert lines[1] == "ours                3.00 ±  0.00 (seeds: 3.00, 3.00)"
    assert lines[2].startswith("difference (ours - authors' code): +1.50 ± 0.50 (SE over 2 seeds'")


def test_the_package_imports_nothing_for_the_tensorflow_side():
    """fidelity/spvae_tf.py runs under an interpreter without torch: `python -m fidelity.spvae_tf`
    imports fidelity/__init__.py first."""
    tree = ast.parse((ROOT / "fidelity" / "__init__.py").read_text())
    assert [type(node) for node in tree.body] == [ast.Expr]
    spvae_tf = ast.parse((ROOT / "fidelity" / "spvae_tf.py").read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(spvae_tf) if isinstance(n, ast.Import)
                for a in n.names}  # fmt: skip
    imported |= {n.module.split(".")[0] for n in ast.walk(spvae_tf)
                 if isinstance(n, ast.ImportFrom) and n.module}  # fmt: skip
    assert not imported & {"torch", "fidelity", "models", "training"}


def test_the_old_command_says_where_the_harness_went():
    old = subprocess.run([sys.executable, "benchmarks/fidelity.py", "--family", "vae"], cwd=ROOT,
                         capture_output=True, text=True)  # fmt: skip
    assert old.returncode == 2 and not old.stdout
    assert old.stderr == "error: moved: python -m fidelity --family vae\n"
