"""Two models judged image by image on the same split: what the second fixes, and what it breaks.

`compare(a, b)` evaluates both (each a run folder, a checkpoint file or "default"; evaluations
are cached per checkpoint version, `mnist_core.evaluate`) and sets them side by side:

- `fixed`: the images A gets wrong and B gets right; `broken`: the reverse;
- each class's accuracy under both, and its change;
- the change in the confusion matrix (B's counts minus A's).

The accuracies add up: b_accuracy - a_accuracy = (len(fixed) - len(broken)) / images * 100,
since every other image is right under both or wrong under both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_core.evaluate import Evaluation, evaluate
from mnist_core.inference import load_model, resolve_checkpoint


class CompareError(ValueError):
    """The two models cannot be compared image by image (they judge different images)."""


@dataclass(frozen=True)
class Comparison:
    a: Evaluation
    b: Evaluation
    split: str

    @property
    def images(self) -> int:
        return len(self.a.labels)

    @property
    def fixed(self) -> np.ndarray:
        """The images A gets wrong and B gets right, B's most confident first."""
        right_a, right_b = self._right()
        return self._by_confidence(np.flatnonzero(~right_a & right_b), self.b)

    @property
    def broken(self) -> np.ndarray:
        """The images A gets right and B gets wrong, B's most confident first."""
        right_a, right_b = self._right()
        return self._by_confidence(np.flatnonzero(right_a & ~right_b), self.b)

    @property
    def per_class_change(self) -> np.ndarray:
        """[10] each class's accuracy under B minus under A, in points."""
        return self.b.per_class_accuracy - self.a.per_class_accuracy

    @property
    def confusion_change(self) -> np.ndarray:
        """[10, 10] B's confusion counts minus A's (row: true class, column: predicted)."""
        return self.b.confusion - self.a.confusion

    def to_dict(self) -> dict:
        """The CLI's JSON line: accuracies, the fixed and broken indices, each class's change."""
        return {
            "split": self.split,
            "images": self.images,
            "a_accuracy": round(self.a.accuracy, 4),
            "b_accuracy": round(self.b.accuracy, 4),
            "fixed": self.fixed.tolist(),
            "broken": self.broken.tolist(),
            "per_class": [
                {"class": digit, "a_accuracy": round(float(a), 4), "b_accuracy": round(float(b), 4),
                 "change": round(float(b - a), 4)}
                for digit, (a, b) in enumerate(zip(self.a.per_class_accuracy, self.b.per_class_accuracy))
            ],
        }

    def _right(self) -> tuple[np.ndarray, np.ndarray]:
        return self.a.predictions == self.a.labels, self.b.predictions == self.b.labels

    @staticmethod
    def _by_confidence(indices: np.ndarray, judge: Evaluation) -> np.ndarray:
        return indices[np.argsort(-judge.confidence[indices], kind="stable")]


def compare(a: str | Path, b: str | Path, train: bool = False, data_dir: str | Path | None = None) -> Comparison:
    """A against B on the test split (or the training split). FileNotFoundError names a missing
    checkpoint; CompareError says why two models cannot be compared."""
    path_a, path_b = resolve_checkpoint(a), resolve_checkpoint(b)
    dataset_a, dataset_b = load_model(path_a)[1].dataset, load_model(path_b)[1].dataset
    if dataset_a != dataset_b:
        raise CompareError(f"the first model was trained on {dataset_a}, the second on {dataset_b}: "
                           "they judge different images")
    return Comparison(evaluate(path_a, train, data_dir), evaluate(path_b, train, data_dir),
                      "train" if train else "test")
