"""`python -m training`, run in-process: a run folder belongs to one config, a damaged or foreign
checkpoint is refused, and bad input is one `error:` line with exit code 2, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from training import checkpoint
from training.__main__ import main


def argv(root: Path, *extra: str, latent: int = 4, epochs: int = 1, family: bool = True):
    """A tiny VAE on the tiny Fashion-MNIST: one epoch of 9 batches takes a fraction of a second."""
    return [
        *(["--family", "vae"] if family else []),
        "--set",
        f"data/root={root}",
        "--set",
        f"model/latent_dim={latent}",
        "--set",
        "model/hidden_dim=16",
        "--set",
        "train/batch_size=32",
        "--set",
        f"train/max_epochs={epochs}",
        *extra,
    ]


def run(capsys, args: list[str]) -> tuple[int, dict | None, list[str]]:
    """(exit code, the final JSON line or None, the stderr lines)."""
    code = main(args)
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    return code, json.loads(lines[-1]) if lines else None, err.strip().splitlines()


def assert_one_error_line(err: list[str], *fragments: str) -> None:
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert "Traceback" not in err[0]
    for fragment in fragments:
        assert fragment in err[0], (fragment, err[0])


def test_a_run_dir_records_its_config(tiny_data_root, tmp_path, capsys):
    d = tmp_path / "D"
    code, result, _ = run(capsys, argv(tiny_data_root, "--run-dir", str(d)))
    assert code == 0 and result["status"] == "completed"
    assert json.loads((d / checkpoint.CONFIG_FILE).read_text()) == result["config"]
    assert result["config"]["model"]["latent_dim"] == 4


def test_another_config_is_refused_and_the_checkpoint_left_untouched(
    tiny_data_root, tmp_path, capsys
):
    d = tmp_path / "D"
    assert run(capsys, argv(tiny_data_root, "--run-dir", str(d)))[0] == 0
    before = {f: (d / f).read_bytes() for f in (checkpoint.CHECKPOINT_FILE, checkpoint.CONFIG_FILE)}

    code, result, err = run(capsys, argv(tiny_data_root, "--run-dir", str(d), latent=6))
    assert code == 2 and result is None
    assert_one_error_line(err, f"model/latent_dim: 4 in {d}, 6 now", "--run-dir", "--restart")
    assert "hidden_dim" not in err[0]  # only the keys that differ
    assert {f: (d / f).read_bytes() for f in before} == before
    assert sorted(p.name for p in d.iterdir()) == sorted(before)


def test_the_same_config_resumes_where_it_stopped(tiny_data_root, tmp_path, capsys, monkeypatch):
    d, args = tmp_path / "D", argv(tiny_data_root, "--run-dir", str(tmp_path / "D"), epochs=3)
    publish = checkpoint.publish

    class Killed(Exception):
        pass

    def publish_then_die(ckpt_dir, path):  # the process dies right after epoch 1's checkpoint
        publish(ckpt_dir, path)
        raise Killed

    monkeypatch.setattr(checkpoint, "publish", publish_then_die)
    with pytest.raises(Killed):
        main(args)
    monkeypatch.setattr(checkpoint, "publish", publish)
    assert checkpoint.load(d)["train_state"]["epoch"] == 1
    capsys.readouterr()

    code, result, err = run(capsys, args)
    assert code == 0 and result["epoch"] == 3 and result["resumed_from"] == 1
    assert [line.split(":")[0] for line in err] == ["epoch 2/3", "epoch 3/3"]


def test_a_longer_budget_resumes_and_is_recorded_a_shorter_one_is_refused(
    tiny_data_root, tmp_path, capsys
):
    d = tmp_path / "D"
    assert run(capsys, argv(tiny_data_root, "--run-dir", str(d), epochs=1))[0] == 0
    code, result, _ = run(capsys, argv(tiny_data_root, "--run-dir", str(d), epochs=2))
    assert code == 0 and result["epoch"] == 2 and result["resumed_from"] == 1
    assert json.loads((d / checkpoint.CONFIG_FILE).read_text())["train"]["max_epochs"] == 2

    code, _, err = run(capsys, argv(tiny_data_root, "--run-dir", str(d), epochs=1))
    assert code == 2
    assert_one_error_line(err, f"train/max_epochs: 2 in {d}, 1 now")


def test_restart_starts_afresh_and_keeps_the_old_files_aside(tiny_data_root, tmp_path, capsys):
    d = tmp_path / "D"
    assert run(capsys, argv(tiny_data_root, "--run-dir", str(d)))[0] == 0
    old_state = (d / checkpoint.CHECKPOINT_FILE).read_bytes()

    restart = argv(tiny_data_root, "--run-dir", str(d), "--restart", latent=6)
    code, result, err = run(capsys, restart)
    assert code == 0 and result["resumed_from"] == 0 and result["epoch"] == 1
    (previous,) = d.glob(f"{checkpoint.PREVIOUS_PREFIX}*")
    assert any(str(previous) in line for line in err)  # said so on stderr
    assert (previous / checkpoint.CHECKPOINT_FILE).read_bytes() == old_state
    assert checkpoint.read_config(previous)["model"]["latent_dim"] == 4
    assert checkpoint.read_config(d)["model"]["latent_dim"] == 6
    assert checkpoint.load(d)["model"]["q_head.bias"].shape == (12,)  # 2 x latent_dim 6

    # a second restart keeps both earlier runs
    assert run(capsys, argv(tiny_data_root, "--run-dir", str(d), "--restart"))[0] == 0
    assert len(list(d.glob(f"{checkpoint.PREVIOUS_PREFIX}*"))) == 2


def test_a_checkpoint_without_a_config_record_is_refused_unless_restart(
    tiny_data_root, tmp_path, capsys
):
    d = tmp_path / "D"
    assert run(capsys, argv(tiny_data_root, "--run-dir", str(d)))[0] == 0
    (d / checkpoint.CONFIG_FILE).unlink()  # a run dir from before configs were recorded
    code, _, err = run(capsys, argv(tiny_data_root, "--run-dir", str(d)))
    assert code == 2
    assert_one_error_line(err, "no config.json", "--restart")
    assert run(capsys, argv(tiny_data_root, "--run-dir", str(d), "--restart"))[0] == 0


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2],  # truncated
        lambda b: b"garbage bytes, not a checkpoint\n" * 10,
        lambda b: b"",
    ],
    ids=["truncated", "garbage", "empty"],
)
def test_a_damaged_checkpoint_is_one_clear_error(tiny_data_root, tmp_path, capsys, damage):
    d = tmp_path / "D"
    assert run(capsys, argv(tiny_data_root, "--run-dir", str(d)))[0] == 0
    state = d / checkpoint.CHECKPOINT_FILE
    state.write_bytes(damage(state.read_bytes()))
    damaged = state.read_bytes()
    code, result, err = run(capsys, argv(tiny_data_root, "--run-dir", str(d)))
    assert code == 2 and result is None
    assert_one_error_line(err, str(state), "damaged or unreadable", "--restart")
    assert state.read_bytes() == damaged


def test_a_checkpoint_that_does_not_fit_the_model_is_refused(tiny_data_root, tmp_path, capsys):
    """Same recorded config, but the weights are another model's (a hand-copied state.pt)."""
    d, other = tmp_path / "D", tmp_path / "other"
    assert run(capsys, argv(tiny_data_root, "--run-dir", str(d)))[0] == 0
    assert run(capsys, argv(tiny_data_root, "--run-dir", str(other), latent=6))[0] == 0
    foreign = (other / checkpoint.CHECKPOINT_FILE).read_bytes()
    (d / checkpoint.CHECKPOINT_FILE).write_bytes(foreign)
    code, result, err = run(capsys, argv(tiny_data_root, "--run-dir", str(d)))
    assert code == 2 and result is None
    assert_one_error_line(err, "does not fit the model", "q_head.bias [12] saved, [8] now")
    assert (d / checkpoint.CHECKPOINT_FILE).read_bytes() == foreign


