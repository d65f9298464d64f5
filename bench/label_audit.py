"""The label audit's time and quality, and the effect of training without the suspects.

1. The training split's audit with the defaults (4 folds of the fast preset, 1 epoch each), run
   fresh through the CLI: its wall time (target <= 60 s on the 2-core CPU), out-of-sample
   accuracy and how many images confident learning flags.
2. The test split's audit: by the fold models' average (stored with the train audit, so free),
   and by the shipped model (`--checkpoint default`).
3. The same fast-preset seeds trained with and without the left-out images, side by side: the
   images marked "label is wrong" in the runs folder's marks when there are any, else (no person
   has looked yet) the images confident learning flags, which the output says.

    MNIST_DATA_DIR=/path/to/data python bench/label_audit.py [--seeds 3] [--runs-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def cli(*args: str) -> tuple[dict, float]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mnist_core", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise SystemExit(f"python -m mnist_core {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="fast-preset seeds trained with and without")
    parser.add_argument("--runs-dir", help="use this runs folder's marks (default: a fresh folder, no marks)")
    parser.add_argument("--data-dir", default=os.environ.get("MNIST_DATA_DIR"))
    args = parser.parse_args()
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    with tempfile.TemporaryDirectory() as scratch:
        runs_dir = args.runs_dir or scratch
        train, train_wall = cli("audit", "--split", "train", "--fresh", *data, "--runs-dir", runs_dir)
        print(f"train audit (4 folds of fast, 1 epoch each): {train['audit_seconds']:.1f} s of auditing, "
              f"{train_wall:.1f} s wall with start-up (target <= 60 s); out-of-sample accuracy "
              f"{train['out_of_sample_accuracy']:.2f} %; {train['issues']} flagged by confident learning")
        print("  top 10: " + ", ".join(f"#{t['index']} {t['given']}->{t['suggested']}" for t in train["top"][:10]))
        averaged, averaged_wall = cli("audit", "--split", "test", *data, "--runs-dir", runs_dir)
        shipped, shipped_wall = cli("audit", "--split", "test", "--checkpoint", "default", "--fresh", *data,
                                    "--runs-dir", runs_dir)
        print(f"test audit by the fold models' average: {averaged_wall:.1f} s (stored with the train audit), "
              f"{averaged['out_of_sample_accuracy']:.2f} %, {averaged['issues']} flagged")
        print(f"test audit by the shipped model: {shipped_wall:.1f} s wall, {shipped['out_of_sample_accuracy']:.2f} %, "
              f"{shipped['issues']} flagged")
        _effect(train, runs_dir, args)


def _effect(train: dict, runs_dir: str, args: argparse.Namespace) -> None:
    from mnist_core.audit import find_cached
    from mnist_core.config import TrainConfig
    from mnist_core.events import Finished
    from mnist_core.marks import excluded_indices
    from mnist_core.train import fit

    left_out = excluded_indices("mnist", runs_dir)
    source = f"{len(left_out)} images marked 'label is wrong'"
    if not left_out:
        from mnist_core.audit import AuditSpec, result_for

        result = result_for(AuditSpec(), find_cached(AuditSpec(), runs_dir))
        ranking = result.ranking
        left_out = tuple(sorted(int(i) for i in ranking["order"][: int(ranking["issue"].sum())]))
        source = f"the {len(left_out)} images confident learning flags (nobody has marked any yet)"
    print(f"fast preset, {args.seeds} seeds, with all 60,000 training images and without {source}:")
    differences = []
    for seed in range(args.seeds):
        config = TrainConfig.preset("fast").replace(seed=seed)
        accuracies = []
        for variant in (config, config.replace(exclude=left_out)):
            outcome = fit(variant, data_dir=args.data_dir).outcome
            accuracies.append(outcome.test_accuracy if isinstance(outcome, Finished) else float("nan"))
        differences.append(accuracies[1] - accuracies[0])
        print(f"  seed {seed}: {accuracies[0]:.2f} % with all, {accuracies[1]:.2f} % without ({differences[-1]:+.2f})")
    print(f"  mean difference: {sum(differences) / len(differences):+.3f} points")


if __name__ == "__main__":
    main()
