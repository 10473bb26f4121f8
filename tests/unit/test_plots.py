"""`python -m results plot <paper>`: each cell's learning curves, search history and Optuna
importances as PNG files, and a line for every cell or figure it cannot draw."""

from __future__ import annotations

import struct

import optuna
import pytest

from results import records, store
from results.__main__ import main as results_main
from results.figures import y_range
from results.rows import curve_rows, trial_row

PAPER = "vlae"
SPACE = {
    "model/latent_dim": optuna.distributions.IntDistribution(2, 64),
    "train/lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
    "train/batch_size": optuna.distributions.CategoricalDistribution([128]),  # one value
}
T0 = 1_796_000_000.0


def cell_of(family: str) -> dict:
    return {"sweep": f"{PAPER}-{family}-fashion_mnist-gaussian", "paper": PAPER,
            "family": family, "dataset": "fashion_mnist", "likelihood": "gaussian",
            "variant": "-", "protocol": "project"}  # fmt: skip


def add_trial(storage, study, cell, tid, i, status, params, losses, role=None):
    """One trial as the sweep leaves it: its trials row, its curve rows and its Optuna trial."""
    history = [{"epoch": e + 1, "train_loss": v + 5, "val_loss": v} for e, v in enumerate(losses)]
    last = {"epoch": len(losses), "time_total_s": 10.0}
    error = "Traceback ...\nFloatingPointError: the loss is nan at epoch 2"
    error = error if status == "errored" else None
    if status == "completed":
        last |= {"finished": True, "stop_reason": "max_epochs", "best_val_loss": min(losses)}
    config = {**params, "train/batch_size": 128, "family": cell["family"]}
    row = trial_row(cell, tid, config, last, history, error=error, retries=0, checkpoint_path="",
                    gpus=0.0, provenance={}, times=(T0 + 60 * i, T0 + 60 * i + 50))  # fmt: skip
    if role is not None:
        row["role"] = role
    store.write(storage, "trials", cell["sweep"], tid, [row])
    if history:
        store.write(storage, "curves", cell["sweep"], tid, curve_rows(cell["sweep"], tid, history))
    if role == "seed":
        return  # a re-training of the winner: not a trial of the study
    states = optuna.trial.TrialState
    state = {"completed": states.COMPLETE, "pruned": states.PRUNED}.get(status, states.FAIL)
    study.add_trial(
        optuna.trial.create_trial(
            state=state,
            value=min(losses) if status == "completed" else None,
            params={**params, "train/batch_size": 128},
            distributions=SPACE,
            user_attrs={"tune_trial_id": tid},
            intermediate_values={e + 1: v for e, v in enumerate(losses)},
        )
    )


def study_of(storage, cell):
    backend = optuna.storages.journal.JournalFileBackend(
        f"{storage}/optuna/{cell['sweep']}.journal"
    )
    return optuna.create_study(
        study_name=cell["sweep"], storage=optuna.storages.JournalStorage(backend)
    )


def descending(start: float, epochs: int, spike: float | None = None) -> list[float]:
    losses = [start - 3.0 * e + 0.5 * (e % 2) for e in range(epochs)]
    return [spike, *losses[1:]] if spike is not None else losses


@pytest.fixture
def storage(tmp_path):
    """A vlae storage: a healthy cell, an all-pruned cell, a cell with an errored trial, a cell
    with a record and no rows (its rows lost); the table's "vlae" family has nothing at all."""
    s = str(tmp_path / "store")
    (tmp_path / "store" / "optuna").mkdir(parents=True)
    vae, savae, iaf, hf = (cell_of(f) for f in ("vae", "savae", "vae_iaf", "vae_hf"))
    study = study_of(s, vae)
    for i, (lr, dim, start) in enumerate([(1e-3, 8, 300.0), (3e-3, 32, 280.0), (1e-4, 16, 320.0)]):
        p = {"model/latent_dim": dim, "train/lr": lr}
        add_trial(s, study, vae, f"v{i}", i, "completed", p, descending(start, 12, spike=9e5))
    add_trial(s, study, vae, "v3", 3, "pruned", {"model/latent_dim": 4, "train/lr": 5e-3},
              descending(400.0, 3))  # fmt: skip
    # a seed re-training of the winner with a lower loss: never the winner, not drawn
    add_trial(s, study, vae, "v1s", 4, "completed", {"model/latent_dim": 32, "train/lr": 3e-3},
              descending(200.0, 12), role="seed")  # fmt: skip
    study = study_of(s, savae)
    for i in range(2):
        p = {"model/latent_dim": 8 + i, "train/lr": 1e-3}
        add_trial(s, study, savae, f"s{i}", i, "pruned", p, descending(350.0 + i, 2))
    study = study_of(s, iaf)
    add_trial(s, study, iaf, "i0", 0, "completed", {"model/latent_dim": 8, "train/lr": 1e-3},
              descending(300.0, 6))  # fmt: skip
    add_trial(s, study, iaf, "i1", 1, "errored", {"model/latent_dim": 9, "train/lr": 1e-2},
              [310.0])  # fmt: skip
    add_trial(s, study, iaf, "i2", 2, "errored", {"model/latent_dim": 7, "train/lr": 1e-2}, [])
    store.write_cell_record(s, hf["sweep"], {"cell": hf})
    return s


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000, path
    return struct.unpack(">II", data[16:24])


