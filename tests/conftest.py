"""Shared fixtures: a tiny MNIST written as real IDX files, so torchvision's loading path runs.

The tiny digits are easy on purpose: class k is a bright 6x6 square at a position that
depends on k, plus noise. A model that learns anything reaches high accuracy in one epoch.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest

TINY_TRAIN = 512
TINY_TEST = 200


def tiny_digits(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    rng.shuffle(labels)
    images = rng.integers(0, 40, size=(count, 28, 28), dtype=np.uint8)
    for image, label in zip(images, labels):
        row, column = 3 + 8 * (label // 4), 3 + 7 * (label % 4) - (label // 8)
        image[row : row + 6, column : column + 6] = 255
    return images, labels.astype(np.uint8)


def write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    with open(folder / f"{prefix}-images-idx3-ubyte", "wb") as file:
        file.write(struct.pack(">IIII", 0x0803, len(images), 28, 28) + images.tobytes())
    with open(folder / f"{prefix}-labels-idx1-ubyte", "wb") as file:
        file.write(struct.pack(">II", 0x0801, len(labels)) + labels.tobytes())


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny-data")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw, "train", *tiny_digits(TINY_TRAIN, seed=1))
    write_idx(raw, "t10k", *tiny_digits(TINY_TEST, seed=2))
    return root


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    return tmp_path / "runs"


def real_data_dir() -> Path | None:
    """The folder in MNIST_DATA_DIR when it holds the real MNIST, else None."""
    folder = os.environ.get("MNIST_DATA_DIR")
    if folder and (Path(folder) / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        return Path(folder)
    return None
