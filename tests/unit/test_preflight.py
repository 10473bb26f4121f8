"""Bad input to a sweep or to `python -m results` is one clear line before anything starts or is
written: no Ray, no new folder, exit code 2."""

from __future__ import annotations

import pytest
import ray

from results.__main__ import main as results_main
from sweeps import vlae
from sweeps.cells import Budget
from sweeps.engine import cli, nodes, preflight

CELLS = vlae.setting_cells("fashion_mnist", (1,))  # the VAE and each model at T = 1
TINY = Budget(trials=2, max_epochs=2, grace_epochs=1, reduction_factor=2, patience=2, eval_k=5,
              eval_seeds=1, fixed={"model/hidden_dim": 16})  # fmt: skip


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--set", "model/latnt_dim=5"], "unknown config key(s) ['model/latnt_dim']"),
        (["--set", "train/lr=fast"], "train/lr must be float, got 'fast'"),
        (["--set", "train/lr=-1"], "train/lr must be > 0"),
        (["--set", "train/amp=fp8"], "train/amp must be 'off', 'bf16' or 'fp16'"),
        (["--families", "vae", "--set", "model/updates=2"], "vae-fashion_mnist-gaussian: unknown"),
        (["--families", "vlae", "--set", "model/updates=2"], "fixes model/updates=1"),
        (["--set", "data/dataset=mnist"], "fixes data/dataset='fashion_mnist'"),
        (["--set", "model/likelihood=bernoulli"], "fixes model/likelihood='gaussian'"),
        (["--trials", "0"], "--trials must be at least 1, got 0"),
        (["--add-trials", "-1"], "--add-trials must be at least 1"),
        (["--max-concurrent", "0"], "--max-concurrent must be at least 1"),
        (["--gpus-per-trial", "1.5"], "a fraction in [0, 1] or a whole number"),
        (["--gpus-per-trial", "-1"], "a fraction in [0, 1] or a whole number"),
        (["--cpus-per-trial", "-2"], "--cpus-per-trial must be >= 0"),
        (["--cpus-per-trial", "64"], "asks 64 CPUs and 0 GPUs, but no node of this machine"),
        (["--gpus-per-trial", "4"], "asks 1 CPUs and 4 GPUs"),
        (["--resume"], "no sweep under"),
        (["--resume", "--add-trials", "2"], "choose one"),
        (["--resume", "--trials", "3"], "use --add-trials"),
        (["--families", "nope"], "no cell matches"),
        (["--sampler", "grid"], "has no authors' grid"),
        (["--status"], "no sweep under"),
        (["--gpus", "0", "--dry-run"], "--gpus must be at least 1"),
    ],
)
def test_bad_sweep_input_is_one_error_line_before_ray_and_writes_nothing(
    extra, message, tiny_data_root, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("VAE_DATA_ROOT", str(tiny_data_root))
    storage = tmp_path / "sweep"
    argv = ["--storage", str(storage), *extra]
    assert cli.main("vlae", CELLS, {"smoke": TINY}, {}, argv=argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not ray.is_initialized()
    assert not storage.exists()


def test_every_sampled_point_is_checked_not_just_the_fixed_config():
    """A space whose draws break a config (latent_dim 0) is refused, naming the cell and key."""
    import search_spaces

    def broken(trial):
        trial.suggest_int("model/latent_dim", 0, 0)

    original = search_spaces.SPACES["vae"]
    search_spaces.SPACES["vae"] = broken
    try:
        with pytest.raises(preflight.Refusal, match="vlae-vae-fashion_mnist-gaussian.*latent_dim"):
            preflight.check_configs(CELLS[:1], TINY, "tpe")
    finally:
        search_spaces.SPACES["vae"] = original


def test_a_trial_fits_a_node_not_the_cluster_total():
    two_single_gpu_nodes = [{"CPU": 4, "GPU": 1}, {"CPU": 4, "GPU": 1}]
    assert preflight.fits({"cpu": 1, "gpu": 1}, two_single_gpu_nodes)
    assert preflight.fits({"cpu": 4, "gpu": 0.5}, two_single_gpu_nodes)
    assert not preflight.fits({"cpu": 1, "gpu": 2}, two_single_gpu_nodes)  # 2 GPUs in all
    # An autoscaling cluster's node type that it can launch counts as a shape too.
    assert preflight.fits({"cpu": 1, "gpu": 2}, [*two_single_gpu_nodes, {"CPU": 8, "GPU": 4}])
    with pytest.raises(preflight.Refusal, match="the largest: 4 CPUs and 1 GPUs"):
        preflight.check_resources({"cpu": 1, "gpu": 2}, two_single_gpu_nodes, "of this cluster")


@pytest.mark.parametrize("command", [["table", "vlae"], ["plot", "spvae_lowdata"], ["check"]])
def test_read_only_commands_on_a_missing_storage_say_so_and_create_nothing(
    command, tmp_path, capsys
):
    storage = tmp_path / "typo"
    assert results_main([*command, "--storage", str(storage)]) == 2
    assert capsys.readouterr().err.strip() == f"error: no sweep under {storage}"
    assert not storage.exists()


def test_a_table_of_a_paper_with_no_results_says_which_results_there_are(tmp_path, capsys):
    from results import store

    row = {"sweep": "vlae-vae-fashion_mnist-gaussian", "paper": "vlae", "trial_id": "a",
           "status": "completed", "best_val_loss": 1.0}  # fmt: skip
    store.write(str(tmp_path), "trials", row["sweep"], "a", [row])
    assert results_main(["table", "spvae", "--storage", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no results for table spvae" in err and "['vlae']" in err
    assert not (tmp_path / "tables").exists()


def test_unknown_table_and_figure_are_named(tmp_path, capsys):
    assert results_main(["table", "vlea", "--storage", str(tmp_path)]) == 2
    assert "unknown paper 'vlea'" in capsys.readouterr().err
    assert results_main(["plot", "vlea", "--storage", str(tmp_path)]) == 2
    assert "no figure for 'vlea'" in capsys.readouterr().err


def test_an_autoscaling_clusters_node_types_come_from_its_published_config(monkeypatch, tmp_path):
    """Autoscaler v2 publishes its node groups in the GCS; a group it may not launch is left out."""
    from ray._private.state import state
    from ray.core.generated import autoscaler_pb2

    config = autoscaler_pb2.ClusterConfig()
    for name, resources, max_count in (("gpu4", {"CPU": 8, "GPU": 4}, 2), ("off", {"GPU": 8}, 0)):
        group = config.node_group_configs.add(name=name, max_count=max_count)
        group.resources.update(resources)
    monkeypatch.setattr(state, "get_cluster_config", lambda: config)
    monkeypatch.setattr(nodes, "BOOTSTRAP_CONFIG", tmp_path / "absent.yaml")
    assert nodes.node_types() == [{"CPU": 8, "GPU": 4}]
    monkeypatch.setattr(state, "get_cluster_config", lambda: None)
    assert nodes.node_types() is None  # nothing published, no launcher config: unknown


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--set", "train/lr=NaN"], "train/lr=nan is not a number a model can use"),
        (["--set", "train/lr=-inf"], "train/lr=-inf is not a number a model can use"),
        (["--set", "model/hidden_dim=Infinity"], "model/hidden_dim=inf is not a number"),
        (["--set", "model/latent_dim=1000000000"], "model/latent_dim=1000000000 with train/"),
        (["--set", "train/batch_size=10000000"], "train/batch_size=10000000 needs about"),
        (["--set", "model/hidden_dim=4294967296"], "model/hidden_dim=4294967296 is too large"),
    ],
)
def test_a_value_no_model_can_take_is_refused_before_ray_and_writes_nothing(
    extra, message, tiny_data_root, tmp_path, monkeypatch, capsys
):
    """NaN and infinities, a model or a batch too large for this machine's memory (the estimate
    in the line): one line, no Ray, no storage."""
    monkeypatch.setenv("VAE_DATA_ROOT", str(tiny_data_root))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    storage = tmp_path / "sweep"
    argv = ["--storage", str(storage), "--families", "vae", *extra]
    assert cli.main("vlae", CELLS, {"smoke": TINY}, {}, argv=argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not ray.is_initialized()
    assert not storage.exists()
