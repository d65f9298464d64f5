"""Printing the load test's figures: percentiles, one block per phase, the browser reference, the
hostile client's and the memory it left the server at (with the processes holding it)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from bench.load.drawing import Phase
from bench.load.hostile import PAGES, Hostile, HostileRun
from bench.load.recording import Recording
from bench.load.sampler import Sampler

COMMUNITY_CLOUD_BUDGET_MIB = 2.7e9 / 2**20  # Streamlit Community Cloud: about 2.7 GB per app
HOSTED_BUDGET_MIB = 2.5e9 / 2**20  # what the hosted demo must hold under a hostile client: 2.5 GB (2,384 MiB)


@dataclass
class JobFigures:
    """The training job during one phase."""
    images_per_second: float | None
    baseline: float | None  # images/s with nobody drawing
    now: str  # where the newest job stands at the phase's end
    started: int  # jobs the watcher started during the phase
    watcher_polls: int


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def spread(values: list[float]) -> str:
    """'p50 X  p95 Y  max Z' in ms, or a dash when there is nothing to summarise."""
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "-"
    return f"p50 {percentile(values, 0.5):,.0f}  p95 {percentile(values, 0.95):,.0f}  max {max(values):,.0f}"


def browser_reference(recording: Recording) -> list[str]:
    """The real browser's strokes (recorded with the Train tab open and the job training)."""
    strokes = recording.browser
    right = sum(s.predicted == s.digit for s in strokes)
    return [
        f"real browser, 1 Chromium tab, {len(strokes)} strokes ({right} read right), job training:",
        f"  mouseup -> prediction shown (ms)       {spread([s.stroke_ms for s in strokes])}"
        "   (includes the canvas's ~200 ms debounce)",
        f"  canvas value sent -> prediction frame  {spread([s.arrive_ms for s in strokes])}"
        "   (what the replay times)",
        f"  canvas value sent -> prediction shown  {spread([s.send_ms for s in strokes])}",
        "replayed sessions send the canvas value when the browser's component would (after its debounce): "
        "a visitor sees their stroke -> prediction delta plus ~200 ms plus the browser's rendering",
    ]


def phase_block(phase: Phase, sampler: Sampler, job: JobFigures, generator: tuple[float, float, float]) -> list[str]:
    """The phase's figures; `generator` is sampler.generator_cpu() over the phase."""
    since, until = phase.since, phase.until
    seconds = max(until - since, 1e-9)
    answered = [s for s in phase.strokes if s.prediction_ms is not None]
    wrong = [f"{s.drawn}->{s.predicted}" for s in answered if s.predicted != s.drawn]
    cpu = sampler.cpu_used(since, until)
    process_s, sampler_s, machine_s = generator
    others_s = machine_s - sum(cpu.values()) - process_s  # processes outside the test: should be ~0

    def share(kind_seconds: float) -> str:  # percent of one core, as `top` shows it
        percent = 100 * kind_seconds / seconds
        return f"{percent:.1f} %" if percent < 10 else f"{percent:.0f} %"

    def peak(kind: str | None) -> str:
        return f"{sampler.peak_mib('pss', kind, since, until):,.0f} / {sampler.peak_mib('rss', kind, since, until):,.0f}"

    speed = f"{job.images_per_second:,.0f} images/s" if job.images_per_second is not None else "speed unknown"
    if job.images_per_second is not None and job.baseline:
        speed += f" ({job.images_per_second / job.baseline:.0%} of the {job.baseline:,.0f} with nobody drawing)"
    if job.started:
        speed += f"; {job.started} new job{'s' if job.started > 1 else ''} started when the last ended"
    throughout = "trained throughout" if sampler.job_alive_throughout(since, until) else "NOT training throughout"
    total_pss = sampler.peak_mib("pss", None, since, until)
    lines = [
        f"{phase.sessions} concurrent Draw session{'s' if phase.sessions != 1 else ''} + the Train watcher: "
        f"{len(phase.strokes)} strokes in {seconds:.1f} s, {len(answered)} answered"
        + (f", wrong digit {', '.join(wrong)}" if wrong else ""),
        f"  stroke -> prediction delta (ms)   {spread([s.prediction_ms for s in phase.strokes])}",
        f"  stroke -> script_finished (ms)    {spread([s.finished_ms for s in phase.strokes])}",
        f"  page load -> first run done (ms)  {spread(phase.open_ms)}   (all sessions at once, before the strokes)",
        f"  CPU, % of one core ({os.cpu_count()} cores)  server {share(cpu.get('server', 0))}, job {share(cpu.get('job', 0))}"
        + "".join(f", {k} {share(v)}" for k, v in sorted(cpu.items()) if k not in ("server", "job") and v > 0.05)
        + f"; load generator {share(process_s - sampler_s)} + its sampler {share(sampler_s)}"
        + f"; anything else on the machine {share(max(others_s, 0.0))}",
        f"  peak memory (MiB, PSS / VmRSS)    server {peak('server')}, job {peak('job')}; all server processes "
        f"{total_pss:,.0f} PSS ({total_pss / COMMUNITY_CLOUD_BUDGET_MIB:.0%} of 2.7 GB)",
        f"  training job                      {throughout}; {speed}; now {job.now}; Train watcher polls: {job.watcher_polls}",
    ]
    lines += [f"  error: {error}" for error in phase.errors[:10]]
    lines += [f"  stroke error: session {s.session} digit {s.drawn}: {'; '.join(s.errors)}"
              for s in phase.strokes if s.errors][:10]
    return lines


