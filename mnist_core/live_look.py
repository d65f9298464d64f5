"""One look at a run as its live view shows it: its state, how far it is, and its progress line in words.

The Train page draws the first look itself, and the browser then asks the server's small web
route for the next ones (ui/live_feed.py); both come from `look`, so the words are written once.
`events` counts the run's events: when it has grown since the charts were drawn, there are new
points to draw.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from mnist_core.events import Compiled, Started
from mnist_core.runs import ACTIVE_STATES, DAMAGED, Run, duration, summarize


@dataclass(frozen=True)
class Look:
    state: str  # queued, running, finished, stopped, failed, interrupted or damaged
    active: bool  # queued or running: more looks will follow
    progress: float  # how much of the training is done, 0..1
    line: str  # the progress line: "Epoch 2/5 · step 300/938 · 8,412 images/s · about 41 s left · cpu"
    events: int  # how many events the run has recorded so far (0 once it is over: not read then)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def look(run: Run, queue_position: int | None = None) -> Look:
    """The run as it is now; `queue_position` is its place in the job queue (1 = next), if it waits in one."""
    state = run.current_status().get("state")
    if state not in ACTIVE_STATES:  # over (or damaged): nothing more to follow, and no events to read
        return Look(state=state or DAMAGED, active=False, progress=1.0, line="", events=0)
    events = run.events()
    summary = summarize(run, events)
    state, config = summary.state, summary.config
    active = state in ACTIVE_STATES
    line = ""
    if state == "queued":
        line = (f"Queued, waiting for a free slot: number {queue_position} in the queue" if queue_position
                else "Queued, starting…")
    elif state == "running" and summary.last_progress is None:
        compiling = (config.compile_model and any(isinstance(e, Started) for e in events)
                     and not any(isinstance(e, Compiled) for e in events))
        line = ("Compiling the model with torch.compile (a minute or more on a CPU)…" if compiling
                else "Loading data and building the model…")
    elif state == "running":
        last = summary.last_progress
        started = next((e for e in events if isinstance(e, Started)), None)
        left = summary.seconds_left
        line = (f"Epoch {last.epoch}/{config.epochs} · step {last.step}/{last.steps_per_epoch} · "
                f"{last.images_per_second:,.0f} images/s"
                + (f" · about {duration(left)} left" if left is not None else " · estimating the time left…")
                + (f" · {started.device}" if started else ""))
    return Look(state=state, active=active, progress=summary.progress if active else 1.0, line=line,
                events=len(events))
