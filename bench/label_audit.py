"""The label audit's time and quality: the kept method beside the runner-up and a cheaper variant.

1. The training split's audit with the defaults (2 rounds of 4 folds of the fast preset, 3 epochs
   each), run fresh through the CLI: its wall time (target <= 60 s on the 2-core CPU, idle), its
   out-of-sample accuracy and confident learning's estimate of the wrong labels.
2. The same audit with 1 round (half the models), fresh too.
3. For each, the ranking scores of `mnist_core.audit.RANKING_SCORES` on the same probabilities,
   and how many of each ranking's top 100 a person judged clearly wrong.

The judging is done by a person, by eye, and kept outside the project (never in code, tests or
tuning): a JSON file, `--judgements` or $MNIST_AUDIT_JUDGEMENTS, holding `judged` (the image
indices looked at) and `clearly_wrong` (those whose label is clearly wrong to a person). Images of
a top 100 not judged yet are counted apart and drawn in `--unjudged` (a montage to judge). The
kept ranking's top 100 is drawn in `--montage`, the clear errors framed in red.

With `--effect`, the fast preset is also trained with and without the flagged images.

    MNIST_DATA_DIR=/path/to/data python bench/label_audit.py [--judgements FILE] [--montage PNG]
        [--unjudged PNG] [--effect] [--seeds 3]
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

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mnist_core.audit import RANKED_BY, RANKING_SCORES, AuditSpec, fold_config, load_result, rank  # noqa: E402
from mnist_core.runs import Run  # noqa: E402

TOP = 100


def cli(*args: str) -> tuple[dict, float]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mnist_core", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise SystemExit(f"python -m mnist_core {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), time.perf_counter() - start


def judged_count(top: np.ndarray, judgements: dict | None) -> str:
    if judgements is None:
        return "not judged (no --judgements)"
    wrong = len(set(top.tolist()) & set(judgements["clearly_wrong"]))
    unjudged = len(set(top.tolist()) - set(judgements["judged"]))
    return f"{wrong} clearly wrong" + (f" ({unjudged} not judged yet)" if unjudged else "")


def montage(indices: np.ndarray, images: np.ndarray, labels: np.ndarray, path: Path,
            wrong: set[int] = frozenset(), per_row: int = 10, cell: int = 84) -> None:
    """The images in rank order, each with its rank and given label; clear errors framed in red."""
    from PIL import Image, ImageDraw

    rows = (len(indices) + per_row - 1) // per_row
    sheet = Image.new("RGB", (per_row * cell, rows * (cell + 16)), "white")
    draw = ImageDraw.Draw(sheet)
    for position, index in enumerate(indices):
        x, y = (position % per_row) * cell, (position // per_row) * (cell + 16)
        digit = Image.fromarray(255 - images[index]).resize((cell - 16, cell - 16), Image.NEAREST).convert("RGB")
        sheet.paste(digit, (x + 8, y + 4))
        if int(index) in wrong:
            draw.rectangle((x + 4, y, x + cell - 5, y + cell - 9), outline=(220, 38, 38), width=3)
        draw.text((x + 8, y + cell - 8), f"#{position + 1} label {labels[index]}", fill=(55, 65, 81))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judgements", default=os.environ.get("MNIST_AUDIT_JUDGEMENTS"),
                        help="a person's judgements, kept outside the project (JSON: judged, clearly_wrong)")
    parser.add_argument("--montage", type=Path, help="draw the kept ranking's top 100 here (PNG)")
    parser.add_argument("--unjudged", type=Path, help="draw the top-100 images not judged yet here (PNG)")
    parser.add_argument("--effect", action="store_true", help="also train with and without the flagged images")
    parser.add_argument("--seeds", type=int, default=3, help="with --effect: fast-preset seeds trained")
    parser.add_argument("--data-dir", default=os.environ.get("MNIST_DATA_DIR"))
    args = parser.parse_args()
    judgements = json.loads(Path(args.judgements).read_text()) if args.judgements else None
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    from mnist_core.data import load_split

    images, labels = load_split("mnist", True, args.data_dir, download_missing=False)
    images, labels = images.numpy(), labels.numpy()
    unjudged: list[int] = []
    with tempfile.TemporaryDirectory() as runs_dir:
        kept_ranking = None
        for rounds in (AuditSpec().rounds, 1):
            audit, wall = cli("audit", "--split", "train", "--rounds", str(rounds), "--fresh", *data,
                              "--runs-dir", runs_dir)
            result = load_result(Run(Path(audit["run_dir"])))
            print(f"\n{audit['models']} fold models ({rounds} round{'s' if rounds > 1 else ''} of {audit['folds']} "
                  f"folds, fast preset, {fold_config('fast').epochs} epochs): {audit['audit_seconds']:.1f} s of "
                  f"auditing, {wall:.1f} s wall with start-up (target <= 60 s); out-of-sample accuracy "
                  f"{audit['out_of_sample_accuracy']:.2f} %; temperature {audit['temperature']}; about "
                  f"{audit['estimated_label_errors']} labels likely wrong (confident learning's estimate)")
            for score in sorted(RANKING_SCORES, key=lambda name: name != RANKED_BY):
                ranking = rank(result.probabilities, result.labels, by=score)
                top = ranking["order"][:TOP]
                role = "kept" if score == RANKED_BY and rounds == AuditSpec().rounds else "compared"
                print(f"  {score.replace('_', ' '):<20} ({role}): top {TOP}: {judged_count(top, judgements)}; "
                      f"top 50: {judged_count(top[:50], judgements)}")
                if judgements is not None:
                    unjudged += [int(i) for i in top if int(i) not in set(judgements["judged"]) and int(i) not in unjudged]
                if rounds == AuditSpec().rounds and score == RANKED_BY:
                    kept_ranking = ranking
        if args.montage:
            wrong = set(judgements["clearly_wrong"]) if judgements else set()
            montage(kept_ranking["order"][:TOP], images, labels, args.montage, wrong)
            print(f"\nthe kept ranking's top {TOP}: {args.montage}")
        if args.unjudged and unjudged:
            montage(np.array(unjudged), images, labels, args.unjudged)
            print(f"{len(unjudged)} images of a top {TOP} not judged yet, in this order: {unjudged}; "
                  f"drawn in {args.unjudged}")
        if args.effect:
            _effect(kept_ranking, args)


def _effect(ranking: dict, args: argparse.Namespace) -> None:
    from mnist_core.config import TrainConfig
    from mnist_core.events import Finished
    from mnist_core.train import fit

    left_out = tuple(sorted(int(i) for i in np.flatnonzero(ranking["flagged"])))
    print(f"\nfast preset, {args.seeds} seeds, with all 60,000 training images and without the {len(left_out)} flagged:")
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
