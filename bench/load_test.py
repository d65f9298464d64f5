"""Hosted-demo load test: N people drawing at once while a job trains, measured at the server.

One run:

1. starts a fresh `streamlit run app.py` on a free port in hosted demo mode (MNIST_HOSTED=1)
   with a temporary runs folder (bench/load/server.py), and samples the CPU and memory of the
   server, the training job and the standby worker every 0.2 s (bench/load/sampler.py);
2. records, with ONE headless Chromium, a Train tab that sets 5 epochs and presses Start (the
   job then trains for the whole test) and a Draw tab drawing `--digits` digits with Clear
   after each; those strokes, timed in the page, are the real-browser reference
   (bench/load/recording.py);
3. closes the browser and opens a Train "watcher": a websocket session that polls the live view
   as an open tab does, and starts a new job if the last one has ended (bench/load/training.py);
   then measures a short window with nobody drawing (the job's speed without the load);
4. with `--hostile` (the default), opens a hostile client (bench/load/hostile.py): a websocket
   session that, until the last phase ends, sends Streamlit's `clear_cache` then reruns the next
   of Train, Mistakes, Draw, Inside, as fast as the server answers, as any visitor of a public
   link can; its messages are counted, and the peak memory of the server and every process it
   started over that time is printed beside the budget, with the processes holding it;
5. for each count in `--sessions`: opens that many Draw sessions, each a websocket session that
   speaks Streamlit's protocol (bench/load/session.py) and replays the recorded strokes and
   Clears with small random pauses, `--strokes` each (bench/load/drawing.py), and prints the
   stroke -> prediction latencies, the CPU and peak memory of the server and of the job, the
   load generator's own CPU, and the job's speed and progress (bench/load/report.py);
6. stops the job and the server's process group (also on errors, Ctrl-C or SIGTERM).

No browser runs while the load is measured, so the CPU is the server's and the job's: the load
generator's own share is printed beside them.

    MNIST_DATA_DIR=/path/to/data python bench/load_test.py [--sessions 1,10,30] [--strokes 10]
        [--digits 4] [--browser /usr/bin/chromium] [--data-dir DIR] [--no-hostile]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.load import report, server  # noqa: E402
from bench.load.browser import default_browser  # noqa: E402
from bench.load.drawing import run_phase  # noqa: E402
from bench.load.hostile import Hostile  # noqa: E402
from bench.load.procfs import cpu_model  # noqa: E402
from bench.load.recording import record  # noqa: E402
from bench.load.sampler import Sampler  # noqa: E402
from bench.load.training import Watcher, job_point  # noqa: E402


async def measure(args, url: str, runs_dir: Path, sampler: Sampler) -> None:
    # SIGTERM cancels this task, so the sessions and the browser are closed by the code below.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    began = time.monotonic()
    recording = await record(url, args.browser, runs_dir, args.digits)
    print(f"recorded {len(recording.steps)} strokes in one Chromium ({time.monotonic() - began:.0f} s); "
          f"the browser is closed now", flush=True)
    print("\n".join(report.browser_reference(recording)), flush=True)
    watcher = Watcher(url, recording, runs_dir)
    hostile: Hostile | None = None
    await watcher.open()
    try:
        start = await watcher.ensure_job()
        watcher.keep_training()
        polls = watcher.polls
        await asyncio.sleep(args.idle_seconds)  # the job's speed, and the server's CPU, with nobody drawing
        idle_until = time.monotonic()
        baseline = watcher.images_per_second(start.at, idle_until)
        idle = sampler.cpu_used(start.at, idle_until)
        seconds = idle_until - start.at
        print(f"\nnobody drawing, {seconds:.0f} s (Train watcher only): server {100 * idle.get('server', 0) / seconds:.0f} %, "
              f"job {100 * idle.get('job', 0) / seconds:.0f} % of one core; job {baseline or 0:,.0f} images/s; "
              f"watcher polls {watcher.polls - polls}; training on {start.device or '?'}", flush=True)
        if args.hostile:
            hostile = Hostile(url)
            await hostile.open()
            hostile.start()
            hostile_since = time.monotonic()
            print("\nhostile client on: clear_cache, then a rerun of Train / Mistakes / Draw / Inside in turn, "
                  "as fast as the server answers, until the last phase ends", flush=True)
        for count in args.sessions:
            await watcher.ensure_job()
            polls, jobs = watcher.polls, watcher.jobs_started
            phase = await run_phase(url, recording, count, args.strokes, seed=count)
            job = report.JobFigures(watcher.images_per_second(phase.since, phase.until), baseline,
                                    job_point(runs_dir).describe(), watcher.jobs_started - jobs,
                                    watcher.polls - polls)
            print()
            print("\n".join(report.phase_block(phase, sampler, job, sampler.generator_cpu(phase.since, phase.until))),
                  flush=True)
            if hostile is not None:
                print("\n".join(report.hostile_phase(hostile.in_window(phase.since, phase.until),
                                                     phase.until - phase.since)), flush=True)
        if hostile is not None:
            await hostile.close()
            hostile_until = time.monotonic()
            print()
            print("\n".join(report.hostile_summary(hostile, sampler, hostile_since, hostile_until, args.sessions)),
                  flush=True)
        for error in watcher.errors:
            print(f"Train watcher: {error}")
    finally:
        if hostile is not None:
            await hostile.close()
        await watcher.close()
    print(f"\njobs started by the watcher: {watcher.jobs_started}; peak memory over the whole test (MiB PSS): "
          f"server {sampler.peak_mib('pss', 'server'):,.0f}, job {sampler.peak_mib('pss', 'job'):,.0f}, "
          f"standby {sampler.peak_mib('pss', 'standby'):,.0f}, all {sampler.peak_mib('pss', None):,.0f}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="1,10,30",
                        help="comma-separated counts of concurrent Draw sessions, one phase each (default 1,10,30)")
    parser.add_argument("--strokes", type=int, default=10, help="digits each session draws per phase (default 10)")
    parser.add_argument("--digits", type=int, default=4, help="different digits recorded in the browser (default 4)")
    parser.add_argument("--hostile", action=argparse.BooleanOptionalAction, default=True,
                        help="a hostile client sends clear_cache and a page rerun in a loop during the phases "
                             "(default: on)")
    parser.add_argument("--idle-seconds", type=float, default=10, help="the window with nobody drawing (default 10)")
    parser.add_argument("--browser", default=default_browser(),
                        help="a Chromium executable for the recording (default: $E2E_BROWSER, else /usr/bin/chromium, else /usr/bin/chromium-headless-shell)")
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("MNIST_DATA_DIR") or server.ROOT.parent / "shared" / "data"),
                        help="folder holding MNIST/raw/ (default: $MNIST_DATA_DIR or ../shared/data)")
    args = parser.parse_args()
    try:
        args.sessions = [int(n) for n in args.sessions.split(",") if n.strip()]
    except ValueError:
        parser.error(f"--sessions takes counts like 1,10,30, not {args.sessions!r}")
    if not args.sessions or min(args.sessions) < 1 or args.strokes < 1 or args.digits < 1:
        parser.error("--sessions, --strokes and --digits must be at least 1")
    if not (args.data_dir / "MNIST" / "raw").is_dir():
        parser.error(f"{args.data_dir} has no MNIST/raw/ folder")
    if not Path(args.browser).exists():
        parser.error(f"no browser at {args.browser}")
    return args


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # clean up as on Ctrl-C
    begun = time.monotonic()
    exit_code = 0
    with tempfile.TemporaryDirectory(prefix="load-test-") as temporary:
        runs_dir, log_path = Path(temporary) / "runs", Path(temporary) / "server.log"
        port = server.free_port()
        url = f"http://127.0.0.1:{port}"
        print(f"load test against {url}: {cpu_model()}, {os.cpu_count()} cores; sessions {args.sessions}, "
              f"{args.strokes} strokes each; hostile client {'on' if args.hostile else 'off'}", flush=True)
        process = server.start_server(port, args.data_dir.resolve(), runs_dir, log_path)
        sampler = Sampler(process.pid, runs_dir)
        try:
            server.wait_until_healthy(url, process)
            sampler.start()
            asyncio.run(measure(args, url, runs_dir, sampler))
        except (KeyboardInterrupt, SystemExit, asyncio.CancelledError):
            print("\ninterrupted: cleaning up", file=sys.stderr, flush=True)
            exit_code = 130
        except Exception:
            print(f"\nload test failed; the server's log:\n{log_path.read_text()[-3000:]}", file=sys.stderr)
            raise
        finally:
            sampler.stop()
            for line in server.stop_active_runs(runs_dir):
                print(line, flush=True)
            server.stop_server(process)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and server.leftovers(process.pid):
                time.sleep(0.2)
            print(f"server stopped (exit code {process.returncode}); processes left behind: "
                  f"{len(server.leftovers(process.pid))}; whole run {time.monotonic() - begun:.0f} s")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
