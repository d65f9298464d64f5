"""Every background job in a runs folder, of every kind, in one list: `list_jobs`.

Runs, sweep trials and label audits are the run folders (`runs.list_runs`), sweeps their own
folders (`sweep.list_sweeps`), and map builds the `<map>.building.json` files beside the
checkpoints of runs (and under runs/embeddings/ for read-only checkpoints, such as the shipped
model's). Each job's status is read through the job model, so a job whose process is gone
reads as interrupted, and each status file is parsed once per change (`job.ParsedFiles`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_core.job import AUDIT_JOB, KINDS, MAP, RUN, TRIAL, JobFolder
from mnist_core.map_job import MapBuild
from mnist_core.runs import ACTIVE_STATES, EMBEDDINGS_FOLDER, Run, default_runs_dir, list_runs
from mnist_core.sweep import list_sweeps

BUILD_STATUS_GLOB = "*.map-*.npz.building.json"


@dataclass(frozen=True)
class JobEntry:
    """One job as a listing shows it."""

    job: JobFolder
    kind: str
    status: dict[str, Any]

    @property
    def id(self) -> str:
        if self.kind == MAP:  # the map's name, with the run it belongs to, when it has one
            parent = self.job.path.parent.name
            return f"{parent}/{self.job.path.name}" if parent not in ("", EMBEDDINGS_FOLDER) else self.job.path.name
        return self.job.id

    def to_dict(self) -> dict[str, Any]:
        status = self.status
        return {"kind": self.kind, "id": self.id, "state": status.get("state", ""),
                "message": status.get("message", ""), "owner": status.get("owner", ""),
                "created_at": status.get("created_at"), "ended_at": status.get("ended_at")}


def _map_builds(runs_dir: Path, runs: Iterable[JobFolder]) -> list[JobFolder]:
    folders = [run.path for run in runs] + [runs_dir / EMBEDDINGS_FOLDER]
    builds = []
    for folder in folders:
        try:
            found = sorted(folder.glob(BUILD_STATUS_GLOB))
        except OSError:
            continue
        builds += [MapBuild(path.with_name(path.name.removesuffix(".building.json"))) for path in found]
    return builds


def list_jobs(runs_dir: str | Path | None = None, kinds: Iterable[str] = KINDS) -> list[JobEntry]:
    """Every job of the given kinds, newest first. A full or read-only folder lists too: the only
    write is recording a job whose process is gone as interrupted, and that is skipped when it fails."""
    root = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    kinds = set(kinds)
    unknown = kinds - set(KINDS)
    if unknown:
        raise ValueError(f"unknown kind of job {sorted(unknown)[0]!r}; choose from {', '.join(KINDS)}")
    runs = list_runs(root)
    jobs: list[JobFolder] = [run for run in runs if run.job_kind in kinds]
    if "sweep" in kinds:
        jobs += list_sweeps(root)
    if MAP in kinds:
        jobs += _map_builds(root, runs)
    entries = [JobEntry(job, job.job_kind, job.current_status()) for job in jobs]
    entries.sort(key=lambda entry: entry.status.get("created_at") or 0.0, reverse=True)
    return entries


RUN_FOLDER_KINDS = (RUN, TRIAL, AUDIT_JOB)  # the kinds that are run folders, with a config and maybe a checkpoint


def run_jobs(runs_dir: str | Path | None = None, kinds: Iterable[str] = RUN_FOLDER_KINDS) -> list[JobEntry]:
    """`list_jobs` of the run-folder kinds only (the pages' history, the models to open): each
    entry's `job` is a `runs.Run`."""
    kinds = tuple(kinds)
    if not set(kinds) <= set(RUN_FOLDER_KINDS):
        raise ValueError(f"run_jobs lists run folders only ({', '.join(RUN_FOLDER_KINDS)}), not {kinds}")
    return list_jobs(runs_dir, kinds)


def runs_of(entries: Iterable[JobEntry]) -> list[Run]:
    return [entry.job for entry in entries]  # type: ignore[misc] - run_jobs' entries hold Runs


def any_active(entries: Iterable[JobEntry], besides: str | None = None) -> bool:
    """Whether any of `entries` is queued or running, the job with id `besides` left out.

    The Train page's history polls often while this holds, `besides` being the run its live panel
    shows: that panel already follows its run, and redraws the whole page when the run ends."""
    return any(entry.status.get("state") in ACTIVE_STATES and entry.id != besides for entry in entries)
