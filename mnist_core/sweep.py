"""Hyperparameter sweeps: what to try (`SweepSpec`) and where a sweep lives on disk (`Sweep`).

A sweep is a base config (a preset or any TrainConfig) plus a search space over some of its
fields: a grid of values, and ranges to sample from (uniform, or log-uniform for the learning
rate). Like Ray Tune's `num_samples`, `trials` repeats the grid with fresh samples: the sweep
makes `product(grid sizes) x trials` runs. The configs are expanded here, up front and
deterministically (`spec.seed`), so the page can say how many runs a sweep makes before it
starts, and a sweep can be repeated exactly.

Every trial is an ordinary run folder (config, status, events, checkpoint), whose status.json
carries `sweep` (the sweep's id) and `trial` (its number), so the run history, Mistakes and
Draw work on trials unchanged. The sweep itself has a small folder of its own:

    runs/sweeps/<sweep id>/spec.json     the SweepSpec
                           status.json   state, message, pid, owner, times, the trials' run ids
                           STOP          present when someone asked the sweep to stop
                           driver.log    the Ray driver's output, when the app started it

This module never imports Ray: running a sweep is `mnist_core.distributed.sweep_driver`, which does.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import json
import math
import random
import secrets
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mnist_core.config import ConfigError, TrainConfig
from mnist_core.job import ACTIVE_STATES, SWEEP, JobFolder, new_status, write_json
from mnist_core.runs import SWEEPS_FOLDER, Run, RunSummary, default_runs_dir, summarize
from mnist_core.storage import StorageError, explain_write_error

# The fields a sweep may vary, and how a value typed on the command line or the page is read.
SWEEPABLE: dict[str, type] = {
    "lr": float,
    "batch_size": int,
    "optimizer": str,
    "epochs": int,
    "model": str,
    "label_smoothing": float,
    "weight_decay": float,
    "seed": int,
}
WAITING_FOR_A_SLOT = "Waiting for a free training slot: another job is training on this machine."
MAX_TRIALS = 256  # a typo such as --trials 1000 should be an error, not a day of training
RAY_INSTALL = 'pip install "ray[tune,client]"'  # client: for ray:// addresses (Ray Client)


@dataclass(frozen=True)
class Range:
    """Sample uniformly from [low, high]; on a log scale when `log` (e.g. the learning rate)."""

    low: float
    high: float
    log: bool = False

    def draw(self, rng: random.Random, kind: type) -> Any:
        if self.log:
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            value = rng.uniform(self.low, self.high)
        return round(value) if kind is int else float(f"{value:.4g}")  # readable settings in the history


@dataclass(frozen=True)
class SweepSpec:
    base: TrainConfig = field(default_factory=TrainConfig)
    grid: dict[str, tuple] = field(default_factory=dict)
    sample: dict[str, Range] = field(default_factory=dict)
    trials: int = 1  # samples per grid point
    max_concurrent: int = 1
    asha: bool = False  # stop poor trials early (Ray Tune's ASHA on validation accuracy per epoch)
    seed: int = 0  # for the samples
    preset: str = ""  # the preset `base` came from, for display

    @property
    def varied(self) -> list[str]:
        return list(self.grid) + [name for name in self.sample if name not in self.grid]

    def count(self) -> int:
        """How many runs this sweep makes."""
        return math.prod(len(values) for values in self.grid.values()) * self.trials

    def configs(self) -> list[TrainConfig]:
        """Every trial's config, in trial order; raises ConfigError if any is not allowed."""
        self.check_shape()
        rng = random.Random(self.seed)
        names = list(self.grid)
        configs = []
        for _ in range(self.trials):
            for values in itertools.product(*(self.grid[name] for name in names)):
                changes = dict(zip(names, values))
                for name, span in self.sample.items():
                    changes[name] = span.draw(rng, SWEEPABLE[name])
                configs.append(self.base.replace(**changes))
        return configs

    def check_shape(self) -> None:
        """Everything but the values' own validity: known fields, sane ranges and counts."""
        for name in [*self.grid, *self.sample]:
            if name not in SWEEPABLE:
                raise ConfigError(name, f"cannot be varied in a sweep; choose from {', '.join(SWEEPABLE)}")
        both = set(self.grid) & set(self.sample)
        if both:
            raise ConfigError(sorted(both)[0], "is both in the grid and sampled; give it one or the other")
        for name, values in self.grid.items():
            if not values:
                raise ConfigError(name, "give at least one value")
        for name, span in self.sample.items():
            if SWEEPABLE[name] is str:
                raise ConfigError(name, "is a choice, not a number: list its values in the grid instead")
            if not span.low <= span.high:
                raise ConfigError(name, f"the range {span.low}:{span.high} is empty; write low:high")
            if span.log and span.low <= 0:
                raise ConfigError(name, "a log-scale range must be above 0")
        if not isinstance(self.trials, int) or self.trials < 1:
            raise ConfigError("trials", f"must be a whole number of at least 1, got {self.trials!r}")
        if not isinstance(self.max_concurrent, int) or self.max_concurrent < 1:
            raise ConfigError("max_concurrent", f"must be a whole number of at least 1, got {self.max_concurrent!r}")
        if self.count() > MAX_TRIALS:
            raise ConfigError("trials", f"this sweep makes {self.count()} runs; at most {MAX_TRIALS} are allowed")

    def validate(self) -> SweepSpec:
        for config in self.configs():
            config.validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base.to_dict(),
            "grid": {name: list(values) for name, values in self.grid.items()},
            "sample": {name: dataclasses.asdict(span) for name, span in self.sample.items()},
            "trials": self.trials,
            "max_concurrent": self.max_concurrent,
            "asha": self.asha,
            "seed": self.seed,
            "preset": self.preset,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SweepSpec:
        return cls(
            base=TrainConfig.from_dict(values.get("base", {})),
            grid={name: tuple(items) for name, items in values.get("grid", {}).items()},
            sample={name: Range(**span) for name, span in values.get("sample", {}).items()},
            trials=values.get("trials", 1),
            max_concurrent=values.get("max_concurrent", 1),
            asha=values.get("asha", False),
            seed=values.get("seed", 0),
            preset=values.get("preset", ""),
        )

    @classmethod
    def from_preset(cls, preset: str = "fast", **fields: Any) -> SweepSpec:
        return cls(base=TrainConfig.preset(preset), preset=preset, **fields)


