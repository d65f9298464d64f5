"""Checkpoints: plain tensors that load with weights_only=True and give identical logits."""

import pytest
import torch

from mnist_core.checkpoint import (
    CheckpointError,
    load_checkpoint,
    make_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from mnist_core.config import TrainConfig
from mnist_core.models import build_model


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
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(path, {"format": "x", "bad": Unsaveable()})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="not an mnist_core checkpoint"):
        load_checkpoint(other)


def test_weights_that_do_not_fit_the_model_are_a_clear_error(tmp_path):
    checkpoint = make_checkpoint(build_model("seed"), TrainConfig(), 1, {})
    checkpoint["config"]["model"] = "fast"  # seed's weights claimed to be the fast model's
    with pytest.raises(CheckpointError, match="does not match"):
        model_from_checkpoint(checkpoint)
