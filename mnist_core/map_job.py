"""The embedding map's build as a job folder (`mnist_core.job`), without torch: listing jobs
(`python -m mnist_core runs|jobs`, the app's history) reads map builds through it without
importing what builds a map (mnist_core.embedding)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mnist_core.job import MAP, JobFolder


@dataclass(frozen=True)
class MapBuild(JobFolder):
    """A map's build, as a job (`mnist_core.job`): its status, stop request and log sit beside the map.

        <map>.building.json   the job's status (queued, running, finished, failed, ...), progress 0..1
        <map>.build.log       the build's output
        <map>.stop            present when someone asked the build to stop
    """

    path: Path  # the map's .npz
    job_kind = MAP

    @property
    def status_path(self) -> Path:
        return self.path.with_name(self.path.name + ".building.json")

    @property
    def stop_path(self) -> Path:
        return self.path.with_name(self.path.name + ".stop")

    @property
    def log_path(self) -> Path:
        return self.path.with_name(self.path.name + ".build.log")