def ray_problem() -> str | None:
    """Why sweeps cannot run here (Ray Tune is not installed), or None; imports nothing."""
    missing = [name for name in ("ray", "pandas", "pyarrow") if importlib.util.find_spec(name) is None]
    if missing:
        return (f"Sweeps run on Ray Tune, which is not installed here (missing: {', '.join(missing)}). "
                f"Install it with: {RAY_INSTALL}")
    return None


def parse_value(name: str, text: str) -> Any:
    """One value of a sweepable field, from text (`lr`, "0.01" -> 0.01)."""
    if name not in SWEEPABLE:
        raise ConfigError(name, f"cannot be varied in a sweep; choose from {', '.join(SWEEPABLE)}")
    kind = SWEEPABLE[name]
    text = text.strip()
    try:
        return kind(float(text)) if kind is int and text.replace(".", "", 1).isdigit() else kind(text)
    except ValueError:
        raise ConfigError(name, f"{text!r} is not a {'whole number' if kind is int else 'number'}") from None


def parse_grid(text: str) -> tuple[str, tuple]:
    """`field=v1,v2,...` (the CLI's --grid) -> (field, values)."""
    name, _, values = text.partition("=")
    name = name.strip().replace("-", "_")
    if not values.strip():
        raise ConfigError(name or "grid", f"write field=v1,v2,... (got {text!r})")
    return name, tuple(parse_value(name, value) for value in values.split(",") if value.strip())


def parse_sample(text: str) -> tuple[str, Range]:
    """`field=low:high[:log]` (the CLI's --sample) -> (field, Range)."""
    name, _, span = text.partition("=")
    name = name.strip().replace("-", "_")
    parts = span.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
        raise ConfigError(name or "sample", f"write field=low:high or field=low:high:log (got {text!r})")
    low, high = (float(parse_value(name, part)) for part in parts[:2])
    return name, Range(low, high, log=len(parts) == 3)


def describe(config: TrainConfig, names: list[str]) -> str:
    """The varied settings of one trial, e.g. "lr=0.003, batch_size=128"."""
    return ", ".join(f"{name}={getattr(config, name):g}" if isinstance(getattr(config, name), float)
                     else f"{name}={getattr(config, name)}" for name in names)


@dataclass(frozen=True)
class Sweep(JobFolder):
    """A sweep's folder: a job (`mnist_core.job.JobFolder`) whose status also lists its trials' run ids."""

    path: Path
    KEPT = "Finished trials are kept."
    job_kind = SWEEP

    @property
    def runs_dir(self) -> Path:
        return self.path.parent.parent

    @property
    def spec(self) -> SweepSpec:
        return SweepSpec.from_dict(json.loads((self.path / "spec.json").read_text()))

    def children(self) -> list[Run]:
        """A sweep's trials end with it."""
        return self.trial_runs()

    def trial_runs(self) -> list[Run]:
        """The trials' run folders that exist, in trial order."""
        root = self.runs_dir
        return [Run(root / run_id) for run_id in self.status().get("trials", []) if (root / run_id).is_dir()]

    def summaries(self) -> list[RunSummary]:
        return [summarize(run) for run in self.trial_runs()]

    @property
    def active(self) -> bool:
        return self.current_status().get("state") in ACTIVE_STATES


def sweeps_dir(runs_dir: str | Path | None = None) -> Path:
    return (Path(runs_dir) if runs_dir is not None else default_runs_dir()) / SWEEPS_FOLDER


def create_sweep(spec: SweepSpec, runs_dir: str | Path | None = None, owner: str = "") -> Sweep:
    """A new sweep folder holding `spec`, state queued. Raises ConfigError for a bad spec and
    StorageError when the folder cannot be written (nothing is left behind then)."""
    spec.validate()
    root = sweeps_dir(runs_dir)
    sweep_id = f"{datetime.now():%Y%m%d-%H%M%S-%f}-sweep-{secrets.token_hex(2)}"
    staging = root / f".{sweep_id}.creating"
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
        write_json(staging / "spec.json", spec.to_dict())
        write_json(staging / "status.json", new_status(owner, trials=[]))
        staging.rename(root / sweep_id)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, StorageError):
            raise
        raise StorageError(explain_write_error(error, staging / "spec.json")) from error
    return Sweep(root / sweep_id)


def list_sweeps(runs_dir: str | Path | None = None) -> list[Sweep]:
    """All sweeps, newest first (only reads)."""
    try:
        found = [Sweep(path) for path in sweeps_dir(runs_dir).iterdir()
                 if path.is_dir() and not path.name.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(found, key=lambda sweep: sweep.id, reverse=True)


def best_trial(summaries: list[RunSummary]) -> RunSummary | None:
    """The finished trial with the highest test accuracy (ties: the earlier trial)."""
    finished = [summary for summary in summaries if summary.state == "finished" and summary.test_accuracy is not None]
    return max(finished, key=lambda summary: summary.test_accuracy, default=None)
