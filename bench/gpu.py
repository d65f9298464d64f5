"""GPU figures in one run: what issue 17 asks a session with a GPU machine to record.

    MNIST_DATA_DIR=/path/to/data python bench/gpu.py [--json results.json] [--parts fast,throughput,...]

On the first CUDA device, in this order (each part reports on its own and a failing part does
not stop the rest):
1. the fast preset's time to 99 %: one warm-up run, then seeds 0-2, eager and torch.compiled
   (the engine compiles with CUDA graphs on a GPU: train.COMPILE_MODE);
2. the case study's loop (DataLoader + ToTensor) against the engine on the seed model, in
   images/s: eager, torch.compile (inductor) and torch.compile mode "reduce-overhead" (CUDA graphs);
3. mixed precision: the engine's autocast dtype on this GPU, and that its runs end finite;
4. the best preset's time and accuracy (30 epochs), and with --parts best-compiled compiled;
5. (only when asked for: --parts profile) where an eager engine step's time goes, by torch.profiler.
Training times are what the CLI reports (`train_seconds`); compile time is printed apart.
Targets (issue 17, set for an H100): fast <= 0.3 s to 99 %, engine >= 20x the case study's loop.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.case_study_loop import run_case_study  # noqa: E402
from mnist_core import train  # noqa: E402
from mnist_core.config import PRESETS, TrainConfig  # noqa: E402
from mnist_core.events import Finished  # noqa: E402

RESULTS: dict[str, object] = {}


@contextlib.contextmanager
def part(name: str):
    """Print a part's heading and its wall time; an error is printed and the next part runs."""
    print(f"\n== {name}", flush=True)
    start = time.perf_counter()
    try:
        yield
    except Exception:  # noqa: BLE001 - one broken part must not cost the others' figures
        traceback.print_exc()
        RESULTS[f"{name} error"] = traceback.format_exc().splitlines()[-1]
    print(f"   ({time.perf_counter() - start:.1f} s wall)", flush=True)


def run(config: TrainConfig, data_dir: str | None, mode: str = "auto") -> Finished:
    """One training run; `mode` is torch.compile's when the config compiles ("auto": the engine's choice)."""
    train.COMPILE_MODE = mode
    try:
        outcome = train.fit(config, data_dir=data_dir).outcome
    finally:
        train.COMPILE_MODE = "auto"
    if not isinstance(outcome, Finished):
        raise RuntimeError(f"{config.model}: {outcome}")
    return outcome


def fast_preset(data_dir: str | None, compile_model: bool, mode: str = "auto") -> None:
    config = PRESETS["fast"].config.replace(device="cuda", compile_model=compile_model)
    warm = run(config.replace(seed=99), data_dir, mode)
    print(f"   warm-up run (seed 99): {warm.test_accuracy:.2f} %, {warm.train_seconds:.3f} s", flush=True)
    results = []
    for seed in range(3):
        outcome = run(config.replace(seed=seed), data_dir, mode)
        results.append(outcome)
        compiled = f" (+{outcome.compile_seconds:.1f} s compiling)" if compile_model else ""
        print(f"   seed {seed}: {outcome.test_accuracy:.2f} %, {outcome.train_seconds:.3f} s training{compiled}",
              flush=True)
    key = f"fast compiled {mode}" if compile_model else "fast eager"
    RESULTS[key] = {
        "accuracy_min": min(r.test_accuracy for r in results),
        "seconds_max": max(r.train_seconds for r in results),
        "seconds_mean": statistics.mean(r.train_seconds for r in results),
        "compile_seconds": max(r.compile_seconds for r in results),
    }
    print(f"   {key}: {RESULTS[key]}", flush=True)


def throughput(data_dir: str | None) -> None:
    baseline = run_case_study(1, data_dir, "cuda")
    print(f"   case study loop: {baseline['images_per_second']:,.0f} images/s "
          f"({baseline['seconds']:.1f} s, {baseline['accuracy']:.2f} %)", flush=True)
    RESULTS["case study loop images/s"] = baseline["images_per_second"]
    for label, compile_model, mode in (("eager", False, "auto"), ("inductor", True, "default"),
                                       ("reduce-overhead", True, "reduce-overhead")):
        try:
            outcome = run(TrainConfig(epochs=1, device="cuda", compile_model=compile_model), data_dir, mode)
        except Exception as error:  # noqa: BLE001 - report and measure the next variant
            print(f"   engine {label}: failed: {error}", flush=True)
            continue
        ratio = outcome.images_per_second / baseline["images_per_second"]
        compiled = f", +{outcome.compile_seconds:.1f} s compiling" if compile_model else ""
        print(f"   engine {label}: {outcome.images_per_second:,.0f} images/s ({outcome.train_seconds:.2f} s, "
              f"{outcome.test_accuracy:.2f} %{compiled}) = {ratio:.1f}x the case study's loop", flush=True)
        RESULTS[f"engine {label} images/s"] = outcome.images_per_second
        RESULTS[f"engine {label} ratio"] = ratio


