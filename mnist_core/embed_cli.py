"""`python -m mnist_core embed CHECKPOINT`: build (or load) a checkpoint's embedding map.

A progress bar on stderr; the last stdout line is one JSON object: `path` (an .npz holding `xy`,
`labels` and `predictions`), `seconds`, `cached`, `points` and `knn_accuracy` (leave-one-out
10-nearest-neighbour accuracy in 2-D). Its progress also goes to the map's status file, which
the pages read while the app builds a map in the background.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def run_embed_command(args: argparse.Namespace) -> int:
    from mnist_core import embedding
    from mnist_core.checkpoint import CheckpointError

    start = time.perf_counter()
    try:
        cached = embedding.load_cached(args.checkpoint, args.split, args.data_dir)
        result = cached
        if result is None:
            def progress(fraction: float, text: str) -> None:
                filled = int(30 * fraction)
                print(f"\r[{'#' * filled}{'.' * (30 - filled)}] {fraction * 100:3.0f}% {text:32}", end="",
                      file=sys.stderr, flush=True)
                embedding.write_status(args.checkpoint, args.split, state="building", progress=round(fraction, 3),
                                       message=text)

            result = embedding.build_map(args.checkpoint, args.data_dir, args.split, progress)
            print(file=sys.stderr)
            embedding.write_status(args.checkpoint, args.split, state="done", progress=1.0, message="done")
    except Exception as error:  # noqa: BLE001 - a missing checkpoint or dataset, a full disk, a bug: the page must learn
        message = str(error) if isinstance(error, (OSError, ValueError, CheckpointError)) else (
            f"{type(error).__name__}: {error}")
        print(f"\nerror: {message}", file=sys.stderr)
        try:
            embedding.write_status(args.checkpoint, args.split, state="failed", message=message)
        except (OSError, ValueError):
            pass
        print(json.dumps({"path": None, "error": message}))
        return 1
    print(json.dumps({"path": str(result.path), "seconds": round(time.perf_counter() - start, 2),
                      "cached": cached is not None, "points": len(result.labels),
                      "knn_accuracy": round(result.knn_accuracy(), 2)}))
    return 0
