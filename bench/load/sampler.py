"""CPU and memory of the server and its children, sampled in a thread, queried per time window.

Every SAMPLE_SECONDS it walks the server's process tree and sorts each process into a kind:

- "server": the `streamlit run` process itself (script runs, predictions, websockets);
- "job": the active training run's worker (its pid is in the run's status.json) and its children;
- "standby": a JobRunner worker waiting for a job (it has imported torch and read MNIST);
- "other": anything else below the server.

It keeps each process's cumulative CPU seconds and VmRSS at every sample, PSS every PSS_EVERY
samples (reading PSS costs the kernel ~20 ms of CPU per torch process, too much for 5 Hz on 2
cores), by process too with its command line, so the peak can be taken apart. A window's CPU is the growth of each process's CPU time between the samples that bound
the window, so a process that ends inside it still counts up to its last sample.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench.load import procfs
from bench.load.server import read_status

SAMPLE_SECONDS = 0.2
PSS_EVERY = 5  # samples: PSS once a second


@dataclass
class Sample:
    at: float  # time.monotonic()
    cpu: dict[int, tuple[str, float]]  # pid -> (kind, CPU seconds so far)
    rss_kib: dict[str, int]  # by kind
    pss_kib: dict[str, int] | None  # by kind, every PSS_EVERY-th sample
    generator_s: tuple[float, float]  # this process's CPU seconds so far, and the sampler thread's
    machine_s: float  # CPU seconds the whole machine has been busy so far
    pss_by_pid: dict[int, int] | None = None  # pid -> PSS KiB, in the samples that read PSS
    commands: dict[int, str] | None = None  # pid -> command line, in the samples that read PSS


class Sampler(threading.Thread):
    def __init__(self, server_pid: int, runs_dir: Path) -> None:
        super().__init__(name="load-sampler", daemon=True)
        self.server_pid, self.runs_dir = server_pid, runs_dir
        self.samples: list[Sample] = []
        self.cpu_seconds = 0.0  # this thread's own CPU time: what sampling costs
        self._stop_event = threading.Event()
        self._job_pids: set[int] = set()

    def run(self) -> None:
        count = 0
        while not self._stop_event.is_set():
            started, cpu_started = time.monotonic(), time.thread_time()
            if count % PSS_EVERY == 0:
                self._job_pids = self._active_job_pids()
            sample = self._sample(started, with_pss=count % PSS_EVERY == 0)
            count += 1
            self.cpu_seconds += time.thread_time() - cpu_started
            sample.generator_s = (time.process_time(), self.cpu_seconds)
            self.samples.append(sample)
            self._stop_event.wait(max(0.0, SAMPLE_SECONDS - (time.monotonic() - started)))

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=5)

    def _active_job_pids(self) -> set[int]:
        pids = set()
        for run_dir in self.runs_dir.iterdir() if self.runs_dir.is_dir() else []:
            status = read_status(run_dir)
            if status.get("state") == "running" and status.get("pid"):
                pids.add(int(status["pid"]))
        return pids

    def _sample(self, at: float, with_pss: bool) -> Sample:
        parents = procfs.parent_pids()
        jobs = {pid for job in self._job_pids if job in parents for pid in procfs.descendants(job, parents)}
        cpu: dict[int, tuple[str, float]] = {}
        rss: dict[str, int] = {}
        pss: dict[str, int] | None = {} if with_pss else None
        pss_by_pid: dict[int, int] | None = {} if with_pss else None
        commands: dict[int, str] | None = {} if with_pss else None
        for pid in procfs.descendants(self.server_pid, parents):
            seconds, resident = procfs.cpu_seconds(pid), procfs.resident_kib(pid)
            if seconds is None or resident is None:
                continue  # it ended meanwhile
            if pid == self.server_pid:
                kind = "server"
            elif pid in jobs:
                kind = "job"
            else:
                kind = "standby" if "mnist_core.worker" in procfs.command_line(pid) else "other"
            cpu[pid] = (kind, seconds)
            rss[kind] = rss.get(kind, 0) + resident
            if pss is not None:
                pss_by_pid[pid] = procfs.proportional_kib(pid) or 0
                commands[pid] = procfs.command_line(pid)
                pss[kind] = pss.get(kind, 0) + pss_by_pid[pid]
        return Sample(at, cpu, rss, pss, (0.0, 0.0), procfs.machine_busy_seconds(), pss_by_pid, commands)

    def window(self, since: float, until: float) -> list[Sample]:
        return [sample for sample in list(self.samples) if since <= sample.at <= until]

    def cpu_used(self, since: float, until: float) -> dict[str, float]:
        """CPU seconds by kind between two moments (attributed to each process's latest kind)."""
        samples = list(self.samples)
        before = [s for s in samples if s.at <= since]
        start = before[-1].cpu if before else {}
        last: dict[int, tuple[str, float]] = {}
        for sample in samples:
            if since < sample.at <= until:
                last.update(sample.cpu)
        used: dict[str, float] = {}
        for pid, (kind, seconds) in last.items():
            used[kind] = used.get(kind, 0.0) + seconds - start.get(pid, (kind, 0.0))[1]
        return used

    def generator_cpu(self, since: float, until: float) -> tuple[float, float, float]:
        """CPU seconds used by this process (the load generator, sampler included), by the sampler
        alone, and by the whole machine (to see what else was running)."""
        samples = self.window(since, until)
        if len(samples) < 2:
            return 0.0, 0.0, 0.0
        (process0, sampler0), (process1, sampler1) = samples[0].generator_s, samples[-1].generator_s
        return process1 - process0, sampler1 - sampler0, samples[-1].machine_s - samples[0].machine_s

    def peak_mib(self, measure: str, kind: str | None, since: float = 0.0, until: float = math.inf) -> float:
        """Peak of one kind (all kinds together when None) in MiB; measure is "rss" or "pss"."""
        peak = 0
        for sample in self.window(since, until):
            values = getattr(sample, f"{measure}_kib")
            if values is not None:
                peak = max(peak, sum(values.values()) if kind is None else values.get(kind, 0))
        return peak / 1024

    def peak_sample(self, since: float = 0.0, until: float = math.inf) -> Sample | None:
        """The PSS sample with the most PSS, all processes together, in a window (its processes are
        `cpu`, their PSS `pss_by_pid`)."""
        samples = [s for s in self.window(since, until) if s.pss_kib is not None]
        return max(samples, key=lambda s: sum(s.pss_kib.values()), default=None)

    def most_processes(self, since: float = 0.0, until: float = math.inf) -> tuple[int, int]:
        """The most processes in the server's tree at one sample, and the most standby workers."""
        samples = self.window(since, until)
        processes = max((len(s.cpu) for s in samples), default=0)
        standby = max((sum(kind == "standby" for kind, _ in s.cpu.values()) for s in samples), default=0)
        return processes, standby

    def job_alive_throughout(self, since: float, until: float) -> bool:
        samples = self.window(since, until)
        return bool(samples) and all(any(kind == "job" for kind, _ in s.cpu.values()) for s in samples)
