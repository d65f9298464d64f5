"""Evaluation: predictions, confusion matrix, per-class accuracy, mistakes, and caching."""

import numpy as np
import torch

from mnist_core.checkpoint import make_checkpoint, save_checkpoint
from mnist_core.config import TrainConfig
from mnist_core.evaluate import evaluate, evaluate_model
from mnist_core.models import build_model
from mnist_core.train import fit


class FixedModel(torch.nn.Module):
    """Predicts from a lookup table, so every number below can be checked by hand."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.position = 0

    def forward(self, images):
        out = self.logits[self.position : self.position + len(images)]
        self.position += len(images)
        return out


def test_confusion_per_class_and_mistakes_by_confidence():
    labels = torch.tensor([0, 1, 2, 2])
    logits = torch.full((4, 10), -10.0)
    logits[0, 0] = 10  # right
    logits[1, 7] = 10  # wrong, very confident
    logits[2, 2] = 10  # right
    logits[3, 5] = 1  # wrong, barely confident
    result = evaluate_model(FixedModel(logits), torch.zeros(4, 28, 28, dtype=torch.uint8), labels)
    assert result.accuracy == 50.0
    assert result.confusion[1, 7] == 1 and result.confusion[2, 5] == 1 and result.confusion.sum() == 4
    assert list(result.mistakes) == [1, 3]
    assert list(result.mistakes_where(true_class=2)) == [3]
    assert list(result.mistakes_where(true_class=1, predicted_class=7)) == [1]
    assert list(result.mistakes_where(predicted_class=3)) == []
    assert (
        result.per_class_accuracy[0] == 100 and result.per_class_accuracy[1] == 0 and result.per_class_accuracy[2] == 50
    )
    assert np.allclose(result.probabilities.sum(1), 1, atol=1e-5)


def test_evaluate_is_cached_per_checkpoint_version(tiny_data_dir, tmp_path):
    result = fit(TrainConfig(model="fast", epochs=1, batch_size=32, lr=0.003), data_dir=tiny_data_dir)
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, make_checkpoint(result.model, TrainConfig(model="fast"), 1, {}))
    first = evaluate(path, data_dir=tiny_data_dir)
    assert evaluate(path, data_dir=tiny_data_dir) is first
    assert abs(first.accuracy - result.outcome.test_accuracy) < 1e-6
    assert len(first.labels) == 200
    # A new checkpoint at the same path (the next epoch) is evaluated afresh.
    save_checkpoint(path, make_checkpoint(build_model("fast"), TrainConfig(model="fast"), 2, {}))
    second = evaluate(path, data_dir=tiny_data_dir)
    assert second is not first and second.accuracy < first.accuracy
