"""Label-audit marks under faults: writers in two processes at once, indices outside the split,
and marks files written before indices were checked."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from mnist_core.config import TRAIN_IMAGES, TrainConfig
from mnist_core.marks import excluded_indices, leave_out, load_marks, marks_path, set_mark

REPO = Path(__file__).resolve().parent.parent
PER_PROCESS = 200

# One writer: waits for the go file (so both processes write at the same time), then marks
# PER_PROCESS images of its own, one set_mark (one read-modify-write of the file) each.
WRITER = f"""
import sys, time
from pathlib import Path
from mnist_core.marks import set_mark
runs_dir, first, ready, go = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
ready.touch()
while not go.exists():
    time.sleep(0.001)
for index in range(first, first + {PER_PROCESS}):
    set_mark("mnist", "train", index, "wrong", runs_dir, count=60_000)
"""


def test_two_processes_marking_at_once_keep_every_mark(runs_dir, tmp_path):
    go = tmp_path / "go"
    writers, ready = [], []
    for number, first in enumerate((0, 10_000)):
        ready.append(tmp_path / f"ready-{number}")
        writers.append(subprocess.Popen(
            [sys.executable, "-c", WRITER, str(runs_dir), str(first), str(ready[-1]), str(go)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        deadline = time.monotonic() + 60  # a bound on a hang, not a timing assertion
        while not all(path.exists() for path in ready) and time.monotonic() < deadline:
            if any(writer.poll() is not None for writer in writers):
                break
            time.sleep(0.01)
        go.touch()
        outcomes = [writer.communicate(timeout=120) for writer in writers]
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
    for writer, (_, stderr) in zip(writers, outcomes):
        assert writer.returncode == 0, stderr
    marks = load_marks("mnist", "train", runs_dir)
    print(f"kept {len(marks)} of {2 * PER_PROCESS} marks written by two processes at once")
    assert sorted(marks) == [*range(0, PER_PROCESS), *range(10_000, 10_000 + PER_PROCESS)]
    assert set(marks.values()) == {"wrong"}
    assert [p.name for p in marks_path("mnist", "train", runs_dir).parent.iterdir()] == ["mnist-train.json"]


def test_an_index_outside_the_split_is_refused_and_nothing_is_written(runs_dir):
    path = marks_path("mnist", "train", runs_dir)
    with pytest.raises(ValueError, match=r"^image 70000 is not in mnist train \(it has 60,000 images: 0–59,999\)$"):
        set_mark("mnist", "train", 70_000, "wrong", runs_dir, count=60_000)
    assert not path.exists()  # not even an empty file

    set_mark("mnist", "train", 59_999, "wrong", runs_dir, count=60_000)  # the last image is in
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"^image 60000 is not in mnist train"):
        set_mark("mnist", "train", 60_000, "ambiguous", runs_dir, count=60_000)
    with pytest.raises(ValueError, match=r"^image 10000 is not in mnist test \(it has 10,000 images"):
        set_mark("mnist", "test", 10_000, "wrong", runs_dir, count=10_000)
    for negative in (-1, -60_000):  # refused with or without a count: it would silently mean "from the end"
        with pytest.raises(ValueError, match=f"image {negative} is not in mnist train"):
            set_mark("mnist", "train", negative, "wrong", runs_dir, count=60_000)
        with pytest.raises(ValueError, match=f"image {negative} is not in mnist train"):
            set_mark("mnist", "train", negative, "wrong", runs_dir)
    for not_an_index in ("7", 7.0, True, None):
        with pytest.raises(ValueError, match="whole number"):
            set_mark("mnist", "train", not_an_index, "wrong", runs_dir, count=60_000)
    assert path.read_bytes() == before
    assert load_marks("mnist", "train", runs_dir) == {59_999: "wrong"}
    assert not marks_path("mnist", "test", runs_dir).exists()


def write_old_marks(runs_dir: Path, marks: dict[int, str]) -> Path:
    """A marks file as written before indices were checked."""
    path = marks_path("mnist", "train", runs_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"dataset": "mnist", "split": "train", "marks": {str(i): v for i, v in marks.items()}}))
    return path


def test_old_marks_outside_the_training_set_are_left_out_and_reported(runs_dir):
    write_old_marks(runs_dir, {5: "wrong", 70_000: "wrong", 70_001: "wrong", 8: "ambiguous", 80_000: "right"})
    # Passed on as they are, they make the config refuse its whole `exclude` (the grey Start button).
    assert "exclude" in TrainConfig(exclude=excluded_indices("mnist", runs_dir)).problems()

    marked = leave_out("mnist", TRAIN_IMAGES, runs_dir)
    assert marked == ((5,), (70_000, 70_001))  # the "right" one leaves nothing out, so it is not reported
    assert excluded_indices("mnist", runs_dir, count=TRAIN_IMAGES) == (5,)
    assert excluded_indices("mnist", runs_dir, ambiguous=True, count=TRAIN_IMAGES) == (5, 8)
    assert TrainConfig(exclude=marked.indices).problems() == {}
    note = marked.note("mnist", TRAIN_IMAGES, runs_dir)
    assert note.startswith("2 marks point at images that are not in the mnist training set (70000, 70001); "
                           "they are ignored. The training set has 60,000 images (0–59,999)")
    assert "label-marks/mnist-train.json in the runs folder" in note and str(runs_dir) not in note  # no server path
    assert leave_out("mnist", TRAIN_IMAGES, runs_dir, ambiguous=True) == ((5, 8), (70_000, 70_001))

    write_old_marks(runs_dir, {5: "wrong"})
    assert leave_out("mnist", TRAIN_IMAGES, runs_dir).note("mnist", TRAIN_IMAGES, runs_dir) is None

    # A stray mark can still be cleared (that is how a person removes one), and then it is gone.
    write_old_marks(runs_dir, {5: "wrong", 70_000: "wrong"})
    set_mark("mnist", "train", 70_000, None, runs_dir, count=TRAIN_IMAGES)
    assert load_marks("mnist", "train", runs_dir) == {5: "wrong"}


@pytest.fixture
def app_env(monkeypatch, tiny_data_dir, runs_dir):  # as in tests/test_page_train.py
    monkeypatch.setenv("MNIST_DATA_DIR", str(tiny_data_dir))
    monkeypatch.setenv("MNIST_RUNS_DIR", str(runs_dir))
    monkeypatch.setenv("MNIST_STANDBY_WORKER", "0")
    st.cache_resource.clear()
    st.cache_data.clear()
    yield runs_dir
    st.cache_resource.clear()


def test_train_page_says_which_marks_it_ignores_and_still_starts(app_env):
    write_old_marks(app_env, {5: "wrong", 70_000: "wrong", 70_001: "wrong"})
    at = AppTest.from_file("../pages/train.py", default_timeout=60).run()
    at.checkbox(key="form_exclude_marked").check().run()
    assert not at.exception
    warnings = [warning.value for warning in at.warning]
    assert any(w.startswith("2 marks point at images that are not in the mnist training set (70000, 70001); "
                            "they are ignored.") for w in warnings), warnings
    assert [error.value for error in at.error] == []
    assert "Leaves out 1 of the 60,000 training images." in [caption.value for caption in at.caption]
    start = next(button for button in at.button if button.label == "Start training")
    assert not start.disabled
