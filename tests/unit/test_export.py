"""A cell's winner as a model: ``python -m results best`` and ``export`` on a real storage (a
tiny model trained one epoch by the trainer, its checkpoint where Tune leaves it, its rows written
by the row helpers: no Ray), ``training.export.load`` and ``python -m training sample`` and
``evaluate`` on the export, and the one-line errors for a damaged, foreign or missing export."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from results import rows, store
from results.__main__ import main as results_main
from sweeps.engine.replay import main as replay_main
from tests.conftest import make_mnist_like
from training import checkpoint as ckpt_io
from training.__main__ import main as training_main
from training.config import Config
from training.data import load_data
from training.evaluate import estimate_log_likelihood
from training.export import RECORD_FILE, WEIGHTS_FILE, ExportError, load
from training.trainer import build_model, fit

CELL = {"sweep": "vlae-vae-fashion_mnist-bernoulli", "paper": "vlae", "family": "vae",
        "dataset": "fashion_mnist", "likelihood": "bernoulli", "variant": "-",
        "protocol": "project"}  # fmt: skip
TUNE_FOLDER = "ray/{sweep}/TrainTrial_{trial}_1_lr=0.003/checkpoint_000000"
PROVENANCE = {"git_sha": "0123abc", "versions": json.dumps({"torch": torch.__version__})}


def write_trial(storage: str, cfg: Config, trial: str, final: dict, checkpoint: str) -> None:
    config = cfg.flat()
    sources = rows.key_sources(config, {"family": "cell", "data/dataset": "cell",
                                        "train/max_epochs": "budget"}, {"train/lr"})  # fmt: skip
    row = rows.trial_row(CELL, trial, config, {**final, "n_parameters": 1234}, [], error=None,
                         retries=0, checkpoint_path=checkpoint, gpus=0.0, provenance=PROVENANCE,
                         sources=sources, optuna_trial=int(trial[-1]))  # fmt: skip
    store.write(storage, "trials", CELL["sweep"], trial, [row])


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A storage whose one cell has two completed trials, the winner evaluated with k = 3."""
    root = tmp_path_factory.mktemp("export")
    data_root = make_mnist_like(root / "data", "torchvision", n_train=120, n_test=40)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VAE_DATA_ROOT", str(data_root))
        mp.setenv("VAE_CACHE", str(root / "cache"))
        storage = str(root / "sweep")
        cfg = Config.from_dict({"family": "vae", "model/latent_dim": 4, "model/hidden_dim": 16,
                                "train/batch_size": 32, "train/max_epochs": 1,
                                "train/lr": 3e-3, "train/device": "cpu"})  # fmt: skip
        data = load_data(cfg.data)
        folder = TUNE_FOLDER.format(trial="a1", **CELL)

        def report(metrics, ckpt_dir):  # as sweeps.engine.trial.TrainTrial.save_checkpoint
            shutil.copytree(ckpt_dir, f"{storage}/{folder}", dirs_exist_ok=True)
            Path(f"{storage}/{folder}/{ckpt_io.CONFIG_FILE}").write_text(json.dumps(cfg.flat()))

        final = fit(build_model(cfg, data.x_shape), data, cfg.train, report=report)
        write_trial(storage, cfg, "a1", final, folder)
        write_trial(storage, cfg, "b2", {**final, "best_val_loss": final["best_val_loss"] + 5},
                    folder)  # fmt: skip
        model = build_model(cfg, data.x_shape)
        model.load_state_dict(ckpt_io.test_weights(ckpt_io.load(f"{storage}/{folder}")))
        ll = estimate_log_likelihood(model, data.test, 3, seed=0)
        evaluation = rows.evaluation_row(CELL["sweep"], "a1", 0, ll, PROVENANCE)
        store.write(storage, "evaluations", CELL["sweep"], "a1-seed0", [evaluation])
        yield {"storage": storage, "cfg": cfg, "model": model.eval(), "data": data, "ll": ll,
               "root": root}  # fmt: skip


@pytest.fixture(scope="module")
def exported(sweep):
    out = sweep["root"] / "winner"
    assert results_main(["export", "vlae", "--storage", sweep["storage"], "--out", str(out)]) == 0
    return out


