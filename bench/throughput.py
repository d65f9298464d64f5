"""Training throughput: the case study's loop against mnist_core's engine, side by side.

Same machine, same process, same network (the case study's ConvNet: plain PyTorch layers in the
baseline, mnist_core's SeedConvNet with its faster backward in the engine), same settings (Adam,
lr 0.01, batch 64). The two alternate in short rounds (which one goes first alternates too), so
both see the same machine: on a shared 2-core VM the speed of either drifts by up to 2x within
minutes, and a ratio of two runs taken a minute apart says more about that drift than about
the code. Prints each round's images/s and ratio, then the median ratio, with the device name.

    MNIST_DATA_DIR=/path/to/data python bench/throughput.py [--rounds 6] [--steps 300] [--device cpu]
        [--compile] [--accuracy] [--compare-plain-conv]

--compile: the engine's model goes through torch.compile first (compile time not counted).
--accuracy: also train the engine 5 epochs, the case study's length, and print its test
accuracy against the case study's 97 +/- 1 %.
--compare-plain-conv: each round also trains the engine with SmallConv2d's route off (plain
oneDNN backward), and prints what the route brings.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.case_study_loop import run_case_study  # noqa: E402
from mnist_core import small_conv  # noqa: E402
from mnist_core.config import TrainConfig  # noqa: E402
from mnist_core.device import device_label, resolve_device  # noqa: E402
from mnist_core.train import fit  # noqa: E402

TARGET, BAR = 3.0, 2.0  # issue 17: >= 3x the case study's loop is the target, >= 2x the bar


def engine_images_per_second(config: TrainConfig, data_dir: str | None, small_conv_route: bool = True) -> float:
    small_conv.ENABLED = small_conv_route
    try:
        outcome = fit(config, data_dir=data_dir).outcome
    finally:
        small_conv.ENABLED = True
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
    parser.add_argument("--compare-plain-conv", action="store_true",
                        help="also train the engine with SmallConv2d's route off, each round")
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(f"device: {device_label(device)}; model: seed (case study); Adam lr 0.01, batch 64; "
          f"{args.rounds} rounds of {args.steps} steps each side")
    config = TrainConfig(epochs=1, train_subset=64 * args.steps, device=device.type, compile_model=args.compile)
    contenders = {
        "case study loop": lambda: run_case_study(1, args.data_dir, device.type, max_steps=args.steps)[
            "images_per_second"],
        "engine": lambda: engine_images_per_second(config, args.data_dir),
    }
    if args.compare_plain_conv:
        contenders["engine, plain conv backward"] = lambda: engine_images_per_second(config, args.data_dir, False)
    ratios, conv_gains = [], []
    for round_number in range(1, args.rounds + 1):
        # Each round starts with the next contender, so a drift within a round favours none.
        names = list(contenders)
        names = names[(round_number - 1) % len(names):] + names[:(round_number - 1) % len(names)]
        speed = {name: contenders[name]() for name in names}
        ratios.append(speed["engine"] / speed["case study loop"])
        line = (f"round {round_number}: case study loop {speed['case study loop']:>8,.0f} images/s, "
                f"engine {speed['engine']:>8,.0f} images/s, ratio {ratios[-1]:.2f}x")
        if args.compare_plain_conv:
            conv_gains.append(speed["engine"] / speed["engine, plain conv backward"])
            line += (f"; plain conv backward {speed['engine, plain conv backward']:>8,.0f} images/s "
                     f"(SmallConv2d {conv_gains[-1]:.2f}x)")
        print(line, flush=True)
    median = statistics.median(ratios)
    print(f"ratio engine / case study: median {median:.2f}x (min {min(ratios):.2f}x, max {max(ratios):.2f}x); "
          f"target {TARGET:g}x {'met' if median >= TARGET else 'NOT met'}, "
          f"bar {BAR:g}x {'met' if median >= BAR else 'NOT met'}")
    if conv_gains:
        print(f"SmallConv2d's input gradient: median {statistics.median(conv_gains):.2f}x the engine's images/s "
              f"with the plain backward (min {min(conv_gains):.2f}x, max {max(conv_gains):.2f}x)")
    if args.accuracy:
        outcome = fit(TrainConfig(device=device.type, compile_model=args.compile), data_dir=args.data_dir).outcome
        accuracy = outcome.test_accuracy
        print(f"engine, 5 epochs (the case study's run): {accuracy:.2f} % test accuracy, "
              f"{outcome.images_per_second:,.0f} images/s; 97 +/- 1 %: {'yes' if 96 <= accuracy <= 98 else 'NO'}")


if __name__ == "__main__":
    main()
