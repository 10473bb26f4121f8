"""DVP-VAE's sweep end to end on Ray: its smoke cells fill the table beside a DCT-VAE cell. Its
cells, configs and table: tests/unit/test_dvp_vae_sweep.py."""

from __future__ import annotations

import pytest

from results import store
from sweeps import dct_vae, dvp_vae
from sweeps.cells import Budget
from sweeps.engine import cli


@pytest.mark.slow
def test_smoke_cells_fill_the_table_beside_a_dct_vae_cell(ray_local, tmp_path, capsys):
    budget = Budget(trials=1, max_epochs=2, grace_epochs=1, reduction_factor=2, patience=2,
                    eval_k=2, eval_seeds=1,
                    fixed={**dvp_vae.BUDGETS["smoke"].fixed, "train/epoch_batches": 2})  # fmt: skip
    argv = ["--storage", str(tmp_path), "--datasets", "fashion_mnist"]
    dct = [c for c in dct_vae.CELLS if (c.family, c.dataset) == ("dct_vae", "fashion_mnist")]
    assert cli.main("dct_vae", dct, {"smoke": budget}, {}, argv=argv) == 0
    chosen = [c for c in dvp_vae.CELLS if c.dataset == "fashion_mnist"]
    assert {c.family for c in chosen} == {"ladder", "dvp_vae"}
    capsys.readouterr()
    assert cli.main("dvp_vae", chosen, {"smoke": budget}, {}, argv=argv) == 0
    trials = store.load(str(tmp_path), "trials")
    assert len(trials) == 3 and set(trials["status"]) == {"completed"}, trials["reason"].tolist()
    evals = store.load(str(tmp_path), "evaluations")
    assert len(evals) == 3 and evals["test_nll"].gt(0).all()
    out = capsys.readouterr().out
    for label in ("| DVP-VAE | - | project |", "| Ladder VAE (DVP-VAE form) | - | project |",
                  "| DCT-VAE | - | project |"):  # fmt: skip
        row = next(line for line in out.splitlines() if line.startswith(label))
        assert "(n=1, k=2)" in row
    samples = list((tmp_path / "samples").glob("*dvp_vae*/*.npz"))
    assert len(samples) == 2  # each winner's sample grids
