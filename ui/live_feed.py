"""A running run's progress line, kept fresh by the browser itself, and the web route it reads.

Why: every rerun of a Streamlit script, even of a one-line fragment, makes the browser redraw
the whole Train page, about 0.1 s of its CPU on 2 cores, taken from the run it shows
(bench/watch_cost.py). So while a run is queued or running, a small element in the page asks
the server for one small JSON look at the run (`GET api/live/<run id>`, mnist_core.live_look)
every FEED_SECONDS and redraws only its own bar and line. It asks Streamlit for a rerun only when
the page has something to redraw: new points for the charts (at most every CURVES_SECONDS), or the
run's end (the summary).

A run the page has just started waits for the page (JobRunner.submit's `hold`): once the
browser has drawn it and is idle, the element sends `POST api/live/<run id>/drawn`, and the run
starts without sharing a small machine's cores with that redraw.

The routes are served by app.py's st.App. Where they cannot be reached (another server in front, a
host that runs the script without it), the element falls back to asking for a rerun every
CURVES_SECONDS, each one bringing a fresh look from the server: slower, never stuck (and a held
run starts after HOLD_SECONDS).
"""

from __future__ import annotations

import functools
import sys

import streamlit as st
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mnist_core.links import RUN_ID
from mnist_core.live_look import Look, look
from mnist_core.runs import Run, default_runs_dir

# Fetched relative to the page. st.App serves it at the server's root, not under Streamlit's
# server.baseUrlPath: with a base path set, the route is missed and the page falls back (below).
FEED_PATH = "api/live"
FEED_SECONDS = 0.5  # one look costs the browser well under a millisecond, the server a few
CURVES_SECONDS = 5.0  # a redraw of the charts costs the browser about 0.2 s of CPU on 2 cores
_NO_STORE = {"Cache-Control": "no-store"}


def _jobs():
    """mnist_core.jobs once a page has run here (it made the server's job runner), else None: then
    there is no queue, nothing is held, and there is no PyTorch to import."""
    return sys.modules.get("mnist_core.jobs")


def look_now(run: Run) -> Look:
    """A look at `run` with its place in this server's job queue."""
    jobs = _jobs()
    return look(run, jobs.queue_position(run) if jobs else None)


def _run_named(run_id: str) -> Run | None:
    """The run `run_id` names, or None for a name that is not a run here (sweeps/, marks...)."""
    folder = default_runs_dir() / run_id
    return Run(folder) if RUN_ID.fullmatch(run_id) and (folder / "config.json").is_file() else None


def _look_at(run_id: str) -> Look | None:
    run = _run_named(run_id)
    return look_now(run) if run is not None else None


def _release(run_id: str) -> bool:
    """Let the run start if this server's runner holds it; False when `run_id` is not a run here."""
    run = _run_named(run_id)
    if run is None:
        return False
    jobs = _jobs()
    if jobs:
        jobs.release(run)
    return True


async def _feed(request: Request) -> JSONResponse:
    """GET api/live/<run id>: one look at that run, as JSON; 404 for a name that is not a run here.

    It says no more than the run history shows anyone. Like the history, it may record a run
    whose process has died as interrupted; it changes nothing else."""
    # File reads, and the runner's lock: on a worker thread, never on the server's event loop.
    now = await run_in_threadpool(_look_at, request.path_params["run_id"])
    if now is None:
        return JSONResponse({"error": "no such run"}, status_code=404, headers=_NO_STORE)
    return JSONResponse(now.as_json(), headers=_NO_STORE)


async def _drawn(request: Request) -> Response:
    """POST api/live/<run id>/drawn: the page that started the run is drawn; the run, held until
    then (JobRunner.submit's `hold`), may start. Anyone may send it: at worst a run starts about
    HOLD_SECONDS sooner than it would have anyway."""
    known = await run_in_threadpool(_release, request.path_params["run_id"])  # may start the job: not on the event loop
    return Response(status_code=204 if known else 404, headers=_NO_STORE)


ROUTES = [
    Route(f"/{FEED_PATH}/{{run_id}}", _feed, methods=["GET"]),
    Route(f"/{FEED_PATH}/{{run_id}}/drawn", _drawn, methods=["POST"]),
]

_FEED_CSS = """
.mnist-live { font-family: var(--st-font, sans-serif); color: var(--st-text-color, #31333f); }
.mnist-live-line { font-size: 0.875rem; margin: 0 0 0.35rem 0; min-height: 1.3em; }
.mnist-live-bar { height: 0.5rem; border-radius: 0.25rem; background: var(--st-secondary-background-color, #f0f2f6); overflow: hidden; }
.mnist-live-fill { height: 100%; background: var(--st-primary-color, #4f46e5); }
"""

