"""The device a run trains on: `auto` picks CUDA, then Apple MPS, then the CPU, and says which.

The CPU tests run everywhere (CUDA hidden by a monkeypatch where a GPU is present); the `gpu`
test needs a CUDA GPU and is skipped elsewhere with the reason.
"""

from __future__ import annotations

import pytest
import torch

from mnist_core import device
from mnist_core.config import TrainConfig
from mnist_core.events import Finished, Started
from mnist_core.train import fit


def test_auto_is_the_cpu_when_there_is_no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device, "_mps_available", lambda: False)
    assert device.resolve_device("auto") == torch.device("cpu")
    assert device.device_label("auto") == "CPU"
    assert "no CUDA GPU" in device.device_problem("cuda")


@pytest.mark.gpu
def test_auto_trains_on_the_gpu_and_names_it(tiny_data_dir):
    assert device.resolve_device("auto").type == "cuda"
    events = []
    result = fit(TrainConfig(model="fast", epochs=1, batch_size=32, lr=0.003), on_event=events.append,
                 data_dir=tiny_data_dir)
    started = next(event for event in events if isinstance(event, Started))
    assert started.device == torch.cuda.get_device_name(0)
    assert isinstance(result.outcome, Finished) and result.outcome.test_accuracy > 90
