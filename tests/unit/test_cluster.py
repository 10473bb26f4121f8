"""The cluster launch files: validated offline against Ray's own schema, or parsed and checked."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
IMAGE = "rayproject/ray:2.60.0-py311-gpu"


def gpu_yaml() -> dict:
    return yaml.safe_load((CLUSTER / "gpu.yaml").read_text())


def test_cluster_launcher_config_passes_rays_validator():
    config = gpu_yaml()
    validate_config(prepare_config(copy.deepcopy(config)))  # raises on any schema violation
    assert config["docker"]["image"] == IMAGE
    workers = config["available_node_types"]["worker.gpu"]
    assert workers["resources"]["GPU"] >= 1
    assert workers["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    assert workers["min_workers"] <= workers["max_workers"]
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=0.0.0.0" in head_start and "--dashboard-port=8265" in head_start
    assert any("pip install" in c and "[cluster]" in c for c in config["setup_commands"])
    # Workers fetch the datasets their trials read, and may write the storage.
    assert any("python -m training data" in c for c in config["worker_setup_commands"])
    assert "IamInstanceProfile" in workers["node_config"]
    # The project's files, each package a mount (a mount of "." makes `ray up` hash the .venv)
    import tomllib

    project = tomllib.loads((CLUSTER.parent / "pyproject.toml").read_text())
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]
    mounted = set(config["file_mounts"].values())
    assert {f"./{p.rstrip('*')}" for p in packages} | {"./pyproject.toml"} == mounted


def test_unknown_key_fails_validation_naming_it():
    config = gpu_yaml()
    config["max_wrokers"] = 3
    with pytest.raises(Exception, match="max_wrokers"):
        validate_config(prepare_config(config))


def test_wrong_head_node_type_fails_validation():
    config = gpu_yaml()
    config["head_node_type"] = "head.gpu"
    with pytest.raises(ValueError, match="head_node_type"):
        validate_config(prepare_config(config))


def test_kuberay_rayjob_manifest():
    documents = list(yaml.safe_load_all((CLUSTER / "rayjob.yaml").read_text()))
    [job] = [d for d in documents if d["kind"] == "RayJob"]
    secrets = {d["metadata"]["name"] for d in documents if d["kind"] == "Secret"}
    assert job["apiVersion"] == "ray.io/v1"
    spec = job["spec"]
    assert spec["entrypoint"].startswith("python -m sweeps.")
    # The study storage needs no server (the journal beside the results); no pod has data
    # until its first trial fetches it.
    assert "--study-storage" not in spec["entrypoint"]
    assert "data/download=true" in spec["entrypoint"]
    assert spec["shutdownAfterJobFinishes"] is True
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == "2.60.0"
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["image"] == IMAGE and {"containerPort": 8265, "name": "dashboard"} in head["ports"]
    pods = [cluster["headGroupSpec"]] + cluster["workerGroupSpecs"]
    for pod in pods:  # every pod can write the storage, with a Secret this file defines
        [container] = pod["template"]["spec"]["containers"]
        assert {e["secretRef"]["name"] for e in container["envFrom"]} <= secrets != set()
    for group in cluster["workerGroupSpecs"]:
        worker = group["template"]["spec"]["containers"][0]
        assert worker["image"] == IMAGE
        assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert any("vae-sweeps" in p for p in runtime_env["pip"])


def test_slurm_script_is_valid_bash_and_starts_head_workers_and_the_sweep():
    script = CLUSTER / "slurm.sbatch"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    assert "#SBATCH --nodes=" in text and "#SBATCH --gpus-per-task=" in text
    assert "ray start --head" in text and 'ray start --address="$head_ip:$port"' in text
    assert 'RAY_ADDRESS="$head_ip:$port" python "$script"' in text
    assert "ray stop" in text


def test_a_sweep_script_runs_alone_from_the_installed_package(tmp_path):
    """`ray submit` uploads only the script: it must import nothing from beside it."""
    lonely = tmp_path / "vlae.py"
    shutil.copy(Path(__file__).resolve().parents[2] / "sweeps" / "vlae.py", lonely)
    out = subprocess.run([sys.executable, str(lonely), "--help"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "--budget" in out.stdout and "--storage" in out.stdout
