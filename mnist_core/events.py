"""The typed events `train.fit` reports, and their JSON form for a run's events.jsonl.

Each event is a small frozen dataclass. `to_dict` adds a "type" key; `from_dict` reverses it,
so the UI reads back exactly what the engine reported.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Union


@dataclass(frozen=True)
class Started:
    device: str  # "CPU" or the GPU's name
    model: str
    parameters: int
    epochs: int
    steps_per_epoch: int
    train_images: int


COMPILE_METHOD = "torch.compile"
GRAPH_METHOD = "CUDA graph"


@dataclass(frozen=True)
class Compiled:
    seconds: float  # preparing the steps before training, not counted in its time
    method: str = COMPILE_METHOD  # or GRAPH_METHOD: the whole step recorded as a CUDA graph (train_steps)


@dataclass(frozen=True)
class Progress:
    epoch: int  # 1-based
    step: int  # 1-based, within the epoch
    steps_per_epoch: int
    loss: float  # mean training loss over the steps since the previous Progress
    images_per_second: float
    elapsed: float  # seconds since training started


@dataclass(frozen=True)
class EpochEnd:
    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float  # percent
    seconds: float  # training seconds of this epoch, without evaluation


@dataclass(frozen=True)
class Finished:
    test_accuracy: float  # percent, on the 10,000 test images
    train_seconds: float  # wall seconds inside training steps, without loading or evaluation
    images_per_second: float
    epochs: int
    compile_seconds: float = 0.0  # the Compiled event's seconds: 0 unless compiled or recorded as a CUDA graph


@dataclass(frozen=True)
class Failed:
    message: str


@dataclass(frozen=True)
class Cancelled:
    epochs_completed: int


Event = Union[Started, Compiled, Progress, EpochEnd, Finished, Failed, Cancelled]
EVENT_TYPES: dict[str, type] = {
    cls.__name__: cls for cls in (Started, Compiled, Progress, EpochEnd, Finished, Failed, Cancelled)
}


def to_dict(event: Event) -> dict[str, Any]:
    return {"type": type(event).__name__, **dataclasses.asdict(event)}


def from_dict(values: dict[str, Any]) -> Event:
    values = dict(values)
    cls = EVENT_TYPES[values.pop("type")]
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})
