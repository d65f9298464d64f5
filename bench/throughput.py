"""Training throughput: the case study's loop against mnist_core's engine, side by side.

Same machine, same process, same model (the case study's ConvNet), same settings (Adam,
lr 0.01, batch 64). Prints images/s of each and their ratio, with the device name.

    MNIST_DATA_DIR=/path/to/data python bench/throughput.py [--epochs 1] [--device cpu] [--compile]

With --compile the engine's model goes through torch.compile first; the compile time is
printed on its own line and is not part of the engine's images/s.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.case_study_loop import run_case_study  # noqa: E402
from mnist_core.config import TrainConfig  # noqa: E402
from mnist_core.device import device_label, resolve_device  # noqa: E402
from mnist_core.train import fit  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile the engine's model first")
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(f"device: {device_label(device)}; model: seed (case study); Adam lr 0.01, batch 64, {args.epochs} epoch(s)")

    baseline = run_case_study(args.epochs, args.data_dir, device.type)
    print(
        f"case study loop (DataLoader + ToTensor): {baseline['images_per_second']:>9,.0f} images/s  "
        f"({baseline['seconds']:.1f} s, {baseline['accuracy']:.2f} %)"
    )

    config = TrainConfig(epochs=args.epochs, device=device.type, compile_model=args.compile)
    engine = fit(config, data_dir=args.data_dir).outcome
    if args.compile:
        print(f"torch.compile (before training, not counted below): {engine.compile_seconds:.1f} s")
    print(
        f"mnist_core engine:                       {engine.images_per_second:>9,.0f} images/s  "
        f"({engine.train_seconds:.1f} s, {engine.test_accuracy:.2f} %)"
    )
    print(f"ratio engine / case study: {engine.images_per_second / baseline['images_per_second']:.2f}x")


if __name__ == "__main__":
    main()
