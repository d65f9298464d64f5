"""Printing the load test's figures: percentiles, one block per phase, the browser reference."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from bench.load.drawing import Phase
from bench.load.recording import Recording
from bench.load.sampler import Sampler

COMMUNITY_CLOUD_BUDGET_MIB = 2.7e9 / 2**20  # Streamlit Community Cloud: about 2.7 GB per app


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
