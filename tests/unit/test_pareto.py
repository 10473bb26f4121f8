"""`python -m results pareto` (results.pareto): the non-dominated trials of each table setting
on validation loss against size and GPU-hours, the table's picks named, a PNG written."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from results import store
from results.__main__ import main as results_main
from results.pareto import front, fronts
from tests.unit.test_tables import spvae_run


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    return bool((a <= b).all() and (a < b).any())


@given(arrays(np.float64, st.tuples(st.integers(1, 30), st.integers(1, 3)),
              elements=st.sampled_from([0.0, 1.0, 2.0, 2.5, 7.0, 1e6])))  # fmt: skip
def test_the_front_is_exactly_the_points_no_other_point_dominates(points):
    on = front(points)
    for i, p in enumerate(points):
        beaten = any(dominates(q, p) for q in points)
        assert on[i] == (not beaten)
        if not on[i]:  # and a point off the front is dominated by a point on it
            assert any(dominates(points[j], p) for j in np.flatnonzero(on))


def test_equal_points_are_all_on_the_front():
    assert front(np.array([[1.0, 2.0], [1.0, 2.0], [2.0, 3.0]])).tolist() == [True, True, False]


@pytest.fixture
def spvae_storage(tmp_path):
    """The param-cap example of test_tables: SPVAE's validation pick (big, 1200 parameters) and
    its param-cap pick (small, 700, under the ConvVAE's 800); GPU-hours recorded."""
    s = str(tmp_path)
    spvae_run(s, "spvae_vae", "vae", 5.0, 1000, [-10.0], gpu_seconds=3600.0)
    spvae_run(s, "spvae_vae", "vae-small", 6.0, 100, gpu_seconds=360.0)
    spvae_run(s, "spvae_convvae", "conv", 4.0, 800, [-9.0], gpu_seconds=7200.0)
    spvae_run(s, "spvae", "big", 1.0, 1200, [-1.0], gpu_seconds=720.0)
    spvae_run(s, "spvae", "over", 1.5, 900, gpu_seconds=720.0)
    spvae_run(s, "spvae", "small", 2.0, 700, [-3.0], gpu_seconds=720.0)
    spvae_run(s, "spvae", "pruned", 0.5, 10, status="pruned", gpu_seconds=36.0)
    return s


def test_pareto_prints_each_front_names_the_picks_and_writes_a_png(spvae_storage, capsys):
    assert results_main(["pareto", "spvae", "--storage", spvae_storage]) == 0
    out = capsys.readouterr().out
    size, gpu = out.split("validation loss vs GPU-hours")
    assert "Fashion-MNIST (perturbed): validation loss vs parameters: 4 of 6 completed" in size
    on = [line.split(" trial ")[1].split(":")[0] for line in size.splitlines()
          if line.startswith("  ") and "off the front" not in line]  # fmt: skip
    assert on == ["vae-small", "small", "over", "big"]  # the pruned 10-parameter trial is not
    assert "SPVAE trial small: val loss 2.00, parameters 700  test LL -3.00  <- table pick " \
           "(param-cap)" in size  # fmt: skip
    assert "SPVAE trial big: val loss 1.00, parameters 1,200  test LL -1.00  <- table pick " \
           "(validation)" in size  # fmt: skip
    assert "off the front: ConvVAE trial conv" in size and "dominated by SPVAE trial small" in size
    assert ": 2 of 6 completed trials on the front" in gpu
    assert "off the front: SPVAE trial small" in gpu  # as slow as big, and worse
    assert "table picks by param-cap: spvae chosen as the best validation" in out
    path = f"{spvae_storage}/plots/spvae-pareto.png"
    assert f"wrote {path}" in out
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_without_gpu_hours_only_the_size_front(tmp_path, capsys):
    """A CPU sweep (0 GPU-seconds) has no GPU-hours front; a trial without a size is left out."""
    s = str(tmp_path)
    spvae_run(s, "spvae_vae", "a", 5.0, 1000, gpu_seconds=0.0)
    spvae_run(s, "spvae_vae", "b", 4.0, 2000, gpu_seconds=0.0)
    spvae_run(s, "spvae_vae", "unsized", 1.0, -1, gpu_seconds=0.0)
    assert results_main(["pareto", "spvae", "--storage", s]) == 0
    out = capsys.readouterr().out
    assert "GPU-hours" not in out and "2 of 2 completed trials on the front" in out


@pytest.mark.parametrize("argv, match", [
    (["pareto", "spvea"], "unknown paper 'spvea'"),
    (["pareto", "vlae"], "no results for table vlae"),
    (["pareto"], "the following arguments are required: paper"),
])  # fmt: skip
def test_bad_pareto_input_is_one_error_line(spvae_storage, capsys, argv, match):
    try:
        code = results_main([*argv, "--storage", spvae_storage])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: ") and match in err


def test_pareto_of_a_storage_that_does_not_exist_is_refused_and_creates_nothing(tmp_path, capsys):
    missing = tmp_path / "nothing"
    assert results_main(["pareto", "spvae", "--storage", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: no sweep under {missing}\n" and not missing.exists()
    assert not store.exists(str(missing))


def test_a_front_holds_every_model_variant_of_a_setting_named_by_its_variant(tmp_path):
    """VLAE's T = 1 and T = 4 are models of one data setting: one front, each point labelled."""
    from results.papers import PAPERS

    trials = pd.DataFrame({
        "paper": "vlae", "family": ["vae", "vlae", "vlae"], "variant": ["-", "T=1", "T=4"],
        "dataset": "fashion_mnist", "likelihood": "gaussian", "protocol": "project",
        "trial_id": ["a", "b", "c"], "sweep": ["s1", "s2", "s3"], "status": "completed",
        "role": "search", "best_val_loss": [-150.0, -120.0, -130.0],
        "n_parameters": [600, 500, 500], "gpu_seconds": 0.0})  # fmt: skip
    (found,) = fronts(trials, pd.DataFrame(), PAPERS["vlae"])
    assert found.label == "FashionMNIST"
    assert list(found.points["model"]) == ["VLAE T=4", "VLAE T=1", "VAE"]
    assert list(found.points["on_front"]) == [True, False, True]
