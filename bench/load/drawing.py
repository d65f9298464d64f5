"""N people drawing at once: each a websocket session replaying the recorded Draw steps.

A visitor loads the Draw page, waits for the common start, then for each stroke: pauses a
little (a person drawing), sends the recorded canvas rerun and times it until the prediction
delta and until `script_finished`, looks a moment, and replays Clear (untimed). Visitor k starts
at recorded digit k, so concurrent visitors send different drawings; a digit's value differs
from the emptied canvas before it, as in a browser. The server reruns the script on every
rerun_script whatever the values, so nothing is skipped.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

from bench.load.recording import Recording
from bench.load.session import Session

PAUSE_BEFORE_STROKE_S = (0.5, 1.5)  # uniform: the time a person takes to draw the next digit
PAUSE_BEFORE_CLEAR_S = (0.2, 0.6)  # looking at the prediction


@dataclass
class Stroke:
    session: int
    drawn: str
    predicted: str | None
    prediction_ms: float | None  # send -> the prediction's delta received
    finished_ms: float | None  # send -> script_finished (the whole page redrawn)
    errors: list[str] = field(default_factory=list)


@dataclass
class Phase:
    sessions: int
    open_ms: list[float] = field(default_factory=list)  # first HTTP request -> first run finished
    strokes: list[Stroke] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    since: float = 0.0  # time.monotonic(): the common start
    until: float = 0.0  # the last stroke's Clear answered


def _ms(start: float, end: float | None) -> float | None:
    return None if end is None else (end - start) * 1000


async def _visitor(number: int, session: Session, recording: Recording, strokes: int, rng: random.Random,
                   start: asyncio.Event, phase: Phase) -> None:
    await start.wait()
    for index in range(strokes):
        step = recording.steps[(number + index) % len(recording.steps)]
        await asyncio.sleep(rng.uniform(*PAUSE_BEFORE_STROKE_S))
        timing = await session.rerun(step.stroke)
        phase.strokes.append(Stroke(number, step.digit, timing.digit, _ms(timing.sent_at, timing.prediction_at),
                                    _ms(timing.sent_at, timing.finished_at), timing.errors))
        await asyncio.sleep(rng.uniform(*PAUSE_BEFORE_CLEAR_S))
        cleared = await session.rerun(step.clear[0], step.clear[1:])
        if cleared.errors:
            phase.errors.append(f"session {number}, Clear after digit {index + 1}: {'; '.join(cleared.errors)}")


async def _open(number: int, url: str, recording: Recording, phase: Phase) -> Session | None:
    session = Session(url, "/draw")
    try:
        timing = await session.open(recording.draw_open)
    except Exception as error:  # noqa: BLE001 - a refused session is a result
        phase.errors.append(f"session {number} could not open: {error}")
        await session.close()
        return None
    if timing.errors:
        phase.errors.append(f"session {number} page load: {'; '.join(timing.errors)}")
    phase.open_ms.append(_ms(timing.sent_at, timing.finished_at) or float("nan"))
    return session


async def run_phase(url: str, recording: Recording, sessions: int, strokes: int, seed: int = 0) -> Phase:
    """Open `sessions` Draw sessions together, then let them all draw `strokes` digits each."""
    phase = Phase(sessions)
    opened = await asyncio.gather(*(_open(n, url, recording, phase) for n in range(sessions)))
    start = asyncio.Event()
    tasks = [asyncio.create_task(_visitor(n, s, recording, strokes, random.Random(seed * 1000 + n), start, phase))
             for n, s in enumerate(opened) if s is not None]
    phase.since = time.monotonic()
    start.set()
    await asyncio.gather(*tasks)
    phase.until = time.monotonic()
    await asyncio.gather(*(s.close() for s in opened if s is not None))
    for number, session in enumerate(opened):
        if session is not None:
            phase.errors.extend(f"session {number}: {error}" for error in session.errors)
    return phase
