"""Hosted-demo load check: N people drawing at once while one training job runs, on one server.

One run of this script:

1. starts `streamlit run app.py` on a free port in hosted demo mode (MNIST_HOSTED=1) with a
   temporary runs folder;
2. opens the Train page in one browser tab, sets 5 epochs and presses "Start training" (the
   case-study preset), so a real job runs in a child process of the server's JobRunner; that
   tab stays open and keeps polling the live view, like a visitor watching the curves. The job
   starts while the Draw pages load; the measurement begins once it is in its training loop;
3. opens `--sessions` more browser sessions (separate browser contexts, i.e. separate
   Streamlit sessions, in one headless Chromium) on the Draw page. They run concurrently
   (Playwright's async API under asyncio.gather; they start their first stroke together):
   each draws `--strokes` digits, one mouse stroke each (1, 0, 7, 2, 3, 4, 6, cycling), and
   presses Clear between digits. The latency of a stroke is measured inside the page, from
   the `mouseup` event that ends the stroke to the moment the `.predicted-digit` element
   appears in the DOM (it is absent after Clear), both on the browser's clock. It includes
   the canvas component's own 200 ms debounce before it sends the drawing;
4. samples the memory of the server and all its descendants (found through /proc/*/stat):
   VmRSS from /proc/<pid>/status every 0.2 s, PSS from /proc/<pid>/smaps_rollup every second
   (the kernel needs about 20 ms of CPU to add up a torch process's PSS, too much for 5 Hz on
   2 cores), and records the peaks of the server alone, the training worker alone and their
   sum, and whether the worker was alive in every sample of the measurement. It also counts
   the CPU seconds the server, the worker, the browser and itself used while the sessions drew;
5. prints the figures, stops the job (STOP file in its run folder), closes the browser and
   terminates the server's process group (also on errors, Ctrl-C or SIGTERM).

The browser runs on this machine and competes with the server for its CPU, which real visitors'
browsers do not: the printed CPU split shows how much. On a small machine the latency is
therefore an upper bound for the server's part; memory is measured for the server's processes only.

PSS (proportional set size) splits each shared page between the processes that map it, so
the server's and the worker's PSS add up to what they really use together. RSS counts the
shared torch libraries in full in each process, so their RSS sum overstates the total.

    MNIST_DATA_DIR=/path/to/data python bench/load_check.py [--sessions 10] [--strokes 5]
        [--browser /usr/bin/chromium] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]
# The browser shares this machine's CPU with the server, which real visitors' browsers do not:
# a modest window and no animations keep its share down without changing what the server does.
CONTEXT_OPTIONS = {"viewport": {"width": 1100, "height": 850}, "reduced_motion": "reduce"}
SAMPLE_SECONDS = 0.2  # VmRSS
PSS_EVERY = 5  # samples: PSS once a second
PREDICTION_TIMEOUT_MS = 60_000
COMMUNITY_CLOUD_BUDGET_BYTES = 2.7e9  # Streamlit Community Cloud: about 2.7 GB of memory per app
MIB = 1024 * 1024


# --- the digits, one mouse stroke each, as fractions of the canvas's width and height ------------

def _arc(cx: float, cy: float, rx: float, ry: float, start_deg: float, end_deg: float, steps: int):
    return [(cx + rx * math.cos(math.radians(start_deg + (end_deg - start_deg) * i / steps)),
             cy + ry * math.sin(math.radians(start_deg + (end_deg - start_deg) * i / steps))) for i in range(steps + 1)]


DIGIT_STROKES: list[tuple[str, list[tuple[float, float]]]] = [
    ("1", [(0.5, 0.15 + 0.07 * i) for i in range(11)]),  # a vertical bar
    ("0", _arc(0.5, 0.5, 0.22, 0.32, -90, 270, 24)),  # an oval
    ("7", [(0.28, 0.2), (0.5, 0.2), (0.72, 0.2), (0.6, 0.45), (0.48, 0.7), (0.42, 0.85)]),  # two segments
    ("2", _arc(0.5, 0.35, 0.2, 0.17, 190, 380, 10) + [(0.45, 0.6), (0.3, 0.82), (0.5, 0.82), (0.72, 0.82)]),
    ("3", _arc(0.48, 0.32, 0.18, 0.15, 200, 450, 10) + _arc(0.48, 0.64, 0.2, 0.18, -90, 150, 10)),
    ("4", [(0.45, 0.15), (0.3, 0.6), (0.72, 0.6), (0.6, 0.6), (0.6, 0.35), (0.6, 0.88)]),
    ("6", [(0.6, 0.15), (0.45, 0.35)] + _arc(0.5, 0.65, 0.18, 0.18, 180, 540, 16)),
]

# Installed in every Draw tab before the app's own scripts: stamps the end of an armed stroke
# and the moment the prediction element shows up, on the page's clock (epoch milliseconds).
PAGE_PROBE = """
window.__loadCheck = {armed: false, upAt: null, shownAt: null, digit: null};
window.addEventListener('mouseup', () => {
  const probe = window.__loadCheck;
  if (probe.armed) { probe.upAt = performance.timeOrigin + performance.now(); probe.armed = false; }
}, true);
new MutationObserver(() => {
  const probe = window.__loadCheck;
  if (probe.upAt === null || probe.shownAt !== null) return;
  const digit = document.querySelector('.predicted-digit');
  if (digit) { probe.shownAt = performance.timeOrigin + performance.now(); probe.digit = digit.textContent.trim(); }
}).observe(document, {childList: true, subtree: true, characterData: true});
"""
FRESH_CANVAS = "canvas.upper-canvas:not([data-load-check-used])"  # Fabric's drawing layer, not yet drawn on
ARM_PROBE = "() => Object.assign(window.__loadCheck, {armed: true, upAt: null, shownAt: null, digit: null})"


# --- processes and memory ---------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def parent_pids() -> dict[int, int]:
    """pid -> ppid for every process visible in /proc."""
    parents = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as file:
                stat = file.read()
        except OSError:
            continue  # it ended meanwhile
        fields = stat[stat.rindex(b")") + 2:].split()  # the name may contain spaces and parentheses
        parents[int(entry.name)] = int(fields[1])
    return parents


def descendants(root: int) -> list[int]:
    """`root` and all processes below it."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parent_pids().items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _proc_kib(path: str, key: str) -> int | None:
    """The KiB figure on the line starting with `key` in a /proc file, or None if the process is gone."""
    try:
        with open(path) as file:
            for line in file:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def resident_kib(pid: int) -> int | None:
    """VmRSS in KiB from /proc/<pid>/status (cheap), or None if the process is gone."""
    return _proc_kib(f"/proc/{pid}/status", "VmRSS:")


