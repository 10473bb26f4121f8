"""The VLAE paper's sweep end to end on Ray: smoke cells of each model fill the table. Its cells,
configs and table: tests/unit/test_vlae_sweep.py."""

from __future__ import annotations

import pytest

from results import store
from sweeps import vlae
from sweeps.cells import Budget
from sweeps.engine import cli


@pytest.mark.slow
def test_smoke_cells_of_each_model_fill_the_table(ray_local, tmp_path, capsys):
    wanted = {
        ("vae", "-"),
        ("savae", "T=1"),
        ("vae_hf", "T=1"),
        ("vae_iaf", "T=1"),
        ("vlae", "T=1"),
    }
    chosen = [
        c for c in vlae.CELLS if c.dataset == "fashion_mnist" and (c.family, c.variant) in wanted
    ]
    assert len(chosen) == 5
    budget = Budget(
        trials=1,
        max_epochs=2,
        grace_epochs=1,
        reduction_factor=2,
        patience=2,
        eval_k=4,
        eval_seeds=1,
        fixed={
            **vlae.BUDGETS["smoke"].fixed,
            "train/epoch_batches": 3,
            "model/hidden_dim": 16,
            "model/latent_dim": 4,
        },  # fmt: skip
    )
    argv = ["--storage", str(tmp_path), "--datasets", "fashion_mnist"]
    assert cli.main("vlae", chosen, {"smoke": budget}, {}, argv=argv) == 0
    trials = store.load(str(tmp_path), "trials")
    assert len(trials) == 5 and set(trials["status"]) == {"completed"}, trials["reason"].tolist()
    evals = store.load(str(tmp_path), "evaluations")
    assert len(evals) == 5 and evals["test_log_likelihood"].notna().all()
    out = capsys.readouterr().out
    for label in (
        "| VLAE | T=1 | ",
        "| SA-VAE | T=1 | ",
        "| VAE+IAF | T=1 | ",
        "| VAE+HF | T=1 | ",
    ):
        row = next(line for line in out.splitlines() if line.startswith(label))
        assert "(n=1, k=4)" in row  # our FashionMNIST number beside the paper's MNIST ones
