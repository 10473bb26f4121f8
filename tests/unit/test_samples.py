"""Sample grids: drawn per temperature at the winner's evaluation, stored as .npz beside the
evaluations, drawn as PNGs by ``python -m results plot samples`` (numpy, no torch)."""

from __future__ import annotations

import io
import types

import numpy as np
import pytest
import torch
from PIL import Image

import models
from results import samples, store
from results.__main__ import main as results_main
from training.evaluate import TEMPERATURES, sample_grids, shows_mean, to_pixels
from training.images import logit_dequantise

LADDER = {"num_ch": 8, "latent_scales": "1,1", "block_ch_mult": 0.5}
CELL = "dct_vae-ladder-fashion_mnist-logistic"


@pytest.fixture(scope="module")
def ladder():
    torch.manual_seed(0)
    return models.build("ladder", LADDER, (1, 28, 28))


def test_a_family_without_temperature_gives_only_t1():
    model = models.build("vae", {"latent_dim": 4, "hidden_dim": 16}, (1, 28, 28))
    grids = sample_grids(model, n=8)
    assert list(grids) == ["t1.0"]  # no faked temperatures
    assert grids["t1.0"].dtype == np.uint8 and grids["t1.0"].shape == (8, 1, 28, 28)
    assert shows_mean(model)


def test_a_tempered_family_gives_every_temperature_and_a_cooler_grid_differs(ladder):
    state = torch.get_rng_state()
    grids = sample_grids(ladder, n=6)
    assert list(grids) == ["t1.0", "t0.8", "t0.6", "t0.4"] == [f"t{t}" for t in TEMPERATURES]
    assert all(g.dtype == np.uint8 and g.shape == (6, 1, 28, 28) for g in grids.values())
    assert not np.array_equal(grids["t1.0"], grids["t0.4"])
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is left alone
    assert np.array_equal(sample_grids(ladder, n=6, temperatures=(1.0,))["t1.0"], grids["t1.0"])
    assert ladder.training  # the model's mode is restored


def test_a_model_without_sample_raises_not_implemented():
    with pytest.raises(NotImplementedError, match="Linear has no sample"):
        sample_grids(torch.nn.Linear(2, 2))


def test_to_pixels_undoes_the_datas_centring_and_logit_transform():
    levels = torch.arange(256.0).reshape(1, 1, 16, 16) / 255
    mean = torch.full_like(levels, 0.3)
    data = types.SimpleNamespace(pixel_mean=mean, logit_lambda=None)
    assert np.array_equal(to_pixels(levels - mean, data), np.arange(256).reshape(1, 1, 16, 16))
    y = logit_dequantise(levels, 1e-6, noise=torch.full_like(levels, 0.5))
    data = types.SimpleNamespace(pixel_mean=mean, logit_lambda=1e-6)
    assert np.array_equal(to_pixels(y - mean, data), np.arange(256).reshape(1, 1, 16, 16))


def a_storage(tmp_path, cell=CELL) -> str:
    """A storage holding one sweep (its cell record), as a sweep leaves it."""
    store.write_cell_record(str(tmp_path), cell, {"cell": {"family": cell.split("-")[1]}})
    return str(tmp_path)


def test_grids_written_then_plotted_give_a_png_per_cell(ladder, tmp_path, capsys):
    storage = a_storage(tmp_path)
    grids = sample_grids(ladder, n=20)
    path = samples.write(storage, CELL, "abc_00000", "ladder", grids, decoder_mean=True)
    samples.write(storage, CELL, "abc_00000", "ladder", grids, decoder_mean=True)  # a re-run
    assert path.endswith(f"samples/{CELL}/abc_00000.npz")
    assert [p.name for p in (tmp_path / "samples" / CELL).iterdir()] == ["abc_00000.npz"]
    with np.load(path, allow_pickle=False) as z:  # plain arrays, no pickles
        assert z["temperatures"].tolist() == list(TEMPERATURES) and str(z["family"]) == "ladder"
        assert np.array_equal(z["t0.6"], grids["t0.6"])
    assert samples.stored(storage, CELL, "abc_00000")

    assert results_main(["plot", "samples", "--storage", storage]) == 0
    png = tmp_path / "plots" / "samples" / f"{CELL}.png"
    assert capsys.readouterr().out.strip() == f"wrote {png}"
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(png.read_bytes())) as image:
        width, height = image.size
    assert width > 1000 and 300 < height < width  # 16 images a row, 4 rows


def test_an_rgb_grid_of_one_temperature_is_drawn(tmp_path, capsys):
    storage = a_storage(tmp_path, "c-vae-cifar10-gaussian")
    rgb = np.random.default_rng(0).integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
    samples.write(storage, "c-vae-cifar10-gaussian", "t1", "vae", {"t1.0": rgb}, False)
    assert results_main(["plot", "samples", "--storage", storage]) == 0
    assert (tmp_path / "plots" / "samples" / "c-vae-cifar10-gaussian.png").stat().st_size > 1000


def test_plot_samples_on_a_storage_with_no_sweep_says_so(tmp_path, capsys):
    missing = tmp_path / "typo"
    assert results_main(["plot", "samples", "--storage", str(missing)]) == 2
    assert capsys.readouterr().err.strip() == f"error: no sweep under {missing}"
    assert not missing.exists()


