"""training.checkpoint: its one atomic write, and its one migration point for the trainer's older
checkpoint formats (FORMATS)."""

from __future__ import annotations

import os

import pytest
import torch

from tests.unit.test_trainer import Recorder, setup
from training import checkpoint
from training.trainer import fit


def test_write_atomically_replaces_the_file_and_leaves_no_temporary_one(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")
    seen = []

    def write(tmp):
        seen.append((tmp.parent, tmp.name, path.read_text()))  # the old file, whole, meanwhile
        tmp.write_text("new")

    assert checkpoint.write_atomically(path, write) == path
    assert path.read_text() == "new" and seen == [(tmp_path, f".f.txt.tmp{os.getpid()}", "old")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_a_failed_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")

    def write(tmp):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        checkpoint.write_atomically(path, write)
    assert path.read_text() == "old"


def saved_run(tiny_data_root, tmp_path, **train):
    cfg, data, model = setup(tiny_data_root, max_epochs=1, **train)
    fit(model, data, cfg.train, report=Recorder(tmp_path))
    return tmp_path / "epoch1.pt"


def as_format(saved: dict, version: int) -> dict:
    """``saved`` as the trainer wrote it in format ``version``: the keys of that format only."""
    return {k: v for k, v in saved.items() if k in checkpoint.FORMATS[version]}


def test_the_current_format_is_recognised_and_left_as_it_is(tiny_data_root, tmp_path):
    saved = checkpoint.load(saved_run(tiny_data_root, tmp_path))
    assert checkpoint.format_of(saved) == checkpoint.FORMAT == 3
    assert set(saved) == set(checkpoint.FORMATS[checkpoint.FORMAT])  # every key the trainer writes
    assert checkpoint.migrate(saved) is saved


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_format_is_brought_to_the_current_one(tiny_data_root, tmp_path, version):
    current = checkpoint.load(saved_run(tiny_data_root, tmp_path))
    old = as_format(current, version)
    assert checkpoint.format_of(old) == version
    migrated = checkpoint.migrate(old)
    assert checkpoint.format_of(migrated) == checkpoint.FORMAT
    assert migrated["ema"] is None and migrated["param_names"] is None
    assert set(old) == set(checkpoint.FORMATS[version])  # the dict given is left unchanged
    assert checkpoint.test_weights(old) is current["best_model"]
    last = checkpoint.test_weights(old, last_epoch=True)  # no EMA: the last weights, named
    assert all(torch.equal(last[k], current["model"][k]) for k in current["model"])


def test_load_migrates_an_old_checkpoint_file(tiny_data_root, tmp_path):
    current = checkpoint.load(saved_run(tiny_data_root, tmp_path))
    torch.save(as_format(current, 1), tmp_path / "old.pt")
    loaded = checkpoint.load(tmp_path / "old.pt")
    assert checkpoint.format_of(loaded) == checkpoint.FORMAT and loaded["ema"] is None


def test_a_format_2_checkpoint_with_an_ema_resumes_but_cannot_give_its_last_ema_weights(
    tiny_data_root, tmp_path
):
    path = saved_run(tiny_data_root, tmp_path / "a", ema_rate=0.9)
    old = as_format(checkpoint.load(path), 2)
    assert old["ema"] is not None
    torch.save(old, tmp_path / "old.pt")
    with pytest.raises(checkpoint.RunDirError, match="written before train/test_last_epoch"):
        checkpoint.test_weights(checkpoint.load(tmp_path / "old.pt"), last_epoch=True)
    cfg, data, straight = setup(tiny_data_root, max_epochs=2, ema_rate=0.9)
    fit(straight, data, cfg.train)
    _, _, resumed = setup(tiny_data_root)
    fit(resumed, data, cfg.train, resume=tmp_path / "old.pt")  # the same trajectory
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("foreign", [[1, 2], {"model": {}}, {"weights": torch.zeros(2)}])
def test_what_is_no_checkpoint_of_this_trainer_is_left_for_resume_point_to_refuse(foreign):
    assert checkpoint.format_of(foreign) is None
    assert checkpoint.migrate(foreign) is foreign
