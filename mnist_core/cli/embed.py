"""`python -m mnist_core embed CHECKPOINT`: build (or load) a checkpoint's embedding map.

A progress bar on stderr; the last stdout line is one JSON object: `path` (an .npz holding `xy`,
`labels` and `predictions`), `seconds`, `cached`, `points` and `knn_accuracy` (leave-one-out
10-nearest-neighbour accuracy in 2-D). A build is a job (`map_job.MapBuild`): it waits for a
free training slot, its progress and end go to the map's status file, which the pages read while
the app builds a map in the background, and its stop file stops it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def run_embed_command(args: argparse.Namespace) -> int:
    from mnist_core import embedding, slots
    from mnist_core.checkpoint import CheckpointError
    from mnist_core.job import ACTIVE_STATES, SERVER_STOPPED, begin_job_process, interrupted, new_status
    from mnist_core.runs import default_runs_dir
    from mnist_core.storage import CacheDamaged

    begin_job_process()  # started by the app: niced, and a full log cannot end it
    start = time.perf_counter()
    by_the_app = args.parent_pid is not None  # the app queued this build (embedding.start_build) and watches it
    build = None  # the job, once this command records one
    slot = None
    # Nobody would be watching a build whose server went away, and it would hold the CPU.
    server_gone = lambda: by_the_app and os.getppid() != args.parent_pid  # noqa: E731
    stop = lambda: build.stop_requested() or server_gone()  # noqa: E731
    try:
        if by_the_app:
            build = embedding.map_build(args.checkpoint, args.split)
        try:
            cached = embedding.load_cached(args.checkpoint, args.split, args.data_dir)
        except CacheDamaged as damaged:  # already moved aside: build it as if there were none
            _say(f"{embedding.damaged_note(args.checkpoint, damaged)}; building it again.", sys.stderr)
            cached = None
        result = cached
        if result is None:
            if not by_the_app:  # run by hand: a job of its own, unless the app's build of this map runs
                build = embedding.map_build(args.checkpoint, args.split)
                if build.status_path.exists() and build.current_status().get("state") in ACTIVE_STATES:
                    raise RuntimeError("another build of this map is running; wait for it, or stop it first")
                build.status_path.parent.mkdir(parents=True, exist_ok=True)
                build.update_status(replace=True, **new_status(progress=0.0))
            build.update_status(state="queued", pid=os.getpid(), message="waiting for a free training slot")
            # A map build is as heavy as training on a small machine: it takes one of the slots.
            slot = slots.acquire(default_runs_dir(), slots.max_jobs(), holder=f"map of {args.checkpoint}",
                                 should_stop=stop,
                                 on_wait=lambda: _say("waiting for a free training slot: another job is working",
                                                      sys.stderr))
            if slot is None:
                raise embedding.BuildStopped()
            build.update_status(state="running", started_at=time.time(), message="starting")

            def progress(fraction: float, text: str) -> None:
                if stop():
                    raise embedding.BuildStopped()
                filled = int(30 * fraction)
                _say(f"\r[{'#' * filled}{'.' * (30 - filled)}] {fraction * 100:3.0f}% {text:32}", sys.stderr, end="")
                build.update_status(progress=round(fraction, 3), message=text)

            result = embedding.build_map(args.checkpoint, args.data_dir, args.split, progress)
            _say("", sys.stderr)
        if build is not None:  # built now, or (queued by the app) found built already
            build.update_status(state="finished", ended_at=time.time(), progress=1.0, message="done")
    except (embedding.BuildStopped, KeyboardInterrupt):
        if server_gone():
            _record_end(build, **interrupted(SERVER_STOPPED, "Build the map again to see it."))
        else:
            _record_end(build, state="cancelled", message="Stopped on request.")
        _say("\nstopped on request", sys.stderr)
        _say(json.dumps({"path": None, "error": "stopped on request"}), sys.stdout)
        return 130
    except Exception as error:  # noqa: BLE001 - a missing checkpoint or dataset, a full disk, a bug: the page must learn
        message = str(error) if isinstance(error, (OSError, ValueError, RuntimeError, CheckpointError)) else (
            f"{type(error).__name__}: {error}")
        _record_end(build, state="failed", message=message)  # said there even when build.log cannot hold it
        _say(f"\nerror: {message}", sys.stderr)
        _say(json.dumps({"path": None, "error": message}), sys.stdout)
        return 1
    finally:
        if slot is not None:
            slot.release()
    print(json.dumps({"path": str(result.path), "seconds": round(time.perf_counter() - start, 2),
                      "cached": cached is not None, "points": len(result.labels),
                      "knn_accuracy": round(result.knn_accuracy(), 2)}))
    return 0


def _say(text: str, stream, end: str = "\n") -> None:
    """Print and flush at once (the progress bar's line ends in "\r"). A build's log on a full disk
    drops the text rather than raising (`begin_job_process`): the status says it all."""
    print(text, file=stream, end=end, flush=True)


def _record_end(build, **fields) -> None:
    """Record how the build ended, when this command is recording one (best effort: the JSON line says it too)."""
    if build is None:
        return
    try:
        build.update_status(**{"ended_at": time.time(), **fields})
    except OSError:
        pass
