"""Checkpoints that describe themselves: plain tensors plus a plain config dict.

A checkpoint is `{"format", "config", "state_dict", "epoch", "metrics"}`; it loads with
`torch.load(..., weights_only=True)` and rebuilds its model from `config["model"]`. Writes
go to a temporary file that is renamed into place, so a crash never leaves half a file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnist_core.config import TrainConfig
from mnist_core.models import build_model

FORMAT = "mnist_core.checkpoint.v1"


def make_checkpoint(model: nn.Module, config: TrainConfig, epoch: int, metrics: dict[str, float]) -> dict[str, Any]:
    # Clone to contiguous CPU tensors: training may use channels_last GPU memory.
    state = {name: tensor.detach().to("cpu", copy=True).contiguous() for name, tensor in model.state_dict().items()}
    return {"format": FORMAT, "config": config.to_dict(), "state_dict": state, "epoch": epoch, "metrics": dict(metrics)}


def atomic_write_bytes(path: Path, write: Any) -> None:
    """Call `write(file)` on a temporary file beside `path`, then rename it over `path`."""
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes files private; runs are meant to be shared
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> None:
    atomic_write_bytes(Path(path), lambda file: torch.save(checkpoint, file))


class CheckpointError(ValueError):
    """The file is not a checkpoint this project can load."""


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise CheckpointError(f"{path} is not a readable checkpoint: {error}") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an mnist_core checkpoint")
    return checkpoint


def model_from_checkpoint(checkpoint: dict[str, Any]) -> tuple[nn.Module, TrainConfig]:
    """The model (in eval mode, on the CPU) and the config it was trained with."""
    try:
        config = TrainConfig.from_dict(checkpoint["config"])
        model = build_model(config.model)
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"the checkpoint does not match its model: {error}") from error
    return model.eval(), config
