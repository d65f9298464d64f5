"""Training throughput: the case study's loop against mnist_core's engine, side by side.

Same machine, same process, same model (the case study's ConvNet), same settings (Adam,
lr 0.01, batch 64). The two alternate in short rounds (which one goes first alternates too), so
both see the same machine: on a shared 2-core VM the speed of either drifts by up to 2x within
minutes, and a ratio of two runs taken a minute apart says more about that drift than about
the code. Prints each round's images/s and ratio, then the median ratio, with the device name.

    MNIST_DATA_DIR=/path/to/data python bench/throughput.py [--rounds 6] [--steps 300] [--device cpu]
        [--compile] [--accuracy]

--compile: the engine's model goes through torch.compile first (compile time not counted).
--accuracy: also train the engine 5 epochs, the case study's length, and print its test
accuracy against the case study's 97 +/- 1 %.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.case_study_loop import run_case_study  # noqa: E402
from mnist_core.config import TrainConfig  # noqa: E402
from mnist_core.device import device_label, resolve_device  # noqa: E402
from mnist_core.train import fit  # noqa: E402

TARGET, BAR = 3.0, 2.0  # issue 17: >= 3x the case study's loop is the target, >= 2x the bar


def engine_images_per_second(config: TrainConfig, data_dir: str | None) -> float:
    outcome = fit(config, data_dir=data_dir).outcome
    if not hasattr(outcome, "images_per_second"):
        sys.exit(f"engine: {outcome}")
    return outcome.images_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=300, help="training steps (batches of 64) per round and side")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile the engine's model first")
    parser.add_argument("--accuracy", action="store_true", help="also train the engine 5 epochs and check accuracy")
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(f"device: {device_label(device)}; model: seed (case study); Adam lr 0.01, batch 64; "
          f"{args.rounds} rounds of {args.steps} steps each side")
    config = TrainConfig(epochs=1, train_subset=64 * args.steps, device=device.type, compile_model=args.compile)
    ratios = []
    for round_number in range(1, args.rounds + 1):
        # Alternate who goes first, so a drift within a round favours neither.
        if round_number % 2:
            baseline = run_case_study(1, args.data_dir, device.type, max_steps=args.steps)["images_per_second"]
            engine = engine_images_per_second(config, args.data_dir)
        else:
            engine = engine_images_per_second(config, args.data_dir)
            baseline = run_case_study(1, args.data_dir, device.type, max_steps=args.steps)["images_per_second"]
        ratios.append(engine / baseline)
        print(f"round {round_number}: case study loop {baseline:>8,.0f} images/s, engine {engine:>8,.0f} images/s, "
              f"ratio {ratios[-1]:.2f}x", flush=True)
    median = statistics.median(ratios)
    print(f"ratio engine / case study: median {median:.2f}x (min {min(ratios):.2f}x, max {max(ratios):.2f}x); "
          f"target {TARGET:g}x {'met' if median >= TARGET else 'NOT met'}, "
          f"bar {BAR:g}x {'met' if median >= BAR else 'NOT met'}")
    if args.accuracy:
        outcome = fit(TrainConfig(device=device.type, compile_model=args.compile), data_dir=args.data_dir).outcome
        accuracy = outcome.test_accuracy
        print(f"engine, 5 epochs (the case study's run): {accuracy:.2f} % test accuracy, "
              f"{outcome.images_per_second:,.0f} images/s; 97 +/- 1 %: {'yes' if 96 <= accuracy <= 98 else 'NO'}")


if __name__ == "__main__":
    main()
