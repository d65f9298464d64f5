"""Choosing the device to train on: `auto` means CUDA, then Apple MPS, then the CPU."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def device_problem(name: str) -> str | None:
    """Why `name` cannot be used on this machine, or None when it can."""
    if name == "cuda" and not torch.cuda.is_available():
        return "CUDA was asked for but no CUDA GPU is available here; use 'auto' or 'cpu'"
    if name == "mps" and not _mps_available():
        return "Apple MPS was asked for but is not available here; use 'auto' or 'cpu'"
    return None


def resolve_device(name: str = "auto") -> torch.device:
    """The torch.device for a config's `device` value."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    problem = device_problem(name)
    if problem:
        raise ValueError(problem)
    return torch.device(name)


def device_label(device: torch.device | str = "auto") -> str:
    """What people call the device: the GPU's name, "Apple GPU (MPS)" or "CPU"."""
    device = resolve_device(device) if isinstance(device, str) else device
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return "CPU"


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread for a moment: for small computations, which gain nothing from a
    second thread and lose much when one is waited for. While training keeps both cores busy, that
    wait turns a 1 ms forward pass into 60 ms; while the browser redraws the Train page after Start,
    it made a run's 50 ms data-dependent preparation take up to 0.47 s. The setting belongs to the
    calling thread (OpenMP), so other sessions keep theirs."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
