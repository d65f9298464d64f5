"""The embedding map and the activations: how well the map separates the digits, and how long things take.

Prints, for a checkpoint (the shipped model by default):
- the map's leave-one-out 10-nearest-neighbour accuracy in 2-D (target >= 99.0 %);
- the cold build time (features, PCA, t-SNE; target <= 60 s on the 2-core CPU), run in a
  fresh process through the CLI, as the app does;
- the cached load time (target <= 1 s);
- placing one drawing on the map, and `layer_outputs` for one digit (target <= 20 ms), median of 50.

    MNIST_DATA_DIR=/path/to/data python bench/embedding.py [--checkpoint default]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--data-dir", default=os.environ.get("MNIST_DATA_DIR"))
    args = parser.parse_args()
    from mnist_core import embedding
    from mnist_core.data import load_split
    from mnist_core.inference import load_model
    from mnist_core.inside import layer_outputs

    cached_path = embedding.map_path(args.checkpoint)
    cached_path.unlink(missing_ok=True)  # a cold build
    command = [sys.executable, "-m", "mnist_core", "embed", args.checkpoint]
    command += ["--data-dir", args.data_dir] if args.data_dir else []
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    cold = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    summary = json.loads(done.stdout.strip().splitlines()[-1])

    start = time.perf_counter()
    loaded = embedding.load_cached(args.checkpoint, data_dir=args.data_dir)
    cached = time.perf_counter() - start
    model, config = load_model(args.checkpoint)
    images, _ = load_split(config.dataset, False, args.data_dir, download_missing=False)
    placing, activations = [], []
    for image in images[:50]:
        start = time.perf_counter()
        embedding.place(loaded, model, image, config.dataset)
        placing.append(time.perf_counter() - start)
        start = time.perf_counter()
        layer_outputs(model, image, config.dataset)
        activations.append(time.perf_counter() - start)
    print(f"checkpoint {args.checkpoint} ({config.model}), {summary['points']:,} test digits, {os.cpu_count()} CPUs")
    print(f"map: leave-one-out 10-NN accuracy in 2-D {loaded.knn_accuracy():.2f} % (target >= 99.0 %)")
    print(f"cold build through the CLI: {cold:.1f} s wall (target <= 60 s); cached load: {cached * 1000:.0f} ms "
          f"(target <= 1 s)")
    print(f"placing a drawing: {statistics.median(placing) * 1000:.1f} ms median; layer_outputs for one digit: "
          f"{statistics.median(activations) * 1000:.1f} ms median (target <= 20 ms)")


if __name__ == "__main__":
    main()
