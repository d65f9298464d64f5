"""Checkpoints that describe themselves: plain tensors plus a plain config dict.

A checkpoint is `{"format", "config", "state_dict", "epoch", "metrics"}`; it loads with
`torch.load(..., weights_only=True)`, its config is validated, and it rebuilds its model from
`config["model"]`. A file that cannot be loaded is a `CheckpointError` whose message names
the file (never by its absolute path) and says why in plain words. Writes go to a temporary
file that is renamed into place, so a crash never leaves half a file.
"""

from __future__ import annotations

import errno
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnist_core.config import ConfigError, TrainConfig
from mnist_core.models import build_model
from mnist_core.storage import atomic_write_bytes, display_path

FORMAT = "mnist_core.checkpoint.v1"


def make_checkpoint(model: nn.Module, config: TrainConfig, epoch: int, metrics: dict[str, float]) -> dict[str, Any]:
    # Clone to contiguous CPU tensors: training may use channels_last GPU memory.
    state = {name: tensor.detach().to("cpu", copy=True).contiguous() for name, tensor in model.state_dict().items()}
    return {"format": FORMAT, "config": config.to_dict(), "state_dict": state, "epoch": epoch, "metrics": dict(metrics)}


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> None:
    """Write atomically; a full disk raises StorageError saying how much room the checkpoint needs."""
    tensors = checkpoint.get("state_dict", {}).values()
    needed = sum(tensor.numel() * tensor.element_size() for tensor in tensors) + (16 << 10)  # + zip headers
    atomic_write_bytes(Path(path), lambda file: torch.save(checkpoint, file), needed_bytes=needed)


class CheckpointError(ValueError):
    """The file is not a checkpoint this project can load; the message says which file and why."""


# Why a file cannot be loaded, in our own words. PyTorch's own messages are never shown: they
# advise re-running with weights_only=False (unpickling an untrusted file runs its code), carry
# ANSI colour codes, and name the server's absolute paths.
EMPTY = "the file is empty (0 bytes)"
NOT_PYTORCH = "it is not a PyTorch file (perhaps cut short while copying)"
UNSAFE_OBJECTS = "it holds Python objects other than plain tensors, which this app does not load for safety"
NOT_OURS = "it is a PyTorch file but not one saved by this app"
DAMAGED = "it is damaged or in a form this app does not know"
# A plain pickle file (protocol 4 or 5) makes torch warn on stderr, before it fails, that the weights_only
# unpickler "might not support" it and to "file an issue": noise beside our own message.
warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
MAX_MESSAGE = 500  # characters: a message quotes settings from the file, and a crafted file must not flood the page


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict in `path`, loaded with weights_only=True (plain tensors and containers).

    Raises FileNotFoundError when there is no such file, and CheckpointError, with a message
    fit for the user, when the file is not an mnist_core checkpoint.
    """
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"no checkpoint at {display_path(path)}") from error
    except Exception as error:  # noqa: BLE001 - every failure becomes one of our reasons
        raise _unloadable(path, _load_failure(path, error)) from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise _unloadable(path, NOT_OURS)
    return checkpoint


def model_from_checkpoint(checkpoint: dict[str, Any], path: str | Path | None = None) -> tuple[nn.Module, TrainConfig]:
    """The model (in eval mode, on the CPU) and the config it was trained with.

    The embedded config is validated first, so a bad one (say dataset "xyz") is a
    CheckpointError here rather than a KeyError in whatever uses the config later. `path`
    only names the file in the message.
    """
    values = checkpoint.get("config")
    if not isinstance(values, dict):
        raise _unloadable(path, "it has no settings (config)")
    try:
        # `device` is where the model was trained, not where it will run (always the CPU here):
        # a checkpoint trained on a GPU must still load on a CPU-only machine.
        config = TrainConfig.from_dict(values).validate_saved()
    except ConfigError as error:
        raise _unloadable(path, f"the checkpoint's settings are invalid: {error}") from error
    except (TypeError, ValueError) as error:  # e.g. a list where a name belongs: unhashable, not comparable
        raise _unloadable(path, "the checkpoint's settings are invalid (a setting has the wrong type)") from error
    if "state_dict" not in checkpoint:
        raise _unloadable(path, "it holds no weights")
    model = build_model(config.model)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as error:
        raise _unloadable(path, f"its weights do not match the {config.model!r} model") from error
    return model.eval(), config


def _unloadable(path: str | Path | None, reason: str) -> CheckpointError:
    where = display_path(path) if path is not None else "this"
    return CheckpointError(_plain(f"{where} is not a checkpoint this app can load: {reason}"))


def _load_failure(path: Path, error: Exception) -> str:
    """Our reason for a torch.load failure. The exception types and texts are those of torch
    2.14 (tests/test_checkpoint.py writes each kind of file); anything else gets DAMAGED."""
    if isinstance(error, IsADirectoryError):
        return "it is a folder, not a file"
    if isinstance(error, PermissionError):
        return "this app is not allowed to read it (permission denied)"
    if isinstance(error, OSError) and error.errno == errno.EIO:
        return "it could not be read from the disk"
    try:
        size = path.stat().st_size
    except OSError:
        return DAMAGED
    if size == 0:  # torch raises a bare EOFError
        return EMPTY
    # weights_only refuses any class or function it does not allow (a custom class, numpy
    # arrays, os.system): an UnpicklingError whose message or cause names the GLOBAL refused.
    if isinstance(error, pickle.UnpicklingError) and any("GLOBAL" in str(e) for e in _chain(error)):
        return UNSAFE_OBJECTS
    # torch.save writes a zip archive. Cut short, it loses the zip's central directory at its
    # end; other files are not zips at all. Depending on where the cut falls or what the first
    # bytes are, torch then raises RuntimeError, OSError (EINVAL), EOFError, UnpicklingError,
    # KeyError or IndexError, so ask the zip format itself.
    if not zipfile.is_zipfile(path):
        return NOT_PYTORCH
    return DAMAGED


def _chain(error: BaseException) -> list[BaseException]:
    """The error and its causes, innermost last."""
    found: list[BaseException] = []
    while error is not None and error not in found:
        found.append(error)
        error = error.__cause__ or error.__context__
    return found


_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]")


def _plain(text: str) -> str:
    """One line without terminal escape codes or control characters (a file name or a setting
    from the file may hold them), at most MAX_MESSAGE characters long."""
    text = _ANSI.sub("", text)
    text = "".join(character if character.isprintable() else " " for character in text)
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"
