"""The mean training loss over windows of steps, read from the device without waiting for it.

At each progress report the training loop asks for the mean loss of the steps since the last
one (`ask`). On a GPU the window's sum is copied to pinned host memory behind the steps already
queued, and `ready` hands the value back once the GPU has got there: a report never makes the
host wait for the GPU, so the queue of steps never runs dry. On the CPU a value is ready at once.
`ready(wait=True)`, at the end of an epoch, waits for every window still on its way.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class _Window:
    info: Any  # what the caller reports with the mean (its progress figures)
    steps: int
    total: torch.Tensor  # on the host once `done` has happened
    done: torch.cuda.Event | None  # None when `total` is ready already


class LossWindows:
    def __init__(self, device: torch.device) -> None:
        self.on_cuda = device.type == "cuda"
        self.waiting: deque[_Window] = deque()

    def ask(self, losses: torch.Tensor, first: int, last: int, info: Any) -> None:
        """Start reading the mean of `losses[first:last]` (each one step's loss); `info` comes back with it."""
        total = losses[first:last].sum()
        done = None
        if self.on_cuda:
            host = torch.empty((), dtype=total.dtype, pin_memory=True)
            host.copy_(total, non_blocking=True)
            done = torch.cuda.Event()
            done.record()
            total = host
        self.waiting.append(_Window(info, last - first, total, done))

    def ready(self, wait: bool = False) -> list[tuple[float, Any]]:
        """(mean loss, info) of each window the device has finished, oldest first; all of them with `wait`."""
        out = []
        while self.waiting and (wait or self.waiting[0].done is None or self.waiting[0].done.query()):
            window = self.waiting.popleft()
            if window.done is not None:
                window.done.synchronize()
            out.append((window.total.item() / window.steps, window.info))
        return out
