"""How long the Mistakes page waits: evaluating a checkpoint on the 10,000 validation images.

Times, in one process, the first (cold) `evaluate` call (reading the checkpoint and the
validation split, then predicting every image), the prediction alone, and a second (warm)
call, which the per-checkpoint cache answers. Prints seconds and the device the evaluation ran on.

    MNIST_DATA_DIR=/path/to/data python bench/evaluate_speed.py [--model default|<run folder>|<file.pt>]
    MNIST_DATA_DIR=/path/to/data python bench/evaluate_speed.py --train-quick   # no checkpoint yet
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mnist_core.checkpoint import make_checkpoint, save_checkpoint  # noqa: E402
from mnist_core.config import TrainConfig  # noqa: E402
from mnist_core.data import load_split  # noqa: E402
from mnist_core.device import device_label  # noqa: E402
from mnist_core.evaluate import evaluate, evaluate_model  # noqa: E402
from mnist_core.inference import load_model, resolve_checkpoint  # noqa: E402
from mnist_core.train import fit  # noqa: E402


def quick_checkpoint(data_dir: str | None) -> Path:
    """A 'fast' model trained for one epoch on 6,000 images: the timing does not depend on its accuracy."""
    config = TrainConfig(model="fast", epochs=1, batch_size=256, lr=0.01, schedule="onecycle", train_subset=6000)
    result = fit(config, data_dir=data_dir)
    path = Path(tempfile.mkdtemp(prefix="evaluate-speed-")) / "checkpoint.pt"
    save_checkpoint(path, make_checkpoint(result.model.cpu(), config, 1, {}))
    return path


def timed(work):
    start = time.perf_counter()
    value = work()
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="'default', a run folder or a checkpoint file")
    parser.add_argument("--train-quick", action="store_true", help="train a quick model first if --model is missing")
    parser.add_argument("--data-dir")
    args = parser.parse_args()

    try:
        path = resolve_checkpoint(args.model)
    except FileNotFoundError:
        if not args.train_quick:
            sys.exit(f"no checkpoint for --model {args.model!r}; pass --train-quick to train a small one first")
        print("no checkpoint: training a quick one (fast model, 1 epoch on 6,000 images)…")
        path = quick_checkpoint(args.data_dir)

    # Cold: the first call in this process reads the checkpoint and the split, then predicts every image.
    result, cold_seconds = timed(lambda: evaluate(path, data_dir=args.data_dir))
    _, warm_seconds = timed(lambda: evaluate(path, data_dir=args.data_dir))
    model, config = load_model(path)
    images, labels = load_split(config.dataset, train=False, data_dir=args.data_dir)
    _, predict_seconds = timed(lambda: evaluate_model(model, images, labels, config.dataset))

    print(f"checkpoint: {path} ({config.model} model, accuracy {result.accuracy:.2f} %)")
    print(f"device: {device_label(next(model.parameters()).device)}, {torch.get_num_threads()} threads")
    print(f"evaluate, cold (first call: read checkpoint + {len(images):,} images, predict): {cold_seconds:7.3f} s")
    print(f"  of which predicting ({len(images) / predict_seconds:,.0f} images/s):{'':23}{predict_seconds:7.3f} s")
    print(f"evaluate, warm (cached):{'':50}{warm_seconds:7.3f} s")


if __name__ == "__main__":
    main()