@pytest.mark.parametrize(
    "extra,first,second",
    [
        (
            ["--dataset", "mnist", "--set", "data/dataset=fashion_mnist"],
            "--dataset mnist",
            "--set data/dataset=fashion_mnist",
        ),
        (["--set", "family=svae"], "--family vae", "--set family=svae"),
        (["--set", "train/lr=0.1", "--set", "train/lr=0.2"], "train/lr=0.1", "train/lr=0.2"),
    ],
)
def test_two_flags_that_set_one_key_differently_are_an_error(
    tiny_data_root, capsys, extra, first, second
):
    code, result, err = run(capsys, argv(tiny_data_root, *extra))
    assert code == 2 and result is None
    assert_one_error_line(err, first, second, "differently")


def test_the_same_value_twice_is_fine(tiny_data_root, capsys):
    twice = ["--dataset", "mnist", "--set", "data/dataset=mnist", "--set", "family=vae"]
    code, result, _ = run(capsys, argv(tiny_data_root, *twice))
    assert code == 0 and result["config"]["data"]["dataset"] == "mnist"


@pytest.mark.parametrize(
    "extra,fragment",
    [
        (["--test-k", "-1"], "--test-k must be >= 0"),
        (["--test-k", "abc"], "invalid int value: 'abc'"),
        (["--run-dir", "{file}"], "is a file, not a folder"),
        (["--run-dir", "{file}/sub"], "cannot be created"),
        (["--set", "model/latent_dim"], "expected KEY=VALUE"),
        (["--family", "gan"], "unknown model family 'gan'"),
        (["--set", "model/latent=3"], "model/latent"),
        (["--set", "data/split_seed=abc"], "data/split_seed must be int"),
        (["--set", "train/patience=1.5"], "train/patience must be int"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--set", "train/device=toaster"], "toaster"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(tiny_data_root, tmp_path, capsys, extra, fragment):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    extra = [e.replace("{file}", str(a_file)) for e in extra]
    family = "--family" not in extra
    code, result, err = run(capsys, argv(tiny_data_root, *extra, family=family))
    assert code == 2 and result is None
    assert_one_error_line(err, fragment)
    assert a_file.read_text() == "not a folder"


def test_a_missing_family_is_one_error_line(tiny_data_root, capsys):
    code, _, err = run(capsys, argv(tiny_data_root, family=False))
    assert code == 2
    assert_one_error_line(err, "--family")


@pytest.mark.parametrize(
    "extra,fragments",
    [
        (["--set", "model/likelihood=foo"], ["likelihood must be one of 'bernoulli', 'gaussian'"]),
        (["--set", "train/lr=NaN"], ["train/lr=nan is not a number", "> 0"]),
        (["--set", "train/lr=-Infinity"], ["train/lr=-inf is not a number"]),
        (["--set", "model/latent_dim=1000000000"],
         ["model/latent_dim=1000000000 with train/batch_size=128 needs about", "(parameters",
          "free: lower"]),
        (["--set", "train/batch_size=10000000"], ["train/batch_size=10000000 needs about"]),
        (["--set", "model/hidden_dim=99999999999"], ["model/hidden_dim=99999999999 is too large"]),
    ],
)  # fmt: skip
def test_a_value_no_model_can_take_is_one_error_line_and_nothing_is_created(
    tiny_data_root, tmp_path, capsys, extra, fragments
):
    run_dir = tmp_path / "run"
    given = ["--family", "vae", "--set", f"data/root={tiny_data_root}", "--run-dir", str(run_dir)]
    code, result, err = run(capsys, [*given, *extra])
    assert code == 2 and result is None
    assert_one_error_line(err, *fragments)
    assert not run_dir.exists()


def test_the_command_itself_refuses_a_bad_likelihood_in_one_line(tiny_data_root, tmp_path):
    """`python -m training` as a user runs it: one error line, exit 2, no traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "training", *argv(tiny_data_root, "--set", "model/likelihood=foo")],
        capture_output=True, text=True, cwd=Path(__file__).parents[2], timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    assert_one_error_line(proc.stderr.strip().splitlines(), "model: likelihood must be one of")
