"""Progress reports' figures for windows of training steps, read from the device without waiting for it.

At each progress report the training loop asks for the window of steps since the last one
(`ask`): its mean loss, its images per second and the training time up to its end. On a GPU
those steps are often still queued when the loop asks (the host runs ahead of the GPU), so the
window's loss sum is copied to pinned host memory behind them and a CUDA event marks where the
window ends; `ready` hands the figures back once the GPU has got there, timed by the GPU's own
events. So a report never makes the host wait, and its speed is how fast the GPU trained, not
how fast the host queued. On the CPU the figures are ready at once, timed by the host's clock.
`ready(wait=True)`, at the end of an epoch, waits for every window still on its way.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Window:
    mean_loss: float
    images_per_second: float
    elapsed: float  # training seconds since the run began, to the end of the window
    info: Any  # what the caller asked with (which epoch and step the window ends at)


@dataclass
class _Waiting:
    info: Any
    steps: int
    images: int
    total: torch.Tensor  # the window's loss sum: on the host, final once `end` has happened
    start: torch.cuda.Event | float  # where the window began: a GPU event, or perf_counter()
    end: torch.cuda.Event | float


class ProgressWindows:
    def __init__(self, device: torch.device) -> None:
        self.on_cuda = device.type == "cuda"
        self.waiting: deque[_Waiting] = deque()
        self.before = 0.0

    def begin_epoch(self, seconds_before: float) -> None:
        """Start timing an epoch, whose earlier epochs trained for `seconds_before` in all."""
        self.before = seconds_before
        self.epoch_start = self.mark = self._now()

    def ask(self, losses: torch.Tensor, first: int, last: int, images: int, info: Any) -> None:
        """Start reading the window of steps `first` to `last` (exclusive): `losses` holds each
        step's loss, `images` counts the window's images, and `info` comes back with its figures."""
        total = losses[first:last].sum()
        if self.on_cuda:
            host = torch.empty((), dtype=total.dtype, pin_memory=True)
            host.copy_(total, non_blocking=True)
            total = host
        end = self._now()
        self.waiting.append(_Waiting(info, last - first, images, total, self.mark, end))
        self.mark = end

    def ready(self, wait: bool = False) -> list[Window]:
        """The figures of each window the device has finished, oldest first; of all of them with `wait`."""
        out = []
        while self.waiting and (wait or not self.on_cuda or self.waiting[0].end.query()):
            window = self.waiting.popleft()
            if self.on_cuda:
                window.end.synchronize()
            seconds = max(self._seconds(window.start, window.end), 1e-9)
            out.append(Window(window.total.item() / window.steps, window.images / seconds,
                              self.before + self._seconds(self.epoch_start, window.end), window.info))
        return out

    def _now(self) -> torch.cuda.Event | float:
        if not self.on_cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def _seconds(self, start: torch.cuda.Event | float, end: torch.cuda.Event | float) -> float:
        return start.elapsed_time(end) / 1000 if self.on_cuda else end - start
