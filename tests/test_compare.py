"""`compare`: two models judged image by image, on tiny data (two weak runs that disagree)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mnist_core.compare import compare
from mnist_core.config import TrainConfig
from mnist_core.jobs import execute_run
from mnist_core.runs import create_run
from tests.conftest import run_command

WEAK = TrainConfig(model="fast", epochs=1, batch_size=32, lr=0.003, train_subset=64)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_data_dir) -> tuple[Path, str, str]:
    runs = tmp_path_factory.mktemp("runs")
    ids = []
    for seed, subset in ((0, 64), (1, 256)):  # B sees more images: it fixes some of A's mistakes, breaks a few
        run = create_run(WEAK.replace(seed=seed, train_subset=subset), runs)
        execute_run(run, tiny_data_dir)
        ids.append(run.id)
    return runs, ids[0], ids[1]


def test_the_comparison_adds_up(two_runs, tiny_data_dir):
    runs, a, b = two_runs
    comparison = compare(runs / a, runs / b, data_dir=tiny_data_dir)
    fixed, broken = comparison.fixed, comparison.broken
    assert len(fixed) and not set(fixed) & set(broken)
    right_a = comparison.a.predictions == comparison.a.labels
    right_b = comparison.b.predictions == comparison.b.labels
    assert (~right_a[fixed] & right_b[fixed]).all() and (right_a[broken] & ~right_b[broken]).all()
    assert sorted(fixed.tolist()) == np.flatnonzero(~right_a & right_b).tolist()  # every one of them
    difference = comparison.b.accuracy - comparison.a.accuracy
    assert difference == pytest.approx((len(fixed) - len(broken)) / comparison.images * 100)
    assert (comparison.confusion_change.sum(1) == 0).all()  # each true class has as many images under both
    np.testing.assert_allclose(comparison.per_class_change,
                               comparison.b.per_class_accuracy - comparison.a.per_class_accuracy)
    confidence = comparison.b.confidence[fixed]
    assert (np.diff(confidence) <= 0).all()  # B's most confident first


def test_the_command_takes_run_ids_and_prints_one_json_line(two_runs, tiny_data_dir):
    runs, a, b = two_runs

    def command(*args):
        return run_command("compare", *args, "--data-dir", tiny_data_dir, "--runs-dir", runs)

    done = command(a, b, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result) >= {"a_accuracy", "b_accuracy", "images", "fixed", "broken", "per_class"}
    assert result["b_accuracy"] - result["a_accuracy"] == pytest.approx(
        (len(result["fixed"]) - len(result["broken"])) / result["images"] * 100, abs=1e-3)
    assert [row["class"] for row in result["per_class"]] == list(range(10))

    missing = command(a, "no-such-run")
    assert missing.returncode == 1 and "no run 'no-such-run'" in missing.stderr and "Traceback" not in missing.stderr
