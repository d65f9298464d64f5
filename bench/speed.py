"""Time to accuracy: the `fast` and `best` presets, next to the published anchors.

    MNIST_DATA_DIR=../shared/data python bench/speed.py fast [--seeds 5]
    MNIST_DATA_DIR=../shared/data python bench/speed.py best
    MNIST_DATA_DIR=../shared/data python bench/speed.py recipe   # the published one-epoch recipe, re-run here

`train_seconds` is what the CLI reports: wall time inside the training steps only. Targets:
fast >= 99.0 % for every seed in <= 3 s on the 2-core CPU (<= 0.3 s on an H100); best >= 99.6 %.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mnist_core import models  # noqa: E402
from mnist_core.config import PRESETS, TrainConfig  # noqa: E402
from mnist_core.device import device_label, resolve_device  # noqa: E402
from mnist_core.train import fit  # noqa: E402

ANCHORS = {
    "fast": "published one-epoch recipe re-run on this 2-core CPU: 99.1 % in 4.7 s; target <= 3 s, >= 99.0 % every seed",
    "best": "best published single small CNNs: ~99.64 % mean; target >= 99.6 %",
    "recipe": "the recipe's own figure on this 2-core CPU: 99.1 % in 4.7 s (0.76 s on a GTX 1660 Ti)",
}


def recipe_net() -> nn.Module:
    """The published recipe's network: conv 1->24 k5 + maxpool, conv 24->32 k3 + maxpool, fc 800->256->10."""
    return nn.Sequential(
        nn.Conv2d(1, 24, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(24, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(800, 256), nn.ReLU(), nn.Linear(256, 10),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("fast", "best", "recipe"))
    parser.add_argument("--seeds", type=int, default=None, help="how many seeds (default: 5 for fast, 1 otherwise)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(f"device: {device_label(device)}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"anchor: {ANCHORS[args.what]}")
    if args.what == "recipe":
        models.MODELS["recipe"] = models.ModelSpec("recipe", "the published one-epoch recipe", recipe_net)
        config = TrainConfig(model="recipe", epochs=1, batch_size=256, lr=0.01, schedule="onecycle",
                             adam_betas=(0.7, 0.9))
    else:
        config = PRESETS[args.what].config
    config = config.replace(device=device.type)
    seeds = range(args.seeds or (5 if args.what == "fast" else 1))
    results = []
    for seed in seeds:
        outcome = fit(config.replace(seed=seed), data_dir=args.data_dir).outcome
        results.append((outcome.test_accuracy, outcome.train_seconds))
        print(f"  seed {seed}: {outcome.test_accuracy:.2f} % test accuracy, {outcome.train_seconds:.2f} s training, "
              f"{outcome.images_per_second:,.0f} images/s")
    accuracies = [a for a, _ in results]
    seconds = [s for _, s in results]
    print(f"{args.what}: accuracy min {min(accuracies):.2f} % / mean {statistics.mean(accuracies):.2f} %, "
          f"training time max {max(seconds):.2f} s / mean {statistics.mean(seconds):.2f} s")


if __name__ == "__main__":
    main()