def test_each_cell_gets_its_figures_and_every_gap_is_said(storage, capsys, tmp_path):
    assert results_main(["plot", PAPER, "--storage", storage]) == 0
    out, err = capsys.readouterr()
    folder = tmp_path / "store" / "plots" / PAPER
    vae, savae, iaf, hf = (cell_of(f)["sweep"] for f in ("vae", "savae", "vae_iaf", "vae_hf"))
    expected = {f"{vae}-{k}.png" for k in ("curves", "history", "importances")}
    expected |= {f"{c}-{k}.png" for c in (savae, iaf) for k in ("curves", "history")}
    assert {p.name for p in folder.iterdir()} == expected
    assert sorted(out.splitlines()) == sorted(f"wrote {folder / name}" for name in expected)
    for name in expected:
        width, height = png_size(folder / name)
        assert 700 <= width <= 1000 and 300 <= height <= 700, (name, width, height)
    lines = err.splitlines()
    assert f"cell {savae}: only pruned trials (2): no winner to mark" in lines
    assert any(ln.startswith(f"cell {savae}: no importances: importances need >= 2 completed")
               for ln in lines)  # fmt: skip
    assert (f"cell {iaf}: 2 errored trials (dashed in the curves; the first: "
            "FloatingPointError: the loss is nan at epoch 2)") in lines  # fmt: skip
    assert f"cell {hf}: no trial rows in the storage" in "\n".join(lines)
    assert "no rows for vlae on fashion_mnist (gaussian)" in err  # nothing of it anywhere
    held = "vlae: rows for families ['savae', 'vae', 'vae_iaf'] on ['fashion_mnist (gaussian)']"
    assert held in err


def test_importances_come_from_the_study_over_complete_trials(storage):
    vae = cell_of("vae")["sweep"]
    imp = records.importances(storage, vae)
    assert isinstance(imp, records.Importances)
    assert imp.completed == 3 and imp.evaluator == "PED-ANOVA"
    assert set(imp.values) == {"model/latent_dim", "train/lr"}  # batch size never varied
    assert sum(imp.values.values()) == pytest.approx(1.0)
    why = records.importances(storage, cell_of("savae")["sweep"])
    assert why == "importances need >= 2 completed trials with differing params; it has 0"
    assert "no Optuna study" in records.importances(storage, cell_of("vae_hf")["sweep"])


def test_a_diverging_first_epoch_does_not_set_the_y_axis():
    later = [300.0, 290.0, 285.0, 284.0]
    lo, hi, log, note = y_range([later], [9e5, *later])
    assert lo < 284.0 and 300.0 < hi < 310.0 and not log
    assert note.startswith("y-axis cut at") and "9e+05" in note
    assert y_range([[1.0]], [1.0, 2.0])[3] is None  # too little to choose from: all shown


def test_one_cell_alone_and_a_cell_of_another_paper(storage, capsys, tmp_path):
    vae = cell_of("vae")["sweep"]
    assert results_main(["plot", PAPER, "--storage", storage, "--cell", vae]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert results_main(["plot", "spvae", "--storage", storage]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no cell of spvae under") and "papers ['vlae']" in err


def test_unknown_paper_names_the_choices(storage, capsys):
    assert results_main(["plot", "vlea", "--storage", storage]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "no figure for 'vlea'" in err and "'vlae'" in err and "'samples'" in err


def test_the_low_data_paper_keeps_its_fraction_figure_and_adds_the_cells(tmp_path, capsys):
    s = str(tmp_path)
    (tmp_path / "optuna").mkdir()
    cell = {**cell_of("spvae_vae"), "paper": "spvae_lowdata", "variant": "1%"}
    cell["sweep"] = "spvae_lowdata-spvae_vae-fashion_mnist-gaussian-1pct"
    study = study_of(s, cell)
    for i, dim in enumerate((4, 16)):
        p = {"model/latent_dim": dim, "train/lr": 1e-3}
        add_trial(s, study, cell, f"f{i}", i, "completed", p, descending(300.0 - i, 5))
    assert results_main(["plot", "spvae_lowdata", "--storage", s]) == 0
    wrote = [line.removeprefix("wrote ") for line in capsys.readouterr().out.splitlines()]
    assert wrote[0] == str(tmp_path / "plots" / "spvae_lowdata.png")
    kinds = ("curves", "history", "importances")
    assert wrote[1:] == [str(tmp_path / "plots" / "spvae_lowdata" / f"{cell['sweep']}-{k}.png")
                         for k in kinds]  # fmt: skip
