"""Training configuration: one frozen dataclass with the case study's defaults, plus presets.

`TrainConfig()` with no arguments is exactly the case study: the `seed` ConvNet, Adam,
learning rate 0.01, batch 64, 5 epochs. `validate()` checks every field and raises a
`ConfigError` that names the field and what is allowed, so a bad value is explained before
any work starts (the Train page shows the message next to the field).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass
from typing import Any

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("none", "onecycle", "cosine")
DEVICES = ("auto", "cpu", "cuda", "mps")
# The names of mnist_core.models.MODELS, which checks at import that they agree: checking a
# config (listing runs, reading a link) then needs no torch. See known_models().
MODEL_NAMES = ("seed", "fast", "modern", "deep")
DATASETS = ("mnist", "fashion-mnist")
MAX_EPOCHS = 100
MAX_BATCH_SIZE = 8192
TRAIN_IMAGES = 60_000  # in MNIST's and Fashion-MNIST's training splits


class ConfigError(ValueError):
    """A configuration value is not allowed; `field` names which one."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def known_models() -> tuple[str, ...]:
    """The names a config's `model` may take: mnist_core.models.MODELS once that is loaded (a
    benchmark may add a model of its own to it), else MODEL_NAMES, which needs no torch."""
    models = sys.modules.get("mnist_core.models")
    return tuple(models.MODELS) if models is not None and hasattr(models, "MODELS") else MODEL_NAMES