def run(capsys, main, *argv) -> tuple[int, str, str]:
    code = main([*argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_best_prints_the_tables_winner_with_its_config_sources_and_numbers(sweep, capsys):
    code, out, err = run(capsys, results_main, "best", "vlae", "--storage", sweep["storage"])
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"{CELL['sweep']}  (vlae: vae, fashion_mnist, bernoulli, project)"
    assert "trial a1 (Optuna trial 1), best by validation of 2 completed search trials" in out
    assert f"log-likelihood {sweep['ll']['test_log_likelihood']:.3f} (the table's: 1" in out
    assert f"checkpoint  {sweep['storage']}/{TUNE_FOLDER.format(trial='a1', **CELL)}" in out
    assert any(ln.split()[:2] == ["search", "train/lr=0.003"] for ln in lines), out
    assert any(ln.split()[:1] == ["budget"] and "train/max_epochs=1" in ln for ln in lines)
    assert "keys at the family's defaults (--defaults lists them)" in out
    assert all(len(ln) <= 150 for ln in lines if not ln.lstrip().startswith("checkpoint"))
    _, listed, _ = run(capsys, results_main, "best", "vlae", "--storage", sweep["storage"],
                       "--defaults")  # fmt: skip
    assert "train/optimizer=" in listed and "--defaults lists them" not in listed


def test_the_export_loads_as_the_same_model_with_its_record(sweep, exported):
    model, cfg = load(exported)
    assert cfg == sweep["cfg"] and not model.training
    assert next(model.parameters()).device.type == "cpu"
    x = sweep["data"].test[:8]
    outs = []
    for m in (sweep["model"], model):
        torch.manual_seed(3)
        t = m(x)
        outs.append((t.log_px_z, t.kl))
    assert all(torch.equal(a, b) for a, b in zip(*outs, strict=True))
    record = json.loads((exported / RECORD_FILE).read_text())
    assert record["schema_version"] == 1 and record["x_shape"] == [1, 28, 28]
    assert record["test"]["evaluations"][0]["test_log_likelihood"] == (
        sweep["ll"]["test_log_likelihood"]
    )
    p = record["provenance"]
    assert (p["cell"], p["trial_id"], p["optuna_trial"], p["git_sha"]) == (
        CELL["sweep"], "a1", 1, "0123abc"
    )  # fmt: skip
    assert p["storage"] == sweep["storage"] and p["exported_at"] > 0
    assert p["key_sources"]["train/lr"] == "search"
    state = torch.load(exported / WEIGHTS_FILE, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_evaluate_gives_the_tables_number_and_sample_writes_a_grid(sweep, exported, capsys):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VAE_DATA_ROOT", str(sweep["root"] / "data"))
        mp.setenv("VAE_CACHE", str(sweep["root"] / "cache"))
        code, out, err = run(capsys, training_main, "evaluate", "--checkpoint", str(exported),
                             "--k", "3")  # fmt: skip
        assert code == 0, err
        (line,) = out.splitlines()
        got = json.loads(line)
        assert got["test_log_likelihood"] == sweep["ll"]["test_log_likelihood"]  # bit for bit
        assert (got["k"], got["n_test"], got["status"]) == (3, 40, "evaluated")
        assert "test log-likelihood, k=3: 40/40 (100%)" in err  # its progress, on stderr
        png = sweep["root"] / "grid.png"
        code, out, err = run(capsys, training_main, "sample", "--checkpoint", str(exported),
                             "--n", "16", "--out", str(png))  # fmt: skip
    assert code == 0 and out.startswith(f"wrote {png}"), err
    assert Image.open(png).size == (4 * 28 + 5 * 2,) * 2  # 4 x 4 images, 2-pixel padding


def test_results_errors_name_the_cells_and_create_nothing(sweep, tmp_path, capsys):
    s = sweep["storage"]
    code, _, err = run(capsys, results_main, "export", "vlae", "--storage", s, "--cell", "x",
                       "--out", str(tmp_path / "o"))  # fmt: skip
    assert code == 2 and err == (
        f"error: no winner for cell 'x' of vlae under {s}; cells with a winner: {CELL['sweep']}\n"
    )
    code, _, err = run(capsys, results_main, "best", "spvae", "--storage", s)
    assert code == 2 and err.startswith("error: no results for spvae under ")
    code, _, err = run(capsys, results_main, "best", "vlae", "--storage", str(tmp_path / "none"))
    assert code == 2 and err == f"error: no sweep under {tmp_path / 'none'}\n"
    assert not (tmp_path / "o").exists() and not (tmp_path / "none").exists()


def damaged_copy(exported: Path, name: str, how: str, at: int, xor: int) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="damaged-")) / "export"
    shutil.copytree(exported, folder)
    path, data = folder / name, (folder / name).read_bytes()
    if how == "truncate":
        path.write_bytes(data[: at % len(data)])
    else:
        i = at % len(data)
        path.write_bytes(data[:i] + bytes([data[i] ^ xor]) + data[i + 1 :])
    return folder


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from([WEIGHTS_FILE, RECORD_FILE, "config.json"]),
    how=st.sampled_from(["truncate", "flip"]),
    at=st.integers(0, 10**6),
    xor=st.integers(1, 255),
)
def test_a_damaged_export_loads_whole_or_is_one_error_line(exported, name, how, at, xor):
    """Damaged weights never load (their SHA-256); a damaged JSON file is refused in one line,
    or loads the same weights when the bytes it changed name nothing the model needs."""
    folder = damaged_copy(exported, name, how, at, xor)
    try:
        model, _ = load(folder)
    except ExportError as e:
        assert "\n" not in str(e) and str(folder) in str(e)
        return
    finally:
        shutil.rmtree(folder.parent)
    assert name != WEIGHTS_FILE
    original, _ = load(exported)
    pairs = zip(original.state_dict().values(), model.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


def test_another_schema_a_missing_folder_and_bad_json_are_one_error_line(exported, capsys):
    folder = damaged_copy(exported, RECORD_FILE, "flip", 0, 0)  # an unchanged copy
    record = json.loads((folder / RECORD_FILE).read_text())
    (folder / RECORD_FILE).write_text(json.dumps({**record, "schema_version": 2}))
    cases = {
        folder: f"{folder / RECORD_FILE} has schema version 2; this code reads version 1",
        folder.parent / "nothing": f"no exported model at {folder.parent / 'nothing'}",
    }
    for where, start in cases.items():
        code, out, err = run(capsys, training_main, "sample", "--checkpoint", str(where))
        assert (code, out) == (2, "") and err.startswith(f"error: {start}"), err
        assert err.count("\n") == 1
    (folder / RECORD_FILE).write_text("{not json")
    code, _, err = run(capsys, training_main, "evaluate", "--checkpoint", str(folder))
    assert code == 2 and err.startswith(f"error: {folder / RECORD_FILE} is damaged (")
    shutil.rmtree(folder.parent)


def test_replay_list_marks_the_winner(sweep, capsys):
    code, out, _ = run(capsys, replay_main, "--storage", sweep["storage"], "--list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["winner", "sweep", "trial_id"]
    marked = {t: ln.lstrip().startswith("* ") for ln in lines for t in ("a1", "b2") if t in ln}
    assert marked == {"a1": True, "b2": False}
