"""The training job that runs during the load, and a Train tab watching it, both without a browser.

The watcher is one websocket session on the Train page (bench.load.session). Like an open Train
tab it keeps polling the live view: it reads the job's look from `GET api/live/<run id>` every
ui.live_feed.FEED_SECONDS, as the page's element does, and sends the reruns the server asks for
with its fragments' `run_every` timers (`auto_rerun`: the run history's). Whenever no job is active it replays the
recorded Start click, so the whole test runs while one job trains (hosted mode allows one job
per session; the recording's job belongs to the browser's session). The job's speed comes from
its step count in events.jsonl, noted once a second.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.load.recording import Recording
from bench.load.server import read_status
from bench.load.session import Session
from ui.live_feed import FEED_PATH, FEED_SECONDS

ACTIVE = ("queued", "running")
POINT_SECONDS = 1.0


@dataclass
class JobPoint:
    """Where the newest job stood at one moment."""
    at: float  # time.monotonic()
    run: str | None
    state: str | None
    epoch: int = 0
    step: int = 0
    steps_per_epoch: int = 0
    epochs: int = 0
    batch_size: int = 0
    device: str = ""

    @property
    def global_step(self) -> int:
        return (self.epoch - 1) * self.steps_per_epoch + self.step if self.epoch else 0

    def describe(self) -> str:
        if not self.run:
            return "no job"
        if not self.epoch:
            return f"job {self.run}: {self.state}, no training step yet"
        done = self.global_step / (self.epochs * self.steps_per_epoch) if self.epochs else 0.0
        return (f"job {self.run}: {self.state}, epoch {self.epoch} step {self.step} of {self.steps_per_epoch} "
                f"({done:.0%} of {self.epochs} epochs)")


def _read(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read()


def newest_run(runs_dir: Path) -> Path | None:
    """The newest training run (run ids start with their creation time); audits and sweeps aside."""
    runs = [p for p in runs_dir.iterdir() if (p / "config.json").exists() and read_status(p).get("kind") != "audit"
            ] if runs_dir.is_dir() else []
    return max(runs, key=lambda p: p.name, default=None)


def job_point(runs_dir: Path) -> JobPoint:
    run_dir = newest_run(runs_dir)
    if run_dir is None:
        return JobPoint(time.monotonic(), None, None)
    status = read_status(run_dir)
    point = JobPoint(time.monotonic(), run_dir.name, status.get("state"), device=status.get("device") or "")
    try:
        config = json.loads((run_dir / "config.json").read_text())
        point.epochs, point.batch_size = int(config.get("epochs", 0)), int(config.get("batch_size", 0))
        with open(run_dir / "events.jsonl", "rb") as file:
            file.seek(max(0, file.seek(0, 2) - 8192))  # the last Progress is near the end
            lines = file.read().decode(errors="replace").splitlines()
    except (OSError, ValueError):
        return point
    for line in reversed(lines):
        try:
            event = json.loads(line)
        except ValueError:
            continue  # the first line read may be cut in half
        if event.get("type") == "Progress":
            point.epoch, point.step, point.steps_per_epoch = event["epoch"], event["step"], event["steps_per_epoch"]
            break
    return point


class Watcher:
    """A Train tab, as a websocket session, that keeps one job training (replaying the recorded Start).

    Its keeper task notes where the job stands every POINT_SECONDS and, when the job has ended
    (a 5-epoch case-study job takes about a minute on an idle 2-core machine), starts the next,
    so every stroke of every phase is drawn while a job trains."""

    def __init__(self, url: str, recording: Recording, runs_dir: Path) -> None:
        self.session = Session(url, "/")
        self.session.remember(recording.train_start)  # the Train tab's widget values, for its polls
        self.recording = recording
        self.runs_dir = runs_dir
        self.jobs_started = 0
        self.points: list[JobPoint] = []
        self.errors: list[str] = []
        self._lock = asyncio.Lock()
        self._keeper: asyncio.Task | None = None
        self._reader: asyncio.Task | None = None
        self.looks_read = 0

    async def open(self) -> None:
        timing = await self.session.open(self.recording.train_open)
        if timing.errors:
            raise RuntimeError(f"the Train watcher could not load the page: {timing.errors}")

    async def ensure_job(self, timeout_s: float = 120) -> JobPoint:
        """Until a job is in its training loop, pressing Start (replayed) whenever none is active.

        Start may need pressing again: for a moment after a job ends the runner still counts it
        as running and the page refuses a new one."""
        async with self._lock:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                run_dir = newest_run(self.runs_dir)
                status = read_status(run_dir) if run_dir else {}
                if status.get("state") == "running" and status.get("phase") == "training":
                    return job_point(self.runs_dir)
                if status.get("state") in ACTIVE:
                    await asyncio.sleep(0.2)
                    continue
                timing = await self.session.rerun(self.recording.train_start)
                if timing.errors:
                    raise RuntimeError(f"replaying Start failed: {timing.errors}")
                if newest_run(self.runs_dir) != run_dir:
                    self.jobs_started += 1
                else:
                    await asyncio.sleep(1)
            raise RuntimeError(f"no job reached its training loop within {timeout_s:.0f} s")

    @property
    def polls(self) -> int:
        """What the watcher has asked the server for to follow the job: looks read and fragment reruns."""
        return self.looks_read + self.session.auto_reruns_sent

    def keep_training(self) -> None:
        self._keeper = asyncio.create_task(self._keep())
        self._reader = asyncio.create_task(self._read_looks())

    async def _read_looks(self) -> None:
        """What an open Train tab's live element does while a job runs: read its look, twice a second."""
        while True:
            run_dir = newest_run(self.runs_dir)
            if run_dir is not None and read_status(run_dir).get("state") in ACTIVE:
                url = f"{self.session.base_url}/{FEED_PATH}/{run_dir.name}"
                try:
                    await asyncio.to_thread(_read, url)
                    self.looks_read += 1
                except OSError as error:
                    self.errors.append(f"GET {url}: {error}")
            await asyncio.sleep(FEED_SECONDS)

    async def _keep(self) -> None:
        while True:
            point = job_point(self.runs_dir)
            self.points.append(point)
            if point.state not in ACTIVE:
                try:
                    await self.ensure_job()
                except RuntimeError as error:
                    self.errors.append(str(error))
            await asyncio.sleep(POINT_SECONDS)

    def images_per_second(self, since: float, until: float) -> float | None:
        """Training speed between two moments, summed over the jobs that trained then."""
        points = [p for p in self.points if since <= p.at <= until]
        if len(points) < 2:
            return None
        images = sum((b.global_step - a.global_step) * b.batch_size
                     for a, b in zip(points, points[1:]) if a.run == b.run and b.global_step >= a.global_step)
        return images / (points[-1].at - points[0].at)

    async def close(self) -> None:
        for task in (self._keeper, self._reader):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.session.close()