_FEED_JS = """
export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  let box = parentElement.querySelector(".mnist-live");
  if (!box) {
    box = document.createElement("div");
    box.className = "mnist-live";
    box.innerHTML = '<p class="mnist-live-line" aria-live="polite"></p>' +
      '<div class="mnist-live-bar" role="progressbar" aria-valuemin="0" aria-valuemax="100">' +
      '<div class="mnist-live-fill"></div></div>';
    parentElement.appendChild(box);
  }
  const line = box.querySelector(".mnist-live-line");
  const bar = box.querySelector(".mnist-live-bar");
  const fill = box.querySelector(".mnist-live-fill");
  const show = (look) => {
    const percent = Math.round(1000 * look.progress) / 10;
    line.textContent = look.line;
    fill.style.width = percent + "%";
    bar.setAttribute("aria-valuenow", String(percent));
  };
  show(data.look);
  // A run its page has just started waits until that page is drawn (about HOLD_SECONDS at most):
  // once the browser is idle, say so, and the run's first second no longer shares the cores with drawing.
  if (data.drawnUrl && parentElement.mnistDrawnSent !== data.drawnUrl) {
    parentElement.mnistDrawnSent = data.drawnUrl;
    const send = () => fetch(data.drawnUrl, { method: "POST", cache: "no-store" }).catch(() => {});
    if (window.requestIdleCallback) window.requestIdleCallback(send, { timeout: 1000 });
    else window.requestAnimationFrame(() => window.setTimeout(send, 0));  // after the next paint (Safari)
  }
  // One poller per element: this render's replaces the last one's (Streamlit calls this function
  // again only when the data changed, and calls the cleanup only when the element goes).
  if (parentElement.mnistStopFeed) parentElement.mnistStopFeed();
  let stopped = false, timer = null, asking = null, askedAt = Date.now(), endAsked = false;
  // Ask for a rerun at most every curvesMs (the end at once, the first time), and keep polling:
  // a rerun that brings the same data does not call this function again, and must not leave the
  // line frozen.
  const redraw = (why) => {
    const end = why === "ended" && !endAsked;
    if (!end && Date.now() - askedAt < data.curvesMs) return;
    endAsked = endAsked || why === "ended";
    askedAt = Date.now();
    setTriggerValue("redraw", why);
  };
  const poll = async () => {
    if (document.hidden) return;  // a tab nobody looks at costs nothing; it catches up when shown
    let now = null;
    asking = new AbortController();
    const giveUp = window.setTimeout(() => asking.abort(), 5000);
    try {
      const response = await fetch(data.url, { cache: "no-store", signal: asking.signal });
      if (response.ok) now = await response.json();
    } catch (error) { now = null; }
    window.clearTimeout(giveUp);
    if (stopped) return;
    if (now === null) return redraw("no feed");  // no route here: the server draws each look instead
    show(now);
    if (!now.active) return redraw("ended");
    if (now.events !== data.look.events) redraw("new points");
  };
  const loop = async () => {
    await poll();
    if (!stopped) timer = window.setTimeout(loop, data.feedMs);
  };
  timer = window.setTimeout(loop, data.feedMs);
  parentElement.mnistStopFeed = () => {
    stopped = true;
    window.clearTimeout(timer);
    if (asking) asking.abort();
  };
  return parentElement.mnistStopFeed;
}
"""


def live_feed(run: Run, first: Look, held: bool = False) -> None:
    """The run's progress bar and line, from `first` (the look this script run took), then kept fresh
    by the browser; a rerun of the calling fragment follows when the page has something to redraw.
    A `held` run (JobRunner.submit) is let go once the browser has drawn the page."""
    _component()(data={"url": f"{FEED_PATH}/{run.id}", "look": first.as_json(), "feedMs": int(FEED_SECONDS * 1000),
                       "curvesMs": int(CURVES_SECONDS * 1000),
                       "drawnUrl": f"{FEED_PATH}/{run.id}/drawn" if held else None},
                 key=f"live_feed_{run.id}", on_redraw_change=_nothing)


def _nothing() -> None:
    """The rerun the element asks for is the whole answer: the fragment reads the run afresh."""


@functools.cache
def _component():
    # Not in a shadow root: the line is part of the page's text (find-in-page, screen readers, tests).
    return st.components.v2.component("mnist_live_feed", js=_FEED_JS, css=_FEED_CSS, isolate_styles=False)
