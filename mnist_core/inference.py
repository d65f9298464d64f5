"""Running a trained model: load a checkpoint, compute logits in batches, predict a drawing."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import torch
from torch import nn

from mnist_core.checkpoint import load_checkpoint, model_from_checkpoint
from mnist_core.config import TrainConfig
from mnist_core.data import normalize


@torch.inference_mode()
def logits_in_batches(
    model: nn.Module,
    images: torch.Tensor,
    device: torch.device | None = None,
    dataset: str = "mnist",
    batch_size: int = 2000,
) -> torch.Tensor:
    """Logits [N, 10] for uint8 images [N, 28, 28], in eval mode, without tracking gradients."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    outputs = []
    with autocast:
        for start in range(0, len(images), batch_size):
            batch = normalize(images[start : start + batch_size].to(device), dataset)
            outputs.append(model(batch).float())
    model.train(was_training)
    return torch.cat(outputs)


DEFAULT_MODEL_PATH = Path(__file__).resolve().parent.parent / "models" / "default.pt"
_models: dict[tuple[str, int, int], tuple[nn.Module, TrainConfig]] = {}
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
        raise FileNotFoundError(f"no checkpoint at {path}")
    return path


def file_key(path: Path) -> tuple[str, int, int]:
    """Identifies one version of a file: a rewritten checkpoint gets a new key."""
    stat = path.stat()
    return str(path.resolve()), stat.st_mtime_ns, stat.st_size


def load_model(spec: str | Path | None = None) -> tuple[nn.Module, TrainConfig]:
    """The model (eval mode, CPU) and its config, loaded once per checkpoint version."""
    key = file_key(resolve_checkpoint(spec))
    with _models_lock:
        if key not in _models:
            if len(_models) >= 8:
                _models.pop(next(iter(_models)))
            model, config = model_from_checkpoint(load_checkpoint(key[0]))
            # channels_last: the same logits, 1.5-2x faster convolutions on the CPU (oneDNN).
            _models[key] = (model.to(memory_format=torch.channels_last), config)
        return _models[key]
