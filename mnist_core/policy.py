"""Who may start what: the limits a job runner enforces on every submitted job.

A private install has no limits beyond TrainConfig's own. A hosted demo, shared by link,
caps the epochs of a run, allows each visitor one queued or running job (a sweep counts as
one), keeps the queue short, and caps sweeps (4 trials, one at a time) or turns them off. The job runner consults its policy in `submit`, so the limits hold for every caller,
not only for the form that shows them; the form asks the same policy to explain a value
before anyone presses Start.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mnist_core.config import TrainConfig
from mnist_core.sweep import SweepSpec

HOSTED_MAX_EPOCHS = 5
HOSTED_MAX_QUEUED = 8
HOSTED_JOBS_PER_OWNER = 1
HOSTED_SWEEP_TRIALS = 4  # a shared demo's sweep: a few short trials...
HOSTED_SWEEP_CONCURRENT = 1  # ...one at a time, so other visitors' jobs still get a core


class QuotaExceeded(Exception):
    """A job may not start under the runner's policy; the message says why, for the visitor."""


@dataclass(frozen=True)
class JobPolicy:
    max_epochs: int | None = None  # None: no cap beyond TrainConfig's own
    max_queued: int | None = None  # jobs waiting for a slot, across all owners
    jobs_per_owner: int | None = None  # queued or running jobs one owner (a browser session) may have
    sweeps: bool = True  # whether sweeps may start at all
    max_sweep_trials: int | None = None
    max_sweep_concurrent: int | None = None

    @classmethod
    def hosted(cls, max_epochs: int = HOSTED_MAX_EPOCHS, sweeps: bool = False,
               max_sweep_trials: int = HOSTED_SWEEP_TRIALS) -> JobPolicy:
        return cls(max_epochs=max_epochs, max_queued=HOSTED_MAX_QUEUED, jobs_per_owner=HOSTED_JOBS_PER_OWNER,
                   sweeps=sweeps, max_sweep_trials=max_sweep_trials, max_sweep_concurrent=HOSTED_SWEEP_CONCURRENT)

    @property
    def limited(self) -> bool:
        return self != JobPolicy()

    def epochs_problem(self, config: TrainConfig) -> str | None:
        if self.max_epochs is not None and config.epochs > self.max_epochs:
            return f"this shared demo allows at most {self.max_epochs} epochs; run it locally for more"
        return None

    def start_problem(self, owner: str, active_owners: Iterable[str], queued: int) -> str | None:
        """Why `owner` may not start another job now, given the owners of the active jobs, or None."""
        if self.jobs_per_owner is not None and list(active_owners).count(owner) >= self.jobs_per_owner:
            return "This shared demo runs one job per visitor at a time: stop yours, or wait for it to finish."
        if self.max_queued is not None and queued >= self.max_queued:
            return f"The demo is busy: {queued} jobs are waiting already. Please try again in a few minutes."
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

    def check_sweep(self, spec: SweepSpec, owner: str, active_owners: Iterable[str], queued: int) -> None:
        """Raise QuotaExceeded when this sweep may not start (a sweep counts as one of its owner's jobs)."""
        problem = self.sweep_problem(spec) or self.start_problem(owner, active_owners, queued)
        if problem:
            raise QuotaExceeded(problem)

    def check(self, config: TrainConfig, owner: str, active_owners: Iterable[str], queued: int) -> None:
        """Raise QuotaExceeded when this job may not be submitted."""
        problem = self.epochs_problem(config)
        if problem:
            raise QuotaExceeded(f"epochs: {problem}")
        problem = self.start_problem(owner, active_owners, queued)
        if problem:
            raise QuotaExceeded(problem)
