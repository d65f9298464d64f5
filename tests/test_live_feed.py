"""The live view's look at a run (mnist_core.live_look) and the route a watching browser reads it from (ui/live_feed.py).

The browser's side, which polls the route and redraws only its own line, is tested in a real
browser: tests/e2e/test_train_live.py and tests/e2e/test_browser.py (with the route cut off).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json

from starlette.requests import Request

from mnist_core import jobs
from mnist_core.config import TrainConfig
from mnist_core.events import EpochEnd, Finished, Progress, Started
from mnist_core.jobs import JobRunner
from mnist_core.live_look import look
from mnist_core.runs import create_run
from tests.conftest import wait_for
from ui.live_feed import ROUTES


def test_a_queued_run_says_its_place_in_the_queue(runs_dir):
    run = create_run(TrainConfig(epochs=2), runs_dir)
    assert run.status()["state"] == "queued"
    now = look(run, queue_position=3)
    assert now.active and now.progress == 0.0
    assert now.line == "Queued, waiting for a free slot: number 3 in the queue"
    assert look(run).line == "Queued, starting…"  # out of the queue, its worker on the way


def test_a_running_run_says_where_it_is_and_counts_its_events(runs_dir):
    run = create_run(TrainConfig(epochs=2), runs_dir)
    run.update_status(state="running")
    assert look(run).line == "Loading data and building the model…"
    run.append_event(Started("CPU", "fast", 1000, 2, 100, 6400))
    run.append_event(Progress(1, 50, 100, 0.4, 8_412.0, 10.0))
    now = look(run)
    assert now.active and now.progress == 0.25 and now.events == 2
    assert now.line == "Epoch 1/2 · step 50/100 · 8,412 images/s · about 30 s left · CPU"


def test_an_ended_run_is_no_longer_active(runs_dir):
    run = create_run(TrainConfig(epochs=1), runs_dir)
    run.append_event(EpochEnd(1, 0.5, 0.4, 97.0, 3.0))
    run.append_event(Finished(97.0, 3.0, 18000.0, 1))
    run.update_status(state="finished", device="CPU")
    now = look(run)
    assert (now.state, now.active, now.progress, now.line) == ("finished", False, 1.0, "")


def _get(path: str, runs_dir, monkeypatch, method: str = "GET"):
    """The route's answer to `method` `path`: (status code, JSON body or None, headers); None when no route matches."""
    monkeypatch.setenv("MNIST_RUNS_DIR", str(runs_dir))
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "query_string": b"", "headers": []}
    for route in ROUTES:
        match, child = route.matches(scope)
        if match.name == "FULL":
            # On a thread of its own: a browser test before this one may have left this thread's event loop running.
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                response = pool.submit(asyncio.run, route.endpoint(Request({**scope, **child}))).result()
            return response.status_code, json.loads(response.body) if response.body else None, response.headers
    return None


def test_the_route_answers_a_look_at_a_run_and_nothing_else(runs_dir, monkeypatch):
    run = create_run(TrainConfig(epochs=1), runs_dir)
    code, body, headers = _get(f"/api/live/{run.id}", runs_dir, monkeypatch)
    assert code == 200 and body["state"] == "queued" and body["active"] is True and body["line"]
    assert headers["cache-control"] == "no-store"  # every look is fresh
    (runs_dir / "sweeps").mkdir()  # a folder of the runs folder that is not a run
    for name in ("no-such-run", ".hidden", "..", "sweeps"):
        code, body, _ = _get(f"/api/live/{name}", runs_dir, monkeypatch)
        assert code == 404 and body == {"error": "no such run"}, name


def test_the_page_drawn_lets_its_held_run_start(tiny_data_dir, runs_dir, monkeypatch):
    monkeypatch.setattr(jobs, "HOLD_SECONDS", 60.0)  # only the route's word can start it within this test
    runner = JobRunner(runs_dir, tiny_data_dir, max_running=1, standby=True)  # a job that would train at once
    monkeypatch.setattr(jobs, "_server_runner", (("this test",), runner))  # the server's one runner
    try:
        run = runner.submit(TrainConfig(model="fast", epochs=1, batch_size=64), hold=True)
        assert runner.is_held(run)
        code, body, headers = _get(f"/api/live/{run.id}/drawn", runs_dir, monkeypatch, method="POST")
        assert code == 204 and body is None and headers["cache-control"] == "no-store"
        assert not runner.is_held(run) and run.id in runner._running
        assert wait_for(lambda: run.status()["state"] == "finished")
    finally:
        runner.close()
    for name in ("no-such-run", "..", "sweeps"):  # nothing else is a run
        assert _get(f"/api/live/{name}/drawn", runs_dir, monkeypatch, method="POST")[0] == 404, name
    assert _get(f"/api/live/{run.id}/drawn", runs_dir, monkeypatch) is None  # POST only: a visited link does nothing