def test_plot_samples_with_no_grids_yet_says_who_writes_them(tmp_path, capsys):
    storage = a_storage(tmp_path)
    assert results_main(["plot", "samples", "--storage", storage]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: no sample grids under {storage} yet")
    assert "a winner's evaluation writes them" in err and "\n" not in err
    assert not (tmp_path / "plots").exists()


def test_a_damaged_file_is_named_and_skipped_and_the_others_drawn(ladder, tmp_path, capsys):
    storage = a_storage(tmp_path)
    samples.write(storage, CELL, "good", "ladder", sample_grids(ladder, n=4), True)
    bad = tmp_path / "samples" / "other-vae-mnist-bernoulli" / "t0.npz"
    bad.parent.mkdir()
    bad.write_bytes(b"PK\x03\x04 not a zip archive")
    assert results_main(["plot", "samples", "--storage", storage]) == 0
    out, err = capsys.readouterr()
    assert f"warning: skipped the damaged sample file {bad}" in err
    assert out.strip() == f"wrote {tmp_path}/plots/samples/{CELL}.png"
    assert results_main(["plot", "samples", "--storage", storage, "--cell", bad.parent.name]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and str(bad) in err[0] and err[1].startswith("error: no readable")


def test_cell_selects_one_cell_and_an_unknown_one_names_those_with_grids(ladder, tmp_path, capsys):
    storage = a_storage(tmp_path)
    samples.write(storage, CELL, "good", "ladder", sample_grids(ladder, n=4), True)
    samples.write(storage, "x-vae-mnist-b", "t", "vae", {"t1.0": np.zeros((2, 1, 4, 4), "u1")}, 1)
    assert results_main(["plot", "samples", "--storage", storage, "--cell", CELL]) == 0
    assert capsys.readouterr().out.strip().endswith(f"samples/{CELL}.png")
    assert results_main(["plot", "samples", "--storage", storage, "--cell", "nope"]) == 2
    assert f"cells with grids: ['{CELL}', 'x-vae-mnist-b']" in capsys.readouterr().err
    assert results_main(["plot", "spvae_lowdata", "--storage", storage, "--cell", CELL]) == 2
    assert "--cell is for `plot samples`" in capsys.readouterr().err


def test_grids_that_are_not_images_are_refused():
    with pytest.raises(ValueError, match="want uint8"):
        samples.write("/nonexistent", "c", "t", "vae", {"t1.0": np.zeros((2, 784))}, True)


class FakeTask:
    """A Ray remote function's stand-in: .options(...).remote(...) calls it in-process."""

    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def options(self, **_):
        return self

    def remote(self, *args):
        self.calls.append(args)
        return self.fn(*args)


def test_a_winners_evaluation_writes_rows_and_grids_once_and_survives_failed_sampling(
    ladder, tmp_path, monkeypatch, capsys
):
    from sweeps.cells import Budget, Cell
    from sweeps.engine import winners

    cell = Cell("dct_vae", "ladder", "fashion_mnist", "logistic")
    storage = a_storage(tmp_path, cell.name)
    row = {"sweep": cell.name, "paper": "dct_vae", "trial_id": "w1", "status": "completed",
           "best_val_loss": 1.0, "config_json": "{}", "checkpoint_path": "ckpt"}  # fmt: skip
    store.write(storage, "trials", cell.name, "w1", [row])
    budget = Budget(trials=1, max_epochs=1, grace_epochs=1, reduction_factor=2, patience=1,
                    eval_k=3, eval_seeds=2)  # fmt: skip
    outcomes = iter(["NotImplementedError: no sampler", (sample_grids(ladder, n=3), True)])

    def evaluated(ckpt, config, k, seed, draw):  # what an _evaluate task returns
        ll = None if seed is None else {"test_log_likelihood": -seed - 1.0, "k": k}
        return ll, next(outcomes) if draw else None, 0.5  # its seconds

    evaluate = FakeTask(evaluated)
    monkeypatch.setattr(winners, "_evaluate", evaluate)
    monkeypatch.setattr(winners.ray, "get", lambda refs: refs)

    assert len(winners.evaluate_winner(cell, budget, storage, {})) == 2  # sampling failed
    out = capsys.readouterr().out.strip()
    assert out == f"[{cell.name}] warning: no sample grids for trial w1 (NotImplementedError: no "\
                  "sampler)"  # fmt: skip
    evals = store.load(storage, "evaluations")
    assert len(evals) == 2 and not samples.files(storage)
    assert (evals["wall_seconds"] == 0.5).all() and (evals["cpu_seconds"] == 0.5).all()

    assert winners.evaluate_winner(cell, budget, storage, {}) == []  # a resume: seeds done,
    assert samples.stored(storage, cell.name, "w1")  # but the missing grids drawn
    assert capsys.readouterr().out.strip() == (  # relative to the storage: a short line
        f"[{cell.name}] sample grids: samples/{cell.name}/w1.npz under --storage")
    assert winners.evaluate_winner(cell, budget, storage, {}) == []  # nothing left to do
    # The seeds' two tasks (the first drew the grids), then one that only draws them.
    assert [(c[3], c[4]) for c in evaluate.calls] == [(0, True), (1, False), (None, True)]
    assert len(store.load(storage, "evaluations")) == 2
