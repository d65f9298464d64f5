"""Who may start what: the limits a job runner enforces on every submitted job, of every kind.

A private install has no limits beyond TrainConfig's own. A hosted demo, shared by link:
- caps the epochs of a run;
- allows each visitor one queued or running job, of any kind (a sweep counts as one);
- caps the whole server's queued and running jobs of every kind (training, sweeps, audits, map
  builds), however many visitor ids there are, so nobody grows the server by clearing cookies;
- runs the heavy kinds (a sweep, an audit, a map build) one at a time, server-wide; besides, each
  of them waits for a training slot (`slots`) like a run;
- caps sweeps (4 trials, one at a time) or turns them off.
The job runner consults its policy whenever anything is submitted, so the limits hold for every
caller, not only for the form that shows them; the form asks the same policy to explain a value
before anyone presses Start.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mnist_core.config import TrainConfig
from mnist_core.job import AUDIT_JOB, MAP, RUN, SWEEP
from mnist_core.sweep import SweepSpec

HEAVY_KINDS = (SWEEP, AUDIT_JOB, MAP)  # many models or a whole split at once: one at a time when hosted
KIND_NAMES = {RUN: "training run", SWEEP: "sweep", AUDIT_JOB: "label audit", MAP: "map build"}
HOSTED_MAX_EPOCHS = 5
HOSTED_MAX_ACTIVE = 8  # queued or running jobs of every kind, server-wide
HOSTED_HEAVY_AT_ONCE = 1
HOSTED_JOBS_PER_OWNER = 1
HOSTED_SWEEP_TRIALS = 4  # a shared demo's sweep: a few short trials...
HOSTED_SWEEP_CONCURRENT = 1  # ...one at a time, so other visitors' jobs still get a core


class QuotaExceeded(Exception):
    """A job may not start under the runner's policy; the message says why, for the visitor."""


@dataclass(frozen=True)
class JobPolicy:
    max_epochs: int | None = None  # None: no cap beyond TrainConfig's own
    max_active: int | None = None  # queued or running jobs of every kind, across all owners
    jobs_per_owner: int | None = None  # queued or running jobs one owner (a visitor) may have
    heavy_at_once: int | None = None  # queued or running sweeps, audits and map builds, across all owners
    sweeps: bool = True  # whether sweeps may start at all
    max_sweep_trials: int | None = None
    max_sweep_concurrent: int | None = None

    @classmethod
    def hosted(cls, max_epochs: int = HOSTED_MAX_EPOCHS, sweeps: bool = False,
               max_sweep_trials: int = HOSTED_SWEEP_TRIALS) -> JobPolicy:
        return cls(max_epochs=max_epochs, max_active=HOSTED_MAX_ACTIVE, jobs_per_owner=HOSTED_JOBS_PER_OWNER,
                   heavy_at_once=HOSTED_HEAVY_AT_ONCE, sweeps=sweeps, max_sweep_trials=max_sweep_trials, max_sweep_concurrent=HOSTED_SWEEP_CONCURRENT)

    @property
    def limited(self) -> bool:
        return self != JobPolicy()

    def epochs_problem(self, config: TrainConfig) -> str | None:
        if self.max_epochs is not None and config.epochs > self.max_epochs:
            return f"this shared demo allows at most {self.max_epochs} epochs; run it locally for more"
        return None

    def start_problem(self, owner: str, active: Iterable[tuple[str, str]], kind: str = RUN) -> str | None:
        """Why `owner` may not start a job of `kind` now, or None. `active`: the (kind, owner) of every
        queued or running job on the server (a sweep's trials are counted as their sweep)."""
        active = list(active)
        if self.jobs_per_owner is not None and sum(who == owner for _, who in active) >= self.jobs_per_owner:
            return "This shared demo runs one job per visitor at a time: stop yours, or wait for it to finish."
        if self.max_active is not None and len(active) >= self.max_active:
            return (f"The demo is busy: {len(active)} jobs are queued or running already. "
                    f"Please try again in a few minutes.")
        heavy = [each for each, _ in active if each in HEAVY_KINDS]
        if kind in HEAVY_KINDS and self.heavy_at_once is not None and len(heavy) >= self.heavy_at_once:
            return (f"A {KIND_NAMES.get(heavy[0], heavy[0])} is already running on this shared demo, and sweeps, "
                    f"label audits and map builds run one at a time here. Please try again when it has finished.")
        return None

    def sweep_problem(self, spec: SweepSpec) -> str | None:
        """Why this sweep is not allowed at all (before anyone's jobs are counted), or None."""
        if not self.sweeps:
            return "Sweeps are turned off on this shared demo; run the app locally to use them."
        if self.max_sweep_trials is not None and spec.count() > self.max_sweep_trials:
            return (f"This shared demo allows sweeps of at most {self.max_sweep_trials} trials; "
                    f"this one makes {spec.count()}.")
        if self.max_sweep_concurrent is not None and spec.max_concurrent > self.max_sweep_concurrent:
            return f"This shared demo runs at most {self.max_sweep_concurrent} trial(s) of a sweep at a time."
        longest = max(config.epochs for config in spec.configs())
        problem = self.epochs_problem(spec.base.replace(epochs=longest))
        return f"Trials: {problem}." if problem else None

    def check_sweep(self, spec: SweepSpec, owner: str, active: Iterable[tuple[str, str]]) -> None:
        """Raise QuotaExceeded when this sweep may not start (a sweep counts as one of its owner's jobs)."""
        problem = self.sweep_problem(spec) or self.start_problem(owner, active, SWEEP)
        if problem:
            raise QuotaExceeded(problem)

    def check(self, config: TrainConfig | None, owner: str, active: Iterable[tuple[str, str]], kind: str = RUN) -> None:
        """Raise QuotaExceeded when this job (a training run's or an audit's `config`; None for a map
        build, which trains nothing) may not be submitted."""
        problem = self.epochs_problem(config) if config is not None else None
        if problem:
            raise QuotaExceeded(f"epochs: {problem}")
        problem = self.start_problem(owner, active, kind)
        if problem:
            raise QuotaExceeded(problem)
