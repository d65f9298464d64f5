"""Evaluating a checkpoint on a split: every image's prediction, the confusion matrix,
per-class accuracy and the mistakes, most confident first.

Results are cached per checkpoint version (path, modification time and size), so pages
never recompute them, and a checkpoint rewritten by a later epoch is picked up at once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mnist_core.data import default_data_dir, load_split
from mnist_core.inference import file_key, load_model, resolve_checkpoint
from mnist_core.train import logits_in_batches


@dataclass(frozen=True)
class Evaluation:
    labels: np.ndarray  # [N] true classes
    predictions: np.ndarray  # [N] predicted classes
    probabilities: np.ndarray  # [N, 10] float32
    confusion: np.ndarray  # [10, 10] counts; row = true class, column = predicted class
    mistakes: np.ndarray  # indices of wrong predictions, most confident first

    @property
    def accuracy(self) -> float:
        return float((self.predictions == self.labels).mean() * 100)

    @property
    def per_class_accuracy(self) -> np.ndarray:
        """[10] percent of each true class predicted correctly."""
        return np.diag(self.confusion) / np.maximum(self.confusion.sum(1), 1) * 100

    @property
    def confidence(self) -> np.ndarray:
        return self.probabilities.max(1)

    def mistakes_where(self, true_class: int | None = None, predicted_class: int | None = None) -> np.ndarray:
        """The mistakes (most confident first) with this true and/or predicted class."""
        keep = np.ones(len(self.mistakes), dtype=bool)
        if true_class is not None:
            keep &= self.labels[self.mistakes] == true_class
        if predicted_class is not None:
            keep &= self.predictions[self.mistakes] == predicted_class
        return self.mistakes[keep]


_cache: dict[tuple, Evaluation] = {}
_cache_lock = threading.Lock()


def evaluate(
    checkpoint: str | Path | None = None, train: bool = False, data_dir: str | Path | None = None
) -> Evaluation:
    """Evaluate a checkpoint ("default", a run folder or a file) on the test (or training) split."""
    path = resolve_checkpoint(checkpoint)
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    key = (*file_key(path), train, str(root.resolve()))
    with _cache_lock:
        if key not in _cache:
            if len(_cache) >= 16:  # drop the oldest: earlier epochs of a run are rarely looked at again
                _cache.pop(next(iter(_cache)))
            model, config = load_model(path)
            images, labels = load_split(config.dataset, train, root)
            _cache[key] = evaluate_model(model, images, labels, config.dataset)
        return _cache[key]


def evaluate_model(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, dataset: str = "mnist"
) -> Evaluation:
    probabilities = torch.softmax(logits_in_batches(model, images, dataset=dataset), 1).numpy()
    predictions = probabilities.argmax(1)
    labels_np = labels.numpy()
    confusion = np.zeros((10, 10), dtype=np.int64)
    np.add.at(confusion, (labels_np, predictions), 1)
    wrong = np.flatnonzero(predictions != labels_np)
    mistakes = wrong[np.argsort(-probabilities[wrong].max(1), kind="stable")]
    return Evaluation(labels_np, predictions, probabilities, confusion, mistakes)
