"""Running a trained model: load a checkpoint, compute logits in batches, predict a drawing."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mnist_core.checkpoint import load_checkpoint, model_from_checkpoint
from mnist_core.config import TrainConfig
from mnist_core.data import normalize
from mnist_core.device import one_thread
from mnist_core.models import MODELS
from mnist_core.preprocess import canvas_to_mnist
from mnist_core.saliency import integrated_gradients
from mnist_core.storage import shown_path

# The model the pages use when no run is chosen: the shipped one, or MNIST_DEFAULT_MODEL's. A host can
# serve another model that way, and the browser tests serve a copy, so the map built beside it (it is
# stored next to its checkpoint, see embedding.map_path) never lands in the checkout's models/ folder.
DEFAULT_MODEL_PATH = Path(os.environ.get("MNIST_DEFAULT_MODEL")
                          or Path(__file__).resolve().parent.parent / "models" / "default.pt")
# Loaded models, least recently used first. Bounded at MAX_MODELS: the largest model here is a few
# MB, and the live panel loads each new epoch's checkpoint, so without a bound a long run would
# keep every epoch's weights. A model kept for a purpose (`keep_for`, e.g. Draw's, which must answer
# within milliseconds) is never evicted while it is that purpose's latest.
MAX_MODELS = 8
_models: OrderedDict[tuple[str, int, int], tuple[nn.Module, TrainConfig]] = OrderedDict()
_kept: dict[str, tuple[str, int, int]] = {}  # purpose -> the key of its model
_models_lock = threading.Lock()


def resolve_checkpoint(spec: str | Path | None = None) -> Path:
    """A checkpoint file from "default" (or None), a run folder or a checkpoint path."""
    if spec is None or str(spec) == "default":
        path = DEFAULT_MODEL_PATH
    else:
        path = Path(spec)
        if path.is_dir():
            path = path / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {shown_path(path)}")
    return path


def file_key(path: Path) -> tuple[str, int, int]:
    """Identifies one version of a file: a rewritten checkpoint gets a new key."""
    stat = path.stat()
    return str(path.resolve()), stat.st_mtime_ns, stat.st_size


def load_model(spec: str | Path | None = None, keep_for: str | None = None) -> tuple[nn.Module, TrainConfig]:
    """The model (eval mode, CPU) and its config, loaded once per checkpoint version.

    `keep_for` names a purpose (Draw's page) whose latest model stays loaded however many other
    models are loaded after it."""
    key = file_key(resolve_checkpoint(spec))
    with _models_lock:
        if key in _models:
            _models.move_to_end(key)
        else:
            model, config = model_from_checkpoint(load_checkpoint(key[0]), key[0])
            # The same memory format as training (models.ModelSpec.channels_last): the same logits,
            # 1.5-2x faster wide convolutions on the CPU, and no slowdown for the seed model.
            if MODELS[config.model].channels_last:
                model = model.to(memory_format=torch.channels_last)
            _models[key] = (model, config)
        if keep_for is not None:
            _kept[keep_for] = key
        kept = set(_kept.values())
        for old in [old for old in _models if old not in kept][: max(0, len(_models) - MAX_MODELS)]:
            del _models[old]
        return _models[key]


# One drawing at a time: the Draw page and `predict`, which must answer within a few milliseconds.

ModelChoice = nn.Module | str | Path | None


def predict(image: np.ndarray, model: ModelChoice = None) -> np.ndarray | None:
    """Ten class probabilities (float64, summing to 1) for the digit in `image`; None if it is empty.

    `image`: H x W x 4 (RGBA), H x W x 3 (RGB) or H x W uint8 of any size, light ink on dark,
    dark ink on light or ink only in the alpha channel (see `preprocess.canvas_to_mnist`).
    `model`: None or "default" for the shipped model, a run folder or checkpoint path (loaded
    once per file version), or an nn.Module that takes MNIST-normalised images.
    """
    pixels = canvas_to_mnist(image)
    if pixels is None:
        return None
    network, dataset = resolve_model(model)
    return probabilities(network, pixels, dataset)


def resolve_model(model: ModelChoice = None) -> tuple[nn.Module, str]:
    """(the network, the dataset whose normalisation it was trained with)."""
    if isinstance(model, nn.Module):
        return model, "mnist"
    network, config = load_model(model)
    return network, config.dataset


@torch.inference_mode()
def probabilities(model: nn.Module, pixels: np.ndarray, dataset: str = "mnist") -> np.ndarray:
    """Ten class probabilities for one 28x28 image with 0..1 pixels (from `canvas_to_mnist`)."""
    device = next(model.parameters()).device
    batch = normalize(torch.as_tensor(pixels, dtype=torch.float32, device=device).unsqueeze(0), dataset)
    # Loaded models are already in eval mode and shared between threads: only switch when needed.
    was_training = model.training
    if was_training:
        model.eval()
    try:
        with one_thread():
            logits = model(batch)
    finally:
        if was_training:
            model.train()
    return torch.softmax(logits.double(), 1)[0].cpu().numpy()


def saliency(model: nn.Module, pixels: np.ndarray, target: int | None = None, dataset: str = "mnist") -> np.ndarray:
    """Integrated-gradients attribution [28, 28] (-1..1) of one 0..1 image, on one CPU thread."""
    with one_thread():
        return integrated_gradients(model, pixels, target=target, dataset=dataset)
