"""Inference: finding checkpoints, loading models once per version, batched logits."""

import os
import subprocess
import sys

import pytest
import torch

from mnist_core.checkpoint import make_checkpoint, save_checkpoint
from mnist_core.config import TrainConfig
from mnist_core.data import normalize
from mnist_core.inference import load_model, resolve_checkpoint
from mnist_core.models import build_model
from mnist_core.train import logits_in_batches


def test_logits_in_batches_matches_one_big_batch():
    model = build_model("modern").eval()
    images = torch.randint(0, 256, (25, 28, 28), dtype=torch.uint8)
    with torch.no_grad():
        expected = model(normalize(images))
    assert torch.allclose(logits_in_batches(model, images, batch_size=7), expected, atol=1e-5)
    assert not model.training


def test_resolve_and_load_a_run_folder(tmp_path):
    save_checkpoint(tmp_path / "checkpoint.pt", make_checkpoint(build_model("seed"), TrainConfig(), 1, {}))
    assert resolve_checkpoint(tmp_path) == tmp_path / "checkpoint.pt"
    model, config = load_model(tmp_path)
    assert config == TrainConfig() and load_model(tmp_path)[0] is model
    with pytest.raises(FileNotFoundError):
        resolve_checkpoint(tmp_path / "nothing")


def test_mnist_default_model_is_the_model_named_default(tmp_path):
    """A host (and the browser tests) can serve another model than models/default.pt."""
    mine = tmp_path / "mine.pt"
    done = subprocess.run([sys.executable, "-m", "mnist_core", "evaluate", "default"], capture_output=True,
                          text=True, env={**os.environ, "MNIST_DEFAULT_MODEL": str(mine)})
    assert done.returncode == 1 and done.stderr.strip() == f"error: no checkpoint at {mine}", done.stderr