@dataclass(frozen=True)
class TrainConfig:
    model: str = "seed"  # one of MODEL_NAMES (mnist_core.models.MODELS)
    epochs: int = 5
    batch_size: int = 64
    lr: float = 0.01
    optimizer: str = "adam"  # adam | adamw | sgd (SGD always uses Nesterov momentum 0.9)
    schedule: str = "none"  # none | onecycle | cosine; per step, so one epoch still warms up and anneals
    # onecycle also swings Adam's beta1 (SGD's momentum) from 0.95 to 0.85 and back, against
    # the learning rate, in place of adam_betas[0] (PyTorch's default); False keeps it fixed.
    cycle_momentum: bool = True
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)  # Adam/AdamW; a lower beta1 reacts faster in short runs
    augment: bool = False  # random small shifts, rotations and scalings, done on the device
    label_smoothing: float = 0.0
    seed: int = 0  # same seed, same device type -> same result
    device: str = "auto"  # auto = CUDA, then Apple MPS, then CPU
    dataset: str = "mnist"
    train_subset: int = 0  # 0 = all 60,000 training images; N = the first N (quick demos, tests)
    # Training images left out, by index into the training split, sorted (e.g. those marked as
    # label errors in a label audit); recorded here so the run can be repeated exactly.
    exclude: tuple[int, ...] = ()
    compile_model: bool = False  # torch.compile before training; compile time is reported on its own

    def validate(self) -> TrainConfig:
        """Return self if every field is allowed, else raise ConfigError for the first bad one."""
        if self.model not in known_models():
            _fail("model", f"unknown model {self.model!r}; choose one of {', '.join(known_models())}")
        _check_int("epochs", self.epochs, 1, MAX_EPOCHS)
        _check_int("batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        _check_number("lr", self.lr)
        if not 0 < self.lr <= 10:
            _fail("lr", f"learning rate must be greater than 0 and at most 10, got {self.lr}")
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_number("weight_decay", self.weight_decay)
        if not 0 <= self.weight_decay < 1:
            _fail("weight_decay", f"must be at least 0 and below 1, got {self.weight_decay}")
        if (not isinstance(self.adam_betas, tuple) or len(self.adam_betas) != 2
                or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in self.adam_betas)):
            _fail("adam_betas", f"must be two numbers from 0 to below 1, got {self.adam_betas!r}")
        _check_number("label_smoothing", self.label_smoothing)
        if not 0 <= self.label_smoothing < 1:
            _fail("label_smoothing", f"must be at least 0 and below 1, got {self.label_smoothing}")
        _check_bool("augment", self.augment)
        _check_bool("cycle_momentum", self.cycle_momentum)
        _check_bool("compile_model", self.compile_model)
        _check_int("seed", self.seed, 0, 2**32 - 1)
        _check_choice("dataset", self.dataset, DATASETS)
        _check_int("train_subset", self.train_subset, 0, 60_000)
        _check_indices("exclude", self.exclude, TRAIN_IMAGES)
        _check_choice("device", self.device, DEVICES)
        if self.device in ("cuda", "mps"):  # auto and cpu always work: no need to import torch for them
            from mnist_core.device import device_problem

            problem = device_problem(self.device)
            if problem:
                _fail("device", problem)
        return self

    def validate_saved(self) -> TrainConfig:
        """`validate()` for settings read back from disk (a run folder, a checkpoint): the same
        checks, except that the device need not exist here, since a run trained on a GPU
        machine must still open on a laptop. Returns self, device unchanged."""
        self.replace(device="auto").validate()
        _check_choice("device", self.device, DEVICES)
        return self

    def problems(self) -> dict[str, str]:
        """Every invalid field with its message (validate() stops at the first one)."""
        found: dict[str, str] = {}
        config = self
        for _ in dataclasses.fields(self):
            try:
                config.validate()
                break
            except ConfigError as error:
                found[error.field] = error.message
                if error.field not in {f.name for f in dataclasses.fields(self)}:
                    break
                config = dataclasses.replace(config, **{error.field: getattr(TrainConfig(), error.field)})
        return found

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a plain dict, e.g. a run's config.json; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            _fail(unknown[0], f"unknown setting; allowed settings are {', '.join(sorted(known))}")
        for name in ("adam_betas", "exclude"):  # JSON has no tuples
            if isinstance(values.get(name), list):
                values = {**values, name: tuple(values[name])}
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def preset(cls, name: str) -> TrainConfig:
        """The config of a named preset (see PRESETS), e.g. `TrainConfig.preset("fast")`;
        override fields with `.replace(...)`. `TrainConfig(model="fast", epochs=1)` is not the
        Fast preset: it keeps the case study's optimizer settings."""
        if not isinstance(name, str) or name not in PRESETS:
            _fail("preset", f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        return PRESETS[name].config


def _fail(field: str, message: str) -> None:
    raise ConfigError(field, message)


def _check_int(field: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(field, f"must be a whole number from {low} to {high}, got {value!r}")
    if not low <= value <= high:
        _fail(field, f"must be from {low} to {high}, got {value}")


def _check_indices(field: str, value: Any, count: int) -> None:
    indices = value if isinstance(value, tuple) else None
    if (indices is None or any(isinstance(i, bool) or not isinstance(i, int) for i in indices)
            or list(indices) != sorted(set(indices)) or (indices and not (indices[0] >= 0 and indices[-1] < count))):
        _fail(field, f"must be image indices from 0 to {count - 1}, sorted, each once")


def _check_bool(field: str, value: Any) -> None:
    if not isinstance(value, bool):
        _fail(field, f"must be true or false, got {value!r}")


def _check_number(field: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        _fail(field, f"must be a number, got {value!r}")


def _check_choice(field: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        _fail(field, f"{value!r} is not allowed; choose one of {', '.join(allowed)}")


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    config: TrainConfig


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset("case-study", "Exactly the case study: seed ConvNet, Adam lr 0.01, batch 64, 5 epochs", TrainConfig()),
        Preset(
            "fast",
            "99 % after one epoch: 2-3 s of training on 2 otherwise idle CPU cores",
            # A one-cycle schedule suits a single epoch. Adam's beta1 held at 0.8 (rather than
            # swung 0.95 -> 0.85 -> 0.95 with the schedule) and strong label smoothing each
            # added about 0.05-0.1 points over 5-15 seeds, at no cost in time.
            TrainConfig(model="fast", epochs=1, batch_size=256, lr=0.015, schedule="onecycle",
                        cycle_momentum=False, adam_betas=(0.8, 0.9), label_smoothing=0.2),
        ),
        Preset(
            "best",
            "Highest accuracy (99.7 %): the deep model, augmentation, AdamW, one-cycle schedule, 50 epochs "
            "(20 s on an H200 GPU, about 45 min on 2 CPU cores)",
            # On an H200, seeds 0-2: 99.72 % mean, 19.6 s each (bench/gpu.py); the modern model
            # reached 99.62 % in 30 epochs (bench/best_search.py). Adam's beta1 stays put (cycle_momentum=False) so that a
            # GPU can replay the step as a CUDA graph (mnist_core.train_steps).
            TrainConfig(
                model="deep",
                epochs=50,
                batch_size=128,
                lr=0.006,
                optimizer="adamw",
                schedule="onecycle",
                cycle_momentum=False,
                weight_decay=0.0001,
                augment=True,
                label_smoothing=0.05,
            ),
        ),
    )
}


def preset_label(name: str) -> str:
    """A preset's name as the pages show it: "case-study" -> "Case study"."""
    return name.capitalize().replace("-", " ")


def matching_preset(config: TrainConfig) -> str | None:
    """The preset `config` was made from, or None: every setting equal, except the ones a preset
    leaves to the person (the images left out, the dataset, the device, the seed)."""
    unset = {"exclude": (), "dataset": "mnist", "device": "auto", "seed": 0}
    plain = config.replace(**unset).to_dict()
    return next((name for name, preset in PRESETS.items() if preset.config.replace(**unset).to_dict() == plain), None)


def lowest_loss(label_smoothing: float, classes: int = 10) -> float:
    """The lowest training loss (cross-entropy, nats) a model can reach with this label smoothing:
    that of predicting exactly the smoothed target, 1 - e + e/K on the label and e/K on each other
    class. 0 without smoothing; about 0.87 at the fast preset's 0.2. A loss that levels off there
    has learned all it can, not stalled."""
    if label_smoothing <= 0:
        return 0.0
    other = label_smoothing / classes
    right = 1 - label_smoothing + other
    return float(-(right * math.log(right) + (classes - 1) * other * math.log(other)))
