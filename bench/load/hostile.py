"""A hostile client: a websocket session that clears the server's caches again and again.

On a hosted demo any visitor can send Streamlit's `clear_cache` BackMsg (the frontend's "Clear
caches" menu item sends it; nothing on the server checks who asks). It empties `st.cache_data`
and `st.cache_resource` for every session of the server and this session's state
(streamlit/runtime/app_session.py, `_handle_clear_cache_request`). Whatever the app keeps in
those caches is then built again on the next run that needs it: the JobRunner, when it lived in
`st.cache_resource`, came back with a second standby worker beside the first on every message.

This session, for as long as it runs: sends `clear_cache`, then a rerun of the next page of
Train, Mistakes, Draw, Inside (a first page load of that page: `page_name` is its URL path, no
widgets), waits until that run has finished, and goes on at once. It counts the messages and
times each run; a run that fails (an exception on the page, no answer) is kept as an error.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from streamlit.proto.BackMsg_pb2 import BackMsg

from bench.load.session import Session

PAGES = (("Train", ""), ("Mistakes", "mistakes"), ("Draw", "draw"), ("Inside", "inside"))  # Train is the default: ""


def page_rerun(url_path: str) -> bytes:
    """A rerun_script as a browser sends it on opening a page's URL: the page's path, no widgets."""
    message = BackMsg()
    message.rerun_script.SetInParent()
    message.rerun_script.page_name = url_path
    return message.SerializeToString()


def clear_cache() -> BackMsg:
    message = BackMsg()
    message.clear_cache = True
    return message


@dataclass
class HostileRun:
    """One clear_cache and the page run after it."""
    page: str
    at: float  # time.monotonic() when clear_cache was sent
    run_ms: float | None  # the rerun sent -> its script_finished (None: no answer)
    errors: list[str] = field(default_factory=list)


class Hostile:
    """`clear_cache` then a page's rerun, in a loop, as fast as the server answers."""

    def __init__(self, url: str) -> None:
        self.session = Session(url, "/")
        self.clear_caches_sent = 0
        self.runs: list[HostileRun] = []
        self._task: asyncio.Task | None = None

    async def open(self) -> None:
        timing = await self.session.open(page_rerun(PAGES[0][1]))
        if timing.errors:
            raise RuntimeError(f"the hostile client could not load the page: {timing.errors}")

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        turn = 0
        while True:
            title, url_path = PAGES[turn % len(PAGES)]
            turn += 1
            at = time.monotonic()
            try:
                await self.session.send_other(clear_cache())
                self.clear_caches_sent += 1
                timing = await self.session.rerun(page_rerun(url_path))
            except Exception as error:  # noqa: BLE001 - the connection dropped: a result, not a crash
                self.runs.append(HostileRun(title, at, None, [f"websocket: {error}"]))
                return
            run_ms = None if timing.finished_at is None else (timing.finished_at - timing.sent_at) * 1000
            self.runs.append(HostileRun(title, at, run_ms, list(timing.errors)))
            if "the websocket closed" in timing.errors:  # nothing more can be sent
                return

    def in_window(self, since: float, until: float) -> list[HostileRun]:
        return [run for run in self.runs if since <= run.at <= until]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.session.close()