def proportional_kib(pid: int) -> int | None:
    """PSS in KiB from /proc/<pid>/smaps_rollup, or None if the process is gone.

    The kernel walks the whole address space for this: about 20 ms of CPU for a process that
    has imported torch, so it is sampled less often than VmRSS."""
    return _proc_kib(f"/proc/{pid}/smaps_rollup", "Pss:")


def process_kind(pid: int, server_pid: int) -> str:
    if pid == server_pid:
        return "server"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            command = file.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "other"
    return "worker" if "mnist_core.worker" in command else "other"


@dataclass
class MemorySample:
    at: float  # time.monotonic()
    rss_kib: dict[str, int]  # by process kind, summed over the processes of that kind
    pss_kib: dict[str, int] | None  # only every PSS_EVERY-th sample
    worker_alive: bool


class MemorySampler(threading.Thread):
    """Samples the memory of the server and its descendants until stopped.

    VmRSS every SAMPLE_SECONDS; PSS every PSS_EVERY samples, since reading it costs the
    sampler (and the machine under test) real CPU time."""

    def __init__(self, server_pid: int) -> None:
        super().__init__(name="memory-sampler", daemon=True)
        self.server_pid = server_pid
        self.samples: list[MemorySample] = []
        self.cpu_seconds = 0.0  # this thread's own CPU time, to show what sampling costs
        self._stop_event = threading.Event()

    def run(self) -> None:
        count = 0
        while not self._stop_event.is_set():
            started, cpu_started = time.monotonic(), time.thread_time()
            with_pss = count % PSS_EVERY == 0
            count += 1
            rss: dict[str, int] = {}
            pss: dict[str, int] | None = {} if with_pss else None
            for pid in descendants(self.server_pid):
                resident = resident_kib(pid)
                if resident is None:
                    continue  # it ended meanwhile
                kind = process_kind(pid, self.server_pid)
                rss[kind] = rss.get(kind, 0) + resident
                if pss is not None:
                    pss[kind] = pss.get(kind, 0) + (proportional_kib(pid) or 0)
            self.samples.append(MemorySample(started, rss, pss, "worker" in rss))
            self.cpu_seconds += time.thread_time() - cpu_started
            self._stop_event.wait(max(0.0, SAMPLE_SECONDS - (time.monotonic() - started)))

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=5)

    def peak(self, measure: str, kind: str | None, since: float = 0.0, until: float = math.inf) -> float:
        """Peak in MiB of one kind (or of all kinds together when kind is None) between two times."""
        peak = 0
        for sample in self.samples:
            values = getattr(sample, f"{measure}_kib")
            if values is not None and since <= sample.at <= until:
                peak = max(peak, sum(values.values()) if kind is None else values.get(kind, 0))
        return peak / 1024


