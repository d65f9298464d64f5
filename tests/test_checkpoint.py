"""Checkpoints: plain tensors that load with weights_only=True and give identical logits;
a file that cannot be loaded is a CheckpointError that says why in plain words."""

import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import mnist_core
from mnist_core.checkpoint import (
    CheckpointError,
    display_path,
    load_checkpoint,
    make_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from mnist_core.config import TrainConfig
from mnist_core.models import build_model
from mnist_core.storage import StorageError
from tests.conftest import run_command


def test_round_trip_gives_identical_logits(tmp_path):
    model = build_model("modern").eval()
    config = TrainConfig(model="modern")
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, make_checkpoint(model, config, epoch=3, metrics={"val_accuracy": 12.5}))
    raw = torch.load(path, weights_only=True)
    assert raw["epoch"] == 3 and raw["metrics"] == {"val_accuracy": 12.5} and raw["config"] == config.to_dict()
    loaded, loaded_config = model_from_checkpoint(load_checkpoint(path))
    images = torch.randn(5, 1, 28, 28)
    assert loaded_config == config
    assert torch.equal(loaded(images), model(images))


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, make_checkpoint(build_model("seed"), TrainConfig(), 1, {}))
    before = path.read_bytes()

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle this")

    with pytest.raises(StorageError, match="Could not write .*checkpoint.pt: RuntimeError") as raised:
        save_checkpoint(path, {"format": "x", "bad": Unsaveable()})
    assert isinstance(raised.value.__cause__, RuntimeError)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="not a checkpoint this app can load: it is not a PyTorch file"):
        load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="not one saved by this app"):
        load_checkpoint(other)


def test_weights_that_do_not_fit_the_model_are_a_clear_error(tmp_path):
    checkpoint = make_checkpoint(build_model("seed"), TrainConfig(), 1, {})
    checkpoint["config"]["model"] = "fast"  # seed's weights claimed to be the fast model's
    with pytest.raises(CheckpointError, match="its weights do not match the 'fast' model"):
        model_from_checkpoint(checkpoint)


# Each kind of bad file, written for real: (what to write, the reason the message must give).


class NotATensor:
    """Any class of ours: weights_only refuses to rebuild it, as it would refuse os.system."""


def seed_checkpoint(**config_changes) -> dict:
    checkpoint = make_checkpoint(build_model("seed"), TrainConfig(), 1, {})
    checkpoint["config"].update(config_changes)
    return checkpoint


def write_empty(path):
    path.write_bytes(b"")


def truncated(length: int):
    def write(path):  # as if copying had stopped after `length` bytes
        save_checkpoint(path, seed_checkpoint())
        path.write_bytes(path.read_bytes()[:length])

    return write


write_truncated = truncated(50_000)  # torch 2.14 raises OSError (EINVAL) for most such cuts...


def write_custom_object(path):
    torch.save({"format": "mnist_core.checkpoint.v1", "extra": NotATensor()}, path)


def write_other_dict(path):
    torch.save({"weights": torch.zeros(2)}, path)


def write_damaged_archive(path):
    """A zip laid out like torch.save's whose pickle is garbage: torch's message advises weights_only=False."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"not a pickle")
        archive.writestr("archive/version", "3\n")


def write_bad_dataset(path):
    save_checkpoint(path, seed_checkpoint(dataset="xyz"))


def write_wrong_weights(path):
    save_checkpoint(path, seed_checkpoint(model="fast"))  # seed's weights claimed to be the fast model's


BAD_FILES = {
    "empty": (write_empty, "the file is empty (0 bytes)"),
    "truncated": (write_truncated, "it is not a PyTorch file (perhaps cut short while copying)"),
    "truncated-early": (truncated(100), "it is not a PyTorch file (perhaps cut short while copying)"),  # ...RuntimeError for others
    "custom-object": (write_custom_object, "it holds Python objects other than plain tensors, which this app does not load for safety"),
    "other-dict": (write_other_dict, "it is a PyTorch file but not one saved by this app"),
    "damaged": (write_damaged_archive, "it is damaged or in a form this app does not know"),
    "bad-dataset": (write_bad_dataset, "the checkpoint's settings are invalid: dataset: 'xyz' is not allowed"),
    "wrong-weights": (write_wrong_weights, "its weights do not match the 'fast' model"),
}


def assert_plain(message: str, tmp_path: Path) -> None:
    """No PyTorch advice to unpickle, no terminal colour codes, no absolute server path."""
    assert "weights_only" not in message and "\x1b" not in message
    assert str(tmp_path) not in message and str(tmp_path.resolve()) not in message
    assert not any(word.startswith("/") for word in message.split())


@pytest.mark.parametrize("case", BAD_FILES)
def test_a_bad_file_says_why_in_plain_words(case, tmp_path):
    write, reason = BAD_FILES[case]
    path = tmp_path / "checkpoint.pt"
    write(path)
    with pytest.raises(CheckpointError) as raised:
        model_from_checkpoint(load_checkpoint(path), path)
    message = str(raised.value)
    assert message.startswith(f"{tmp_path.name}/checkpoint.pt is not a checkpoint this app can load: ")
    assert reason in message
    assert_plain(message, tmp_path)


@pytest.mark.parametrize("case", ["truncated", "bad-dataset"])
def test_predict_on_a_bad_file_is_a_checkpoint_error(case, tmp_path):
    write, reason = BAD_FILES[case]
    path = tmp_path / "checkpoint.pt"
    write(path)
    drawing = np.zeros((60, 60), dtype=np.uint8)
    drawing[10:50, 25:35] = 255
    with pytest.raises(CheckpointError, match=re.escape(reason)) as raised:
        mnist_core.predict(drawing, path)
    assert_plain(str(raised.value), tmp_path)


def test_a_checkpoint_trained_on_a_gpu_loads_on_any_machine(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a CPU-only machine
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, seed_checkpoint(device="cuda"))
    model, config = model_from_checkpoint(load_checkpoint(path), path)
    assert config.device == "cuda" and config == TrainConfig(device="cuda")  # kept as trained
    assert next(model.parameters()).device.type == "cpu"


def test_an_unknown_device_name_is_still_refused(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, seed_checkpoint(device="tpu"))
    with pytest.raises(CheckpointError, match="settings are invalid: device: 'tpu' is not allowed"):
        model_from_checkpoint(load_checkpoint(path), path)


def test_text_from_the_file_is_shown_without_escape_codes(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, seed_checkpoint(**{"\x1b[31mcolour": 1}))
    with pytest.raises(CheckpointError, match="settings are invalid: colour: unknown setting") as raised:
        model_from_checkpoint(load_checkpoint(path), path)
    assert_plain(str(raised.value), tmp_path)


def test_display_path_is_relative_inside_the_current_folder_else_folder_and_name(tmp_path, monkeypatch):
    checkpoint = tmp_path / "runs" / "20261125-183914-seed-200f" / "checkpoint.pt"
    monkeypatch.chdir(tmp_path)
    assert display_path(checkpoint) == "runs/20261125-183914-seed-200f/checkpoint.pt"
    assert display_path("runs/x/checkpoint.pt") == "runs/x/checkpoint.pt"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert display_path(checkpoint) == "20261125-183914-seed-200f/checkpoint.pt"


def test_evaluate_on_the_command_line_prints_the_reason_without_a_traceback(tmp_path):
    path = tmp_path / "checkpoint.pt"
    write_custom_object(path)
    done = run_command("evaluate", path)
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr
    assert "which this app does not load for safety" in done.stderr
    assert_plain(done.stderr, tmp_path)
