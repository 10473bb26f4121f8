"""A sweep's checks that need no Ray: bad input fails before Ray starts, a local storage on several
machines is warned about, the hyperspherical cells cover the papers' grids. The sweep end to end
on a real local Ray instance: tests/e2e/test_sweep_journeys.py."""

from __future__ import annotations

import pytest

from sweeps import vlae
from sweeps.cells import Budget
from sweeps.engine import cli, nodes
from training.config import Config

CELL = vlae.CELLS[0]  # VAE, fashion_mnist, gaussian
TINY = Budget(
    trials=2,
    max_epochs=2,
    grace_epochs=1,
    reduction_factor=2,
    patience=2,
    eval_k=5,
    eval_seeds=2,
    fixed={"model/hidden_dim": 16},
)


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--storage", "/proc/no-such-dir/x"], "is not writable"),
        (["--set", "data/root=/nonexistent"], "not found: looked for"),
        (["--set", "train/lr"], "KEY=VALUE"),
        # no endpoint answers here (no AWS_ENDPOINT_URL, no network): one line, at once
        (["--storage", "s3://bucket/x"], "storage 's3://bucket/x'"),
        (["--winner-seeds", "0"], "--winner-seeds must be at least 1"),
        (["--address", "127.0.0.1:1"], "no Ray cluster answers at 127.0.0.1:1 (Connection ref"),
        (["--address", "nowhere"], "no Ray cluster answers at nowhere (not a host:port address)"),
    ],
)
def test_bad_sweep_input_fails_before_ray_starts(
    extra, message, tmp_path, capsys, monkeypatch, tiny_data_root
):
    import ray

    monkeypatch.setenv("VAE_DATA_ROOT", str(tiny_data_root))
    argv = ["--storage", str(tmp_path / "s"), *extra]
    assert cli.main("vlae", [CELL], {"smoke": TINY}, {}, argv=argv) == 2
    assert message in capsys.readouterr().err
    assert not ray.is_initialized()


def test_a_local_storage_path_on_several_machines_is_warned_about():
    one, two = {"10.0.0.1"}, {"10.0.0.1", "10.0.0.2"}
    assert nodes.storage_warning("/data/sweeps", one) is None  # one machine: any path will do
    assert nodes.storage_warning("s3://bucket/sweeps", two) is None
    warning = nodes.storage_warning("/data/sweeps", two)
    assert "2 machines" in warning and "shared mount (NFS)" in warning


def test_hyperspherical_cells_cover_the_papers_grids():
    from sweeps import hyperspherical as h

    # docs/specs/hyperspherical.md#6-cells-and-search-space
    assert len(h.partitions(5)) == 7 and len(h.partitions(9)) == 30
    assert h.partitions(3) == [(3,), (2, 1), (1, 1, 1)]
    uai = [c for c in h.CELLS if c.paper == "svae18" and c.dataset == "mnist"]
    assert sorted((c.family, c.fixed["model/latent_dim"]) for c in uai) == sorted(
        (f, d) for f in ("nvae", "svae") for d in (2, 5, 10, 20, 40)
    )
    names = [c.name for c in h.CELLS]
    assert len(names) == len(set(names))  # one Tune experiment and Optuna study per cell
    for c in h.CELLS:  # every cell's fixed config is a valid config
        Config.from_dict(c.base_config(h.BUDGETS["smoke"]))