def cpu_seconds_by_kind(server_pid: int) -> dict[int, tuple[str, float]]:
    """pid -> (kind, user + system CPU seconds so far) for the server's tree and everything this
    script started besides it (Playwright's driver and Chromium: "browser"), and this script."""
    ticks = os.sysconf("SC_CLK_TCK")
    server_tree = set(descendants(server_pid))
    found = {}
    for pid in descendants(os.getpid()):
        try:
            with open(f"/proc/{pid}/stat", "rb") as file:
                stat = file.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()
        used = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
        if pid == os.getpid():
            kind = "this script"
        elif pid in server_tree:
            kind = process_kind(pid, server_pid)
        else:
            kind = "browser"
        found[pid] = (kind, used)
    return found


def cpu_used_between(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds by kind between two snapshots (processes that ended in between are not counted)."""
    used: dict[str, float] = {}
    for pid, (kind, seconds) in after.items():
        used[kind] = used.get(kind, 0.0) + seconds - before.get(pid, (kind, 0.0))[1]
    return used


def start_server(port: int, data_dir: Path, runs_dir: Path, log_path: Path, hosted: bool = True) -> subprocess.Popen:
    env = {**os.environ, "MNIST_HOSTED": "1" if hosted else "", "MNIST_DATA_DIR": str(data_dir),
           "MNIST_RUNS_DIR": str(runs_dir)}
    with open(log_path, "w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so the job's worker goes down with it
        )


def wait_until_healthy(url: str, server: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the Streamlit server exited with code {server.returncode}")
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("the Streamlit server did not become healthy within a minute")


def stop_server(server: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, then SIGKILL whatever is left after 10 s."""
    try:
        os.killpg(server.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and group_members(server.pid):
        time.sleep(0.2)
    if group_members(server.pid):
        try:
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if server.poll() is None:
        server.wait(timeout=5)


def group_members(pgid: int) -> list[int]:
    members = []
    for pid in parent_pids():
        try:
            if os.getpgid(pid) == pgid:
                members.append(pid)
        except ProcessLookupError:
            pass
    return members


def leftovers(server_pid: int) -> set[int]:
    """Processes of the server's group and children of this script that are still there."""
    return (set(group_members(server_pid)) | set(descendants(os.getpid()))) - {os.getpid()}


def read_status(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}


# --- the browser ----------------------------------------------------------------------------------

async def wait_idle(page, timeout_ms: int = 60_000) -> None:
    """Until Streamlit has finished running the page's script (as tests/e2e/conftest.py does)."""
    await page.wait_for_selector("[data-testid='stApp']", timeout=timeout_ms)
    await page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')",
        timeout=timeout_ms,
    )
    await page.wait_for_timeout(300)


async def start_training_job(browser, url: str, runs_dir: Path):
    """Train page: 5 epochs of the case-study preset, Start; returns (page, run folder) once it trains."""
    context = await browser.new_context(**CONTEXT_OPTIONS)
    page = await context.new_page()
    page.set_default_timeout(60_000)
    await page.goto(url)
    await wait_idle(page)
    epochs = page.get_by_role("spinbutton", name="Epochs")
    await epochs.fill("5")
    await epochs.press("Enter")
    await wait_idle(page)
    await page.get_by_role("button", name="Start training").click()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        for run_dir in runs_dir.iterdir() if runs_dir.exists() else []:
            status = read_status(run_dir)
            if status.get("state") == "running" and status.get("phase") == "training":
                return page, run_dir
            if status.get("state") in ("failed", "cancelled", "interrupted"):
                raise RuntimeError(f"the training job ended as {status.get('state')}: {status.get('message')}")
        await asyncio.sleep(0.2)
    raise RuntimeError("the training job did not reach its training loop within 90 s")


@dataclass
class Stroke:
    session: int
    drawn: str
    predicted: str | None  # None: no prediction within PREDICTION_TIMEOUT_MS
    up_at_ms: float | None  # browser clock, epoch ms
    shown_at_ms: float | None

    @property
    def latency_ms(self) -> float | None:
        return None if self.shown_at_ms is None else self.shown_at_ms - self.up_at_ms


@dataclass
class Session:
    number: int
    page: object
    strokes: list[Stroke] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def open_draw_session(browser, url: str, number: int) -> Session:
    context = await browser.new_context(**CONTEXT_OPTIONS)
    await context.add_init_script(PAGE_PROBE)
    page = await context.new_page()
    page.set_default_timeout(60_000)
    await page.goto(f"{url}/draw")
    await wait_idle(page)
    await page.locator("canvas.upper-canvas").first.wait_for()
    return Session(number, page)


async def wait_until_drawable(page, timeout_s: float = 60) -> None:
    """Until the canvas accepts a stroke.

    The component mounts Fabric's canvas first and switches on its drawing mode only after it
    has loaded the (empty) initial drawing, asynchronously; a stroke made in between is lost.
    In drawing mode Fabric shows a crosshair cursor as soon as the mouse moves over the canvas."""
    canvas = page.locator(FRESH_CANVAS).first
    await canvas.wait_for()
    deadline = time.monotonic() + timeout_s
    nudge = 0
    while True:
        box = await canvas.bounding_box()
        await page.mouse.move(box["x"] + 4 + nudge % 4, box["y"] + 4)  # a corner, and a new position each time
        if await canvas.evaluate("canvas => canvas.style.cursor") == "crosshair":
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the canvas did not enter drawing mode within {timeout_s:.0f} s")
        nudge += 1
        await asyncio.sleep(0.1)


async def draw_stroke(page, points: list[tuple[float, float]]) -> None:
    """One mouse stroke through `points`, given as fractions of the canvas's width and height."""
    box = await page.locator(FRESH_CANVAS).first.bounding_box()
    xs = [box["x"] + fx * box["width"] for fx, _ in points]
    ys = [box["y"] + fy * box["height"] for _, fy in points]
    await page.mouse.move(xs[0], ys[0])
    await page.mouse.down()
    for x, y in zip(xs[1:], ys[1:]):
        await page.mouse.move(x, y, steps=3)
    await page.mouse.up()


async def draw_digits(session: Session, count: int, start: asyncio.Event) -> None:
    """Draw `count` digits in this session: stroke, wait for the prediction, Clear, repeat."""
    from playwright.async_api import Error as PlaywrightError

    page = session.page
    await start.wait()
    for index in range(count):
        drawn, points = DIGIT_STROKES[index % len(DIGIT_STROKES)]
        try:
            await wait_until_drawable(page)
            await page.evaluate(ARM_PROBE)
            await draw_stroke(page, points)
            try:
                await page.wait_for_function("() => window.__loadCheck.shownAt !== null",
                                             timeout=PREDICTION_TIMEOUT_MS, polling=50)
            except PlaywrightError:
                probe = await page.evaluate("() => window.__loadCheck")
                session.strokes.append(Stroke(session.number, drawn, None, probe["upAt"], None))
                session.errors.append(f"digit {index + 1}: no prediction within {PREDICTION_TIMEOUT_MS / 1000:.0f} s")
            else:
                probe = await page.evaluate("() => window.__loadCheck")
                session.strokes.append(Stroke(session.number, drawn, probe["digit"], probe["upAt"], probe["shownAt"]))
            if index < count - 1:  # Clear between digits: a fresh, empty canvas
                await wait_idle(page)
                # Mark this canvas as used, so the next stroke waits for the new one Clear mounts.
                await page.locator(FRESH_CANVAS).first.evaluate("canvas => { canvas.dataset.loadCheckUsed = '1'; }")
                await page.get_by_role("button", name="Clear").click()
                await page.locator(".predicted-digit").wait_for(state="detached")
                await wait_idle(page)
        except (PlaywrightError, TimeoutError) as error:
            session.errors.append(f"digit {index + 1}: {str(error).splitlines()[0]}")
            return


def max_overlap(intervals: list[tuple[float, float]]) -> tuple[int, float]:
    """Most intervals open at one moment, and the time-weighted mean number open while any is."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    open_now = peak = 0
    weighted = busy = 0.0
    previous = None
    for at, step in edges:
        if previous is not None and open_now:
            weighted += open_now * (at - previous)
            busy += at - previous
        open_now += step
        peak = max(peak, open_now)
        previous = at
    return peak, (weighted / busy if busy else 0.0)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def training_progress(run_dir: Path) -> str:
    """How far the job got, from the last Progress event in its events.jsonl."""
    last = None
    try:
        for line in (run_dir / "events.jsonl").read_text().splitlines():
            event = json.loads(line)
            if event.get("type") == "Progress":
                last = event
    except (OSError, ValueError):
        pass
    if last is None:
        return "no training step recorded yet"
    done = ((last["epoch"] - 1) * last["steps_per_epoch"] + last["step"]) / (5 * last["steps_per_epoch"])
    return (f"epoch {last['epoch']} step {last['step']} of {last['steps_per_epoch']} ({done:.0%} of 5 epochs), "
            f"{last['images_per_second']:,.0f} images/s lately")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


# --- one run --------------------------------------------------------------------------------------

async def measure(args, url: str, runs_dir: Path, sampler: MemorySampler, results: dict) -> None:
    from playwright.async_api import async_playwright

    # SIGTERM cancels this task, so the browser is closed by the code below, not left behind.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=args.browser, args=CHROMIUM_FLAGS)
        try:
            # The job starts while the Draw pages load; the measurement starts once both are done.
            started = time.monotonic()

            async def training_job():
                page, run_dir = await start_training_job(browser, url, runs_dir)
                print(f"  training job {run_dir.name} is training ({time.monotonic() - started:.1f} s after the "
                      "Train page was opened)", flush=True)
                return page, run_dir

            async def draw_sessions():
                await asyncio.sleep(2)  # let the Train tab be the first session of the fresh server
                opened = await asyncio.gather(*(open_draw_session(browser, url, n) for n in range(args.sessions)))
                print(f"  {args.sessions} Draw pages loaded, {time.monotonic() - started:.1f} s after the start",
                      flush=True)
                return opened

            (train_page, run_dir), sessions = await asyncio.gather(training_job(), draw_sessions())
            if read_status(run_dir).get("state") != "running":
                raise RuntimeError(f"the training job is no longer running: {read_status(run_dir)}")

            start = asyncio.Event()
            drawing = [asyncio.create_task(draw_digits(session, args.strokes, start)) for session in sessions]
            results["measure_from"] = time.monotonic()
            cpu_before = cpu_seconds_by_kind(sampler.server_pid)
            start.set()  # every session starts its first stroke at the same moment
            await asyncio.gather(*drawing)
            results["measure_until"] = time.monotonic()
            results["cpu_used"] = cpu_used_between(cpu_before, cpu_seconds_by_kind(sampler.server_pid))
            results["sessions"] = sessions
            results["job_state_after"] = read_status(run_dir).get("state")
            results["job_progress"] = training_progress(run_dir)
            results["device"] = read_status(run_dir).get("device")
            await train_page.close()
        finally:
            await browser.close()


def report(args, results: dict, sampler: MemorySampler) -> None:
    sessions: list[Session] = results["sessions"]
    strokes = [stroke for session in sessions for stroke in session.strokes]
    answered = [stroke for stroke in strokes if stroke.latency_ms is not None]
    latencies = [stroke.latency_ms for stroke in answered]
    correct = sum(stroke.predicted == stroke.drawn for stroke in answered)
    peak_in_flight, mean_in_flight = max_overlap([(s.up_at_ms, s.shown_at_ms) for s in answered])
    since, until = results["measure_from"], results["measure_until"]
    window = [sample for sample in sampler.samples if since <= sample.at <= until]
    job_throughout = bool(window) and all(sample.worker_alive for sample in window)
    drawing_s = until - since

    print()
    print("Hosted-demo load check (MNIST_HOSTED=1): one training job + concurrent Draw sessions")
    print(f"machine           {cpu_model()}, {os.cpu_count()} cores; training device: {results.get('device') or '?'}"
          "; Draw predictions run on the server's CPU")
    plural = "s" if args.sessions != 1 else ""
    print(f"sessions          {args.sessions} Draw session{plural} + 1 Train session (separate browser contexts, "
          "one headless Chromium on the same machine)")
    overlapped = "yes" if peak_in_flight > 1 else "NO"
    print(f"concurrency       concurrent: {overlapped} (sessions run under asyncio.gather and start their first stroke "
          f"together); predictions in flight at once: peak {peak_in_flight}, mean {mean_in_flight:.1f}")
    print(f"strokes           {args.strokes} per session, {len(strokes)} drawn in {drawing_s:.1f} s, "
          f"{len(answered)} answered, {len(strokes) - len(answered)} without a prediction")
    if latencies:
        print(f"latency (ms)      mouse-up -> prediction shown: p50 {percentile(latencies, 0.5):,.0f}  "
              f"p95 {percentile(latencies, 0.95):,.0f}  max {max(latencies):,.0f}  (min {min(latencies):,.0f}, "
              f"mean {statistics.fmean(latencies):,.0f})")
        first = [s.strokes[0].latency_ms for s in sessions if s.strokes and s.strokes[0].latency_ms is not None]
        later = [x.latency_ms for s in sessions for x in s.strokes[1:] if x.latency_ms is not None]
        if first and later:
            print(f"                  first stroke of each session (all at once): p50 {percentile(first, 0.5):,.0f}; "
                  f"later strokes: p50 {percentile(later, 0.5):,.0f}")
    drawn = [DIGIT_STROKES[index % len(DIGIT_STROKES)][0] for index in range(args.strokes)]
    print(f"correct           {correct} of {len(answered)} predictions were the digit drawn "
          f"(each session drew {', '.join(drawn)})")
    wrong = [f"{s.drawn}->{s.predicted}" for s in answered if s.predicted != s.drawn]
    if wrong:
        print(f"                  wrong: {', '.join(wrong)}")
    print(f"training job      running throughout the measurement: {'yes' if job_throughout else 'NO'} "
          f"({len(window)} samples); state afterwards: {results.get('job_state_after')}; "
          f"reached {results.get('job_progress')}")
    cpu = results["cpu_used"]
    available = (os.cpu_count() or 1) * drawing_s
    print(f"CPU while drawing {available:,.0f} core-seconds available; used: "
          + ", ".join(f"{kind} {seconds:,.0f} ({seconds / available:.0%})"
                      for kind, seconds in sorted(cpu.items(), key=lambda item: -item[1])))
    # Memory: from the server's start to the end of drawing (page loads and the job's start included).
    print(f"peak memory (MiB) server start -> end of drawing, {len(sampler.samples)} samples. PSS (shared pages split "
          "between processes: they add up) / VmRSS (shared libraries counted in full in each process)")
    for label, kind in (("server alone", "server"), ("worker alone", "worker"), ("total", None)):
        print(f"  {label:<15} PSS {sampler.peak('pss', kind, until=until):>7,.0f}   "
              f"RSS {sampler.peak('rss', kind, until=until):>7,.0f}")
    other = sampler.peak("pss", "other", until=until)
    if other:
        print(f"  {'other children':<15} PSS {other:>7,.0f}")
    budget_mib = COMMUNITY_CLOUD_BUDGET_BYTES / MIB
    total = sampler.peak("pss", None, until=until)
    print(f"  budget          Streamlit Community Cloud: about 2.7 GB = {budget_mib:,.0f} MiB; "
          f"peak total PSS is {total / budget_mib:.0%} of it (the browser is not counted: it runs on the visitors' machines)")
    for session in sessions:
        for error in session.errors:
            print(f"  session {session.number}: {error}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10, help="concurrent Draw sessions (default 10)")
    parser.add_argument("--strokes", type=int, default=5, help="digits each session draws (default 5)")
    parser.add_argument("--browser", default=os.environ.get("E2E_BROWSER") or "/usr/bin/chromium",
                        help="a Chromium executable (default: $E2E_BROWSER or /usr/bin/chromium)")
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("MNIST_DATA_DIR") or ROOT.parent / "shared" / "data"),
                        help="folder holding MNIST/raw/ (default: $MNIST_DATA_DIR or ../shared/data)")
    args = parser.parse_args()
    if not (args.data_dir / "MNIST" / "raw").is_dir():
        parser.error(f"{args.data_dir} has no MNIST/raw/ folder")
    if not Path(args.browser).exists():
        parser.error(f"no browser at {args.browser}")

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # clean up as on Ctrl-C
    begun = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="load-check-") as temporary:
        runs_dir = Path(temporary) / "runs"
        log_path = Path(temporary) / "server.log"
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        print(f"load check: {args.sessions} sessions x {args.strokes} strokes against {url}", flush=True)
        server = start_server(port, args.data_dir.resolve(), runs_dir, log_path)
        sampler = MemorySampler(server.pid)
        results: dict = {}
        exit_code = 0
        try:
            wait_until_healthy(url, server)
            sampler.start()
            asyncio.run(measure(args, url, runs_dir, sampler, results))
            sampler.stop()
            report(args, results, sampler)
        except (KeyboardInterrupt, SystemExit, asyncio.CancelledError):
            print("\ninterrupted: cleaning up", file=sys.stderr, flush=True)
            exit_code = 130
        except Exception:
            print(f"\nload check failed; the server's log:\n{log_path.read_text()[-3000:]}", file=sys.stderr)
            raise
        finally:
            sampler.stop()
            for run_dir in sorted(runs_dir.iterdir()) if runs_dir.is_dir() else []:
                if read_status(run_dir).get("state") in ("queued", "running"):
                    (run_dir / "STOP").touch()  # the worker stops within one training step
                    deadline = time.monotonic() + 10
                    while time.monotonic() < deadline and read_status(run_dir).get("state") == "running":
                        time.sleep(0.2)
                    print(f"\njob {run_dir.name} stopped: {read_status(run_dir).get('state')}", flush=True)
            stop_server(server)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and leftovers(server.pid):
                time.sleep(0.2)
            left = leftovers(server.pid)
            print(f"server stopped (exit code {server.returncode}); processes left behind: {len(left)}; "
                  f"whole run {time.monotonic() - begun:.0f} s")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