def mixed_precision(data_dir: str | None) -> None:
    autocast, scaler = train._mixed_precision(torch.device("cuda"))
    dtype = getattr(autocast, "fast_dtype", None)
    print(f"   bf16 supported: {torch.cuda.is_bf16_supported()}; engine autocast dtype: {dtype}; "
          f"grad scaler on: {scaler.is_enabled()}", flush=True)
    # The engine fails a run whose loss becomes NaN or infinite, so a Finished run is a finite one.
    outcome = run(TrainConfig(epochs=2, device="cuda"), data_dir)
    print(f"   case-study settings, 2 epochs under autocast: {outcome.test_accuracy:.2f} %, finite loss", flush=True)
    RESULTS["autocast dtype"] = str(dtype)
    RESULTS["bf16 case-study 2 epochs accuracy"] = outcome.test_accuracy


def profile_steps(data_dir: str | None) -> None:
    from torch.profiler import ProfilerActivity, profile

    config = TrainConfig(epochs=1, train_subset=64 * 200, device="cuda")
    run(config, data_dir)  # warm
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as profiler:
        outcome = run(config, data_dir)
    print(f"   200 steps, {outcome.images_per_second:,.0f} images/s under the profiler")
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def best_preset(data_dir: str | None, compile_model: bool = False) -> None:
    outcome = run(PRESETS["best"].config.replace(device="cuda", compile_model=compile_model), data_dir)
    compiled = f" (+{outcome.compile_seconds:.1f} s compiling)" if compile_model else ""
    print(f"   best preset: {outcome.test_accuracy:.2f} %, {outcome.train_seconds:.1f} s training{compiled}",
          flush=True)
    RESULTS["best compiled" if compile_model else "best"] = {
        "accuracy": outcome.test_accuracy, "seconds": outcome.train_seconds, "compile_seconds": outcome.compile_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--parts", default="fast,throughput,precision,fast-compiled,best",
                        help="comma-separated, run in this order: fast, throughput, precision, fast-compiled, "
                             "fast-default-mode, best, best-compiled, profile")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if not torch.cuda.is_available():
        sys.exit("bench/gpu.py needs a CUDA GPU; none is available here")
    name = torch.cuda.get_device_name(0)
    RESULTS["gpu"] = name
    RESULTS["torch"] = torch.__version__
    print(f"GPU: {name}; torch {torch.__version__}; CUDA {torch.version.cuda}; "
          f"cuDNN {torch.backends.cudnn.version()}", flush=True)
    steps = [
        ("fast", "1a. fast preset, eager", lambda: fast_preset(args.data_dir, compile_model=False)),
        ("throughput", "2. throughput: case study's loop vs engine (seed model, batch 64)",
         lambda: throughput(args.data_dir)),
        ("precision", "3. mixed precision", lambda: mixed_precision(args.data_dir)),
        ("fast-compiled", "1b. fast preset, torch.compile", lambda: fast_preset(args.data_dir, compile_model=True)),
        ("fast-default-mode", "1c. fast preset, torch.compile's default mode (no CUDA graphs)",
         lambda: fast_preset(args.data_dir, compile_model=True, mode="default")),
        ("best", "4. best preset", lambda: best_preset(args.data_dir)),
        ("best-compiled", "4b. best preset, torch.compile (the engine's mode: CUDA graphs)",
         lambda: best_preset(args.data_dir, compile_model=True)),
        ("profile", "5. profile of eager engine steps (seed model, batch 64)", lambda: profile_steps(args.data_dir)),
    ]
    for key, title, body in steps:
        if key in parts:
            with part(title):
                body()
    print("\n" + json.dumps(RESULTS, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(RESULTS, indent=1))


if __name__ == "__main__":
    main()
