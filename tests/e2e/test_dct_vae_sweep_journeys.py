"""DCT-VAE's sweep end to end on Ray: the smoke cells of both families fill the table. Its cells,
configs and table: tests/unit/test_dct_vae_sweep.py."""

from __future__ import annotations

import pytest

from results import store
from sweeps import dct_vae
from sweeps.cells import Budget
from sweeps.engine import cli


@pytest.mark.slow
def test_smoke_cells_of_both_families_fill_the_table(ray_local, tmp_path, capsys):
    chosen = [c for c in dct_vae.CELLS if c.dataset == "fashion_mnist"]
    assert {c.family for c in chosen} == {"ladder", "dct_vae"}
    budget = Budget(trials=1, max_epochs=2, grace_epochs=1, reduction_factor=2, patience=2,
                    eval_k=2, eval_seeds=1,
                    fixed={**dct_vae.BUDGETS["smoke"].fixed, "train/epoch_batches": 2})  # fmt: skip
    argv = ["--storage", str(tmp_path), "--datasets", "fashion_mnist"]
    assert cli.main("dct_vae", chosen, {"smoke": budget}, {}, argv=argv) == 0
    trials = store.load(str(tmp_path), "trials")
    assert len(trials) == 2 and set(trials["status"]) == {"completed"}, trials["reason"].tolist()
    evals = store.load(str(tmp_path), "evaluations")
    assert len(evals) == 2 and evals["test_nll"].gt(0).all()
    assert evals["latent_dims"].tolist() and evals["active_units"].between(0, 1).all()
    out = capsys.readouterr().out
    for label in ("| DCT-VAE | - | project |", "| hierarchical VAE baseline (no context) | - |"):
        row = next(line for line in out.splitlines() if line.startswith(label))
        assert "(n=1, k=2)" in row
