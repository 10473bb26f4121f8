"""Progress for a person at `python -m training`: the epoch lines and the evaluation's meter, on
stderr only, and nothing at all where no callable is given (a sweep's trials)."""

from __future__ import annotations

import io
import json
import re

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import models
from tests.unit.test_training_cli import argv
from training import progress
from training.__main__ import main
from training.evaluate import estimate_log_likelihood
from training.progress import Carriage, EpochLines, Lines, duration

EPOCH_LINE = re.compile(
    r"epoch (\d+)/(\d+): train_loss -?\d+\.\d{3}, val_loss -?\d+\.\d{3}; "
    r"(?:\d[\d.]* s|\d+ min \d\d s|\d+ h \d\d min)"
)
# the final part: ", eta <duration> for <n> more" or ", done (<reason>)"
TAIL = re.compile(r", (eta (\S+ \S+( \S+ \S+)?) for (\d+) more|done \((\w+)\))$")


class Clock:
    """A clock a test moves by hand (no timed assertions)."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def tiny_vae_and_images(n: int = 23):
    torch.manual_seed(0)
    model = models.build("vae", {"latent_dim": 3, "hidden_dim": 8}, x_shape=(1, 4, 4))
    return model, torch.rand(n, 1, 4, 4).round()


@pytest.mark.parametrize(
    "seconds,text",
    [(0, "0.0 s"), (12.34, "12.3 s"), (59.94, "59.9 s"), (60, "1 min 00 s"), (578, "9 min 38 s"),
     (3599.4, "59 min 59 s"), (3600, "1 h 00 min"), (7500, "2 h 05 min")],
)  # fmt: skip
def test_durations_read_as_a_person_writes_them(seconds, text):
    assert duration(seconds) == text


def test_an_epoch_line_has_the_losses_the_epoch_time_and_the_eta():
    clock, out = Clock(), io.StringIO()
    lines = EpochLines(5, stream=out, clock=clock)
    for epoch, took in [(1, 12.0), (2, 8.0), (3, 10.0)]:
        clock.now += took
        lines({"epoch": epoch, "train_loss": 95.12345, "val_loss": 96.4, "finished": False})
    clock.now += 10.0
    lines({"epoch": 4, "train_loss": 1.0, "val_loss": 2.0, "finished": True,
           "stop_reason": "early_stopping"})  # fmt: skip
    assert out.getvalue().splitlines() == [
        "epoch 1/5: train_loss 95.123, val_loss 96.400; 12.0 s, eta 48.0 s for 4 more",
        "epoch 2/5: train_loss 95.123, val_loss 96.400; 8.0 s, eta 30.0 s for 3 more",
        "epoch 3/5: train_loss 95.123, val_loss 96.400; 10.0 s, eta 20.0 s for 2 more",
        "epoch 4/5: train_loss 1.000, val_loss 2.000; 10.0 s, done (early_stopping)",
    ]


def test_a_resumed_run_times_only_its_own_epochs():
    clock, out = Clock(), io.StringIO()
    lines = EpochLines(10, stream=out, clock=clock)
    clock.now = 30.0
    lines({"epoch": 7, "train_loss": 1.0, "val_loss": 2.0, "resumed_from": 4})
    assert out.getvalue().endswith("; 30.0 s, eta 30.0 s for 3 more\n")  # 3 epochs in 30 s


@given(
    total=st.integers(1, 5000),
    steps=st.lists(st.tuples(st.integers(1, 400), st.floats(0, 30)), min_size=1, max_size=60),
)
def test_plain_lines_come_every_tenth_or_ten_seconds_and_end_at_100_percent(total, steps):
    clock, out = Clock(), io.StringIO()
    meter = Lines("ll", out, interval=10.0, clock=clock)
    done, calls = 0, []
    for size, seconds in steps:
        done = min(total, done + size)
        clock.now += seconds
        calls.append((done, clock.now))
        meter(done, total)
    if done < total:
        clock.now += 1.0
        meter(total, total)
    shown = [re.fullmatch(r"ll: (\d+)/(\d+) \((\d+)%\), .*", line) for line in
             out.getvalue().splitlines()]  # fmt: skip
    assert all(shown) and shown[-1].group(1, 3) == (str(total), "100")
    assert "eta" not in out.getvalue().splitlines()[-1]
    # between two lines, less than a tenth of the work or 10 s of silence: never more of either
    printed = [int(m.group(1)) for m in shown]
    assert len(printed) <= 10 + 1 + int(clock.now / 10.0)
    assert printed == sorted(printed)


def test_plain_lines_show_the_eta_at_the_rate_so_far():
    clock, out = Clock(), io.StringIO()
    meter = Lines("test log-likelihood, k=1000", out, clock=clock)
    clock.now = 60.0
    meter(100, 1000)
    clock.now = 61.0
    meter(101, 1000)  # neither 10 s nor a tenth since the last line: silent
    assert out.getvalue() == (
        "test log-likelihood, k=1000: 100/1000 (10%), 1 min 00 s, eta 9 min 00 s\n"
    )


def test_a_terminal_without_tqdm_gets_one_line_rewritten_in_place():
    clock, out = Clock(), Tty()
    with Carriage("ll", out, clock=clock) as meter:
        for done in range(1, 11):
            clock.now += 1.0
            meter(done, 10)
    text = out.getvalue()
    assert text.endswith("ll: 10/10 (100%), 10.0 s\x1b[K\n") and text.count("\n") == 1
    assert text.count("\r") == 10  # each call a second after the last: each shown


def test_the_meter_suits_the_stream(monkeypatch):
    assert type(progress.meter("ll", io.StringIO())) is Lines
    monkeypatch.setattr(progress, "_has_tqdm", lambda: False)
    assert type(progress.meter("ll", Tty())) is Carriage


def test_on_a_terminal_with_tqdm_the_evaluation_shows_a_bar_that_reaches_100_percent():
    pytest.importorskip("tqdm")
    model, x = tiny_vae_and_images()
    out = Tty()
    with progress.meter("test log-likelihood, k=4", out) as shown:
        assert type(shown) is progress.Bar
        estimate_log_likelihood(model, x, k=4, max_rows=20, progress=shown)  # 5 images a batch
    assert "test log-likelihood, k=4: 100%" in out.getvalue() and "23/23" in out.getvalue()


def test_the_evaluation_reports_each_batch_up_to_every_example_and_its_result_is_unchanged():
    model, x = tiny_vae_and_images()
    calls = []
    seen = estimate_log_likelihood(model, x, k=4, max_rows=20, progress=lambda *a: calls.append(a))
    quiet = estimate_log_likelihood(model, x, k=4, max_rows=20)
    assert calls == [(5, 23), (10, 23), (15, 23), (20, 23), (23, 23)]
    assert {k: v for k, v in seen.items() if k != "seconds"} == {
        k: v for k, v in quiet.items() if k != "seconds"
    }


def test_training_prints_nothing_without_the_callables(tiny_data_root, capsys):
    """What a sweep's trial calls (fit with its own report, the evaluation without progress)
    writes nothing: the progress lines are the command line's alone."""
    from training.config import Config
    from training.data import load_data
    from training.trainer import build_model, fit

    cfg = Config.from_dict({"family": "vae", "data/root": str(tiny_data_root),
                            "model/latent_dim": 4, "model/hidden_dim": 16,
                            "train/batch_size": 32, "train/max_epochs": 2})  # fmt: skip
    data = load_data(cfg.data)
    model = build_model(cfg, data.x_shape)
    fit(model, data, cfg.train, report=lambda metrics, ckpt_dir: None)
    estimate_log_likelihood(model, data.test, k=2)
    assert capsys.readouterr() == ("", "")


def test_the_command_prints_epoch_lines_and_the_meter_on_stderr_and_one_json_line(
    tiny_data_root, capsys
):
    code = main(argv(tiny_data_root, "--test-k", "2", epochs=3))
    out, err = capsys.readouterr()
    assert code == 0
    (line,) = out.splitlines()  # stdout: the one final JSON line, as before
    result = json.loads(line)
    assert result["status"] == "completed" and result["k"] == 2 and result["epoch"] == 3
    err = err.splitlines()
    epochs = [e for e in err if e.startswith("epoch ")]
    assert [EPOCH_LINE.match(e).group(1, 2) for e in epochs] == [("1", "3"), ("2", "3"), ("3", "3")]
    tails = [TAIL.search(e) for e in epochs]
    assert [t.group(4) for t in tails[:2]] == ["2", "1"] and tails[2].group(5) == "max_epochs"
    meter = [e for e in err if e.startswith("test log-likelihood, k=2: ")]
    assert meter and meter[-1].startswith(f"test log-likelihood, k=2: {result['n_test']}/")
    assert meter[-1].split("(")[1].startswith("100%)")
    assert len(err) == len(epochs) + len(meter)  # nothing else on stderr
