"""One browser-like Streamlit session over the websocket protocol, without a browser.

It does what Streamlit 1.67's frontend does (read from its static/js bundle and from
web/server/starlette/starlette_websocket.py):

- GETs the page's HTML, `/_stcore/health` and `/_stcore/host-config` (a returning visitor: the
  static JavaScript is cached), and each `/media/...` picture an image element names;
- opens `/_stcore/stream` with subprotocol "streamlit" and a same-origin Origin; the first
  BackMsg is a `rerun_script` with the page name and no widgets, each later one a `rerun_script`
  ClientState with the values of all widgets (both replayed from a recording);
- on an `auto_rerun` ForwardMsg (a fragment's `run_every`) sends a `rerun_script` for that
  fragment, `is_auto_rerun` and the current widget values, every `interval` seconds, until a
  `stop_auto_rerun` or a full-app run clears the timer.

A run is `new_session` (`metadata.run.fragment_ids` empty for a full-app run), deltas, then
`script_finished`; it answers this session's last rerun if its `new_session` came after the send
and it runs what that rerun asked for: the whole app, or the fragment it names (Draw's canvas
and prediction are a fragment), not another fragment's timer.
The Draw page's prediction is the markdown delta holding `<div class='predicted-digit'...>N</div>`.
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ClientState_pb2 import ClientState
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from websockets.asyncio.client import connect
from websockets.typing import Origin, Subprotocol

DIGIT = re.compile(r"predicted-digit[^>]*>\s*(\d)\s*<")
EARLY = ForwardMsg.ScriptFinishedStatus.FINISHED_EARLY_FOR_RERUN


@dataclass
class RunTiming:
    """The answer to one rerun_script: seconds on this process's perf_counter clock."""
    sent_at: float
    prediction_at: float | None = None
    digit: str | None = None
    finished_at: float | None = None
    errors: list[str] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Session:
    def __init__(self, base_url: str, path: str) -> None:
        self.base_url, self.path = base_url, path
        self.template: ClientState | None = None  # the widget values an auto rerun sends
        self.auto_reruns_sent = 0
        self.errors: list[str] = []
        self._ws = None
        self._reader: asyncio.Task | None = None
        self._timers: dict[str, tuple[float, asyncio.Task]] = {}  # fragment id -> (interval, timer)
        self._waiter: RunTiming | None = None
        self._sent = 0  # rerun_script messages sent so far
        self._run_answers = 0  # the value of _sent when the current run's new_session arrived
        self._asked_fragment = ""  # the fragment the last rerun sent names ("" for the whole app)
        self._run_is_asked = False  # the current run runs what the last rerun sent asked for
        self._canvas_seen = asyncio.Event()  # the canvas element arrived in the current run
        self._fetches: set[asyncio.Future] = set()  # media downloads under way

    async def open(self, first: bytes, timeout_s: float = 120) -> RunTiming:
        """Load the page as a browser does; returns the first full run's timing."""
        started = time.perf_counter()
        for path in (self.path, "/_stcore/health", "/_stcore/host-config"):
            await asyncio.to_thread(self._get, path)
        ws_url = self.base_url.replace("http", "ws", 1) + "/_stcore/stream"
        # No client pings (a browser sends none); max_size=None: a ForwardMsg may be large.
        self._ws = await connect(ws_url, subprotocols=[Subprotocol("streamlit")], origin=Origin(self.base_url),
                                 max_size=None, ping_interval=None, open_timeout=timeout_s)
        self._reader = asyncio.create_task(self._read())
        timing = await self.rerun(first, timeout_s=timeout_s)
        timing.sent_at = started  # the page load counts from the first HTTP request
        return timing

    async def rerun(self, payload: bytes, follow_ups: tuple[bytes, ...] = (), timeout_s: float = 120) -> RunTiming:
        """Send a recorded rerun_script; wait for the whole run (of the app or of the fragment it
        names) that answers the last message sent.

        `follow_ups` are sent as soon as the canvas element of the run before arrives: that is
        when the canvas component, handed a new (empty) initial drawing by Clear, sends its value."""
        timing = self._waiter = RunTiming(time.perf_counter())
        self._canvas_seen.clear()
        await self._send(payload)
        try:
            for follow_up in follow_ups:
                await self._wait_any(self._canvas_seen, timing.done, timeout_s)
                timing.done.clear()  # the run that matters now is the follow-up's
                await self._send(follow_up)
            await asyncio.wait_for(timing.done.wait(), timeout_s)
        except (asyncio.TimeoutError, TimeoutError):  # the same class from Python 3.11 on
            timing.errors.append(f"no script_finished within {timeout_s:.0f} s")
        return timing

    async def send_other(self, message: BackMsg) -> None:
        """Send a BackMsg that starts no script run (`clear_cache`, `stop_script`): what `rerun` waits
        for is left as it is, so the next `rerun` is timed as usual."""
        if message.WhichOneof("type") == "rerun_script":
            raise ValueError("send a rerun_script with rerun(), which waits for its run")
        await self._ws.send(message.SerializeToString())

    def _get(self, path: str, media: bool = False) -> None:
        try:
            urllib.request.urlopen(self.base_url + path, timeout=60).read()
        except urllib.error.HTTPError as error:
            # A picture replaced by the next run before it was fetched is gone (404), in a browser too.
            if not (media and error.code == 404):
                self.errors.append(f"GET {path}: {error}")
        except OSError as error:
            self.errors.append(f"GET {path}: {error}")

    async def close(self) -> None:
        for _, timer in self._timers.values():
            timer.cancel()
        await asyncio.gather(*self._fetches, return_exceptions=True)
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    def remember(self, payload: bytes | BackMsg) -> None:
        """Hold a rerun's widget values, as the frontend's widget manager does: an auto rerun sends them.

        One-shot triggers (button clicks) are left out; a message without widgets (the first
        page load) changes nothing, so a template set beforehand survives it."""
        if isinstance(payload, BackMsg):
            message = payload
        else:
            message = BackMsg()
            message.ParseFromString(payload)
        state = message.rerun_script
        if message.WhichOneof("type") != "rerun_script" or state.is_auto_rerun or not state.widget_states.widgets:
            return
        kept = [w for w in state.widget_states.widgets if w.WhichOneof("value") != "trigger_value"]
        del state.widget_states.widgets[:]
        state.widget_states.widgets.extend(kept)
        self.template = state

    async def _send(self, payload: bytes) -> None:
        message = BackMsg()
        message.ParseFromString(payload)
        self._asked_fragment = message.rerun_script.fragment_id if message.WhichOneof("type") == "rerun_script" else ""
        self.remember(message)
        self._sent += 1
        await self._ws.send(payload)

    @staticmethod
    async def _wait_any(first: asyncio.Event, second: asyncio.Event, timeout_s: float) -> None:
        waits = [asyncio.ensure_future(first.wait()), asyncio.ensure_future(second.wait())]
        done, pending = await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        for wait in pending:
            wait.cancel()
        if not done:
            raise asyncio.TimeoutError

    async def _read(self) -> None:
        try:
            async for frame in self._ws:
                self._handle(frame, time.perf_counter())
        except Exception as error:  # noqa: BLE001 - a dropped connection is a result, not a crash
            self.errors.append(f"websocket: {error}")
        if self._waiter is not None and not self._waiter.done.is_set():
            self._waiter.errors.append("the websocket closed")
            self._waiter.done.set()

    def _handle(self, frame: bytes, now: float) -> None:
        message = ForwardMsg()
        message.ParseFromString(frame)
        kind = message.WhichOneof("type")
        waiter = self._waiter
        answers = waiter is not None and self._run_answers == self._sent and self._run_is_asked
        if kind == "new_session":
            self._run_answers = self._sent
            fragments = list(message.metadata.run.fragment_ids)
            # A full-app run answers anything (Streamlit folds a waiting fragment rerun into it).
            self._run_is_asked = not fragments or self._asked_fragment in fragments
            if not fragments:  # a full-app run clears the timers, as the frontend does
                for _, timer in self._timers.values():
                    timer.cancel()
                self._timers.clear()
        elif kind == "delta" and message.delta.WhichOneof("type") == "new_element":
            element = message.delta.new_element
            shown = element.WhichOneof("type")
            if shown == "markdown" and answers and waiter.prediction_at is None and "predicted-digit" in element.markdown.body:
                waiter.prediction_at = now
                waiter.digit = match.group(1) if (match := DIGIT.search(element.markdown.body)) else "?"
            elif shown == "bidi_component":
                self._canvas_seen.set()
            elif shown == "imgs":  # a browser fetches each picture as it renders it (untimed)
                for image in element.imgs.imgs:
                    if image.url.startswith("/"):
                        self._fetches.add(asyncio.ensure_future(asyncio.to_thread(self._get, image.url, True)))
                        self._fetches = {f for f in self._fetches if not f.done()}
            elif shown == "exception" and waiter is not None:
                waiter.errors.append(f"exception on the page: {element.exception.message[:200]}")
        elif kind == "script_finished":
            if answers and message.script_finished != EARLY:
                waiter.finished_at = now
                waiter.done.set()
        elif kind == "auto_rerun":
            self._start_timer(message.auto_rerun.fragment_id, message.auto_rerun.interval)
        elif kind == "stop_auto_rerun":
            for fragment_id in message.stop_auto_rerun.fragment_ids:
                if fragment_id in self._timers:
                    self._timers.pop(fragment_id)[1].cancel()
        elif kind == "page_not_found":
            self.errors.append(f"page not found: {message.page_not_found.page_name}")

    def _start_timer(self, fragment_id: str, interval: float) -> None:
        if not fragment_id or (fragment_id in self._timers and self._timers[fragment_id][0] == interval):
            return  # the frontend keeps a timer that already runs at this interval
        if fragment_id in self._timers:
            self._timers.pop(fragment_id)[1].cancel()
        self._timers[fragment_id] = (interval, asyncio.create_task(self._auto_rerun(fragment_id, interval)))

    async def _auto_rerun(self, fragment_id: str, interval: float) -> None:
        while True:  # setInterval: every `interval` seconds, whether or not a run is going on
            await asyncio.sleep(interval)
            message = BackMsg()
            if self.template is not None:
                message.rerun_script.CopyFrom(self.template)
            message.rerun_script.fragment_id = fragment_id
            message.rerun_script.is_auto_rerun = True
            self.auto_reruns_sent += 1
            try:
                await self._ws.send(message.SerializeToString())
            except Exception:  # noqa: BLE001 - the connection is closing
                return