def _page_spread(runs: list[HostileRun]) -> str:
    parts = []
    for title, _ in PAGES:
        times = [run.run_ms for run in runs if run.page == title and run.run_ms is not None]
        if times:
            parts.append(f"{title} p50 {percentile(times, 0.5):,.0f} p95 {percentile(times, 0.95):,.0f}")
    return ", ".join(parts) or "-"


def hostile_phase(runs: list[HostileRun], seconds: float) -> list[str]:
    """The hostile client during one phase: clear_cache messages sent, and how long each page's run took."""
    failed = [run for run in runs if run.errors]
    lines = [f"  hostile client                    {len(runs)} clear_cache + page reruns "
             f"({len(runs) / max(seconds, 1e-9):.1f} a second), {len(failed)} failed; "
             f"run after clear_cache (ms) {_page_spread(runs)}"]
    return lines + [f"  hostile error: {run.page}: {'; '.join(run.errors)}" for run in failed[:5]]


def _command(command: str) -> str:
    """A process's command line, short: the interpreter's path and the server's options left out."""
    words = command.split()
    if words and words[0].rsplit("/", 1)[-1].startswith("python"):
        words[0] = "python"
    short = " ".join(words)
    return short if len(short) <= 110 else short[:107] + "..."


def hostile_summary(hostile: Hostile, sampler: Sampler, since: float, until: float, sessions: list[int]) -> list[str]:
    """What the hostile client sent and the memory it left the server at: the peak PSS of the server
    and every process it started, the processes then (each with its PSS), against the budget."""
    seconds = until - since
    failed = [run for run in hostile.runs if run.errors]
    lines = [
        f"hostile client, {seconds:.0f} s beside {' then '.join(map(str, sessions))} Draw session"
        f"{'s' if sessions != [1] else ''} and the training job: {hostile.clear_caches_sent:,} clear_cache messages "
        f"sent, {len(hostile.runs) - len(failed):,} page runs answered after them, {len(failed)} failed"
        + (f" (first: {failed[0].page}: {'; '.join(failed[0].errors)})" if failed else ""),
        f"  run after clear_cache (ms)        {_page_spread(hostile.runs)}",
    ]
    peak = sampler.peak_sample(since, until)
    if peak is None:
        return lines + ["  no memory sample while the hostile client ran"]
    total_mib = sum(peak.pss_kib.values()) / 1024
    processes, standby = sampler.most_processes(since, until)
    held = total_mib <= HOSTED_BUDGET_MIB
    lines += [
        f"  peak memory, the server and every process it started (PSS, summed over its process tree): "
        f"{total_mib:,.0f} MiB = {total_mib * 2**20 / 1e9:.2f} GB, at +{peak.at - since:.0f} s, "
        f"{len(peak.cpu)} processes then",
        f"  most processes at once while it ran: {processes}; most standby workers at once: {standby}",
        f"  budget 2.5 GB ({HOSTED_BUDGET_MIB:,.0f} MiB PSS): {'HELD' if held else 'EXCEEDED'} "
        f"({total_mib / HOSTED_BUDGET_MIB:.0%} of it)",
        "  the processes at the peak (PSS MiB, kind, command):",
    ]
    for pid, kib in sorted(peak.pss_by_pid.items(), key=lambda item: -item[1]):
        kind = peak.cpu.get(pid, ("?", 0.0))[0]
        lines.append(f"    pid {pid:>7}  {kib / 1024:7,.0f}  {kind:<8} {_command(peak.commands.get(pid, ''))}")
    return lines
