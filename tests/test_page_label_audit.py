"""Mistakes → Suspected label errors, and the Train form's "leave out marked images", under AppTest.

No audit is trained here (tests/test_audit*.py do that): a stored audit is written to disk with
probabilities made up for the tiny data set, in which a few images confidently look like
another class. The view must show those first, record a verdict at once, keep it across a
restart, offer it as CSV, and the Train form must turn it into the run's `exclude`.
"""

from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

import ui.state
from mnist_core.audit import AuditResult, AuditSpec, create_audit, save_result
from mnist_core.config import TrainConfig
from mnist_core.data import load_split
from mnist_core.marks import load_marks, marks_path, set_mark
from mnist_core.runs import ENDED_STATES, create_run, list_runs
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent
MISTAKES = str(ROOT / "pages" / "mistakes.py")
TRAIN = str(ROOT / "pages" / "train.py")
SUSPECTS = (17, 3, 250)  # in the order the view must show them: the given label's probability rises


@pytest.fixture
def stored_audit(studio, tiny_data_dir) -> np.ndarray:
    """A finished training-split audit in the runs folder; returns the given labels."""
    _, labels = load_split("mnist", True, tiny_data_dir, download_missing=False)
    labels = labels.numpy().astype(np.int64)
    probabilities = np.full((len(labels), 10), 0.1 / 9, dtype=np.float32)
    probabilities[np.arange(len(labels)), labels] = 0.9
    for rank, index in enumerate(SUSPECTS):  # confidently another class
        probabilities[index] = 0.04 / 8
        probabilities[index, labels[index]] = 0.01 * (rank + 1)
        probabilities[index, (labels[index] + 1) % 10] = 0.95 - 0.01 * (rank + 1)
    _, test_labels = load_split("mnist", False, tiny_data_dir, download_missing=False)
    test_labels = test_labels.numpy().astype(np.int64)
    test_probabilities = np.eye(10, dtype=np.float32)[test_labels] * 0.9 + 0.01
    run = create_audit(AuditSpec(), studio)
    result = AuditResult("train", probabilities, labels, test_probabilities, test_labels)
    save_result(run, result)
    run.update_status(
        state="finished",
        seconds=12.0,
        ended_at=time.time(),
        progress=1.0,
        out_of_sample_accuracy=result.out_of_sample_accuracy,
    )
    return labels


def open_mistakes() -> AppTest:
    app = AppTest.from_file(MISTAKES, default_timeout=60).run()
    assert not app.exception, app.exception
    return app


def shown_images(app: AppTest) -> list[int]:
    """The image indices of the suspects' cards, in page order."""
    cards = [m.value for m in app.markdown if "alt='image " in m.value]
    return [int(card.split("alt='image ")[1].split("'")[0]) for card in cards]


def verdict(app: AppTest, index: int):
    return app.segmented_control(key=f"audit_mark_mnist_train_{index}")


def test_a_stored_audit_shows_the_suspects_first_and_a_verdict_is_saved_at_once(stored_audit, studio):
    app = open_mistakes()
    assert [tab.label for tab in app.tabs] == ["Mistakes", "Compare with a baseline", "Suspected label errors"]
    assert any("Stored audit from" in m.value and "12 s" in m.value for m in app.markdown)
    assert any(  # one confident misfit in each of three classes of ~50 images: about 3 wrong labels
        "about **3** of 512 labels likely wrong" in m.value and "**0** marked so far" in m.value for m in app.markdown
    )
    assert app.toggle(key="audit_flagged_only").value  # the default: only the suspects, counted as such
    assert shown_images(app) == list(SUSPECTS)
    assert any("Suspects 1–3 of 3" in c.value for c in app.caption)
    first = next(m.value for m in app.markdown if "alt='image 17'" in m.value)
    given, suggested = stored_audit[17], (stored_audit[17] + 1) % 10
    assert f">{given}</b> · maybe <b" in first and f">{suggested}</b>" in first
    article = "an" if suggested == 8 else "a"
    assert f"The models are 94 % sure this is {article} {suggested}, but it is labelled {given} (1 %)." in first
    assert app.button(key="audit_start").label == "Run again"

    verdict(app, 17).set_value("wrong").run()
    assert not app.exception and not app.error
    assert load_marks("mnist", "train", studio) == {17: "wrong"}
    assert any("**1** marked so far" in m.value for m in app.markdown)

    restarted = open_mistakes()  # a new session: the mark comes from the file
    assert verdict(restarted, 17).value == "wrong" and verdict(restarted, 3).value is None
    restarted.toggle(key="audit_only_unmarked").set_value(True).run()
    assert shown_images(restarted)[:2] == [3, 250]

    verdict(restarted, 3).set_value("ambiguous").run()
    verdict(restarted, 250).set_value("right").run()
    assert load_marks("mnist", "train", studio) == {17: "wrong", 3: "ambiguous", 250: "right"}
    restarted.toggle(key="audit_only_unmarked").set_value(False).run()
    verdict(restarted, 250).set_value(None).run()  # clicking the chosen verdict again clears it
    assert load_marks("mnist", "train", studio) == {17: "wrong", 3: "ambiguous"}


def test_paging_through_the_suspects(stored_audit, studio):
    app = open_mistakes()
    assert app.button(key="audit_previous").disabled and app.button(key="audit_next").disabled  # 3 suspects
    app.toggle(key="audit_flagged_only").set_value(False).run()  # every image, most suspicious first
    assert any("Images 1–8 of 512" in c.value for c in app.caption)
    assert shown_images(app)[:3] == list(SUSPECTS)
    app.button(key="audit_next").click().run()
    assert any("Images 9–16 of 512" in c.value for c in app.caption)
    assert not set(shown_images(app)) & set(SUSPECTS)
    app.segmented_control(key="audit_split").set_value("test").run()  # no audit of the test split's own
    assert not app.exception
    assert any("fold models of the training-image audit" in m.value for m in app.markdown)
    assert any("Images 1–8 of 200" in c.value for c in app.caption)
    app.toggle(key="audit_flagged_only").set_value(True).run()  # the test labels here all look right
    assert any("no label they are confident is wrong" in i.value for i in app.info) and not shown_images(app)


def test_the_csv_download_lists_the_marks(stored_audit, studio, monkeypatch):
    served: list[tuple[bytes, str | None]] = []
    original = MemoryMediaFileStorage.load_and_get_id

    def spy(self, path_or_data, mimetype, kind, filename=None):
        served.append((path_or_data, filename))
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", spy)
    set_mark("mnist", "train", 17, "wrong", studio)
    app = open_mistakes()
    button = app.get("download_button")[0]
    assert button.label == "Download marks as CSV" and not button.disabled
    data, name = next((data, name) for data, name in served if name and name.endswith(".csv"))
    assert name == "label-marks-mnist-train.csv"
    rows = list(csv.DictReader(io.StringIO(data.decode() if isinstance(data, bytes) else data)))
    assert rows == [
        {
            "dataset": "mnist",
            "split": "train",
            "index": "17",
            "verdict": "wrong",
            "given": str(stored_audit[17]),
            "given_probability": "0.01",
            "suggested": str((stored_audit[17] + 1) % 10),
        }
    ]


def test_damaged_marks_are_an_error_message_and_the_ranking_still_shows(stored_audit, studio):
    path = marks_path("mnist", "train", studio)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    app = open_mistakes()
    assert any("cannot be read" in error.value for error in app.error)
    assert shown_images(app)[:3] == list(SUSPECTS)
    assert verdict(app, 17).disabled


def test_without_a_stored_audit_the_tab_offers_to_start_one(studio):
    app = open_mistakes()
    assert "No model yet" in app.info[0].value  # the Mistakes tab as before
    start = app.button(key="audit_start")
    assert start.label == "Start audit" and not start.disabled
    assert not shown_images(app)


def test_the_train_form_leaves_out_the_images_marked_wrong(studio):
    for index, mark in ((40, "wrong"), (7, "wrong"), (300, "ambiguous"), (5, "right")):
        set_mark("mnist", "train", index, mark, studio)
    app = AppTest.from_file(TRAIN, default_timeout=60).run()
    app.selectbox(key="form_preset").set_value("fast").run()
    app.checkbox(key="form_exclude_marked").check().run()
    assert any("Leaves out 2 of the 60,000 training images" in c.value for c in app.caption)
    app.checkbox(key="form_exclude_ambiguous").check().run()
    assert any("Leaves out 3 of the 60,000" in c.value for c in app.caption)
    next(button for button in app.button if button.label == "Start training").click().run()
    assert not app.exception
    runs = list_runs(studio)
    assert len(runs) == 1 and runs[0].config.exclude == (7, 40, 300)
    ui.state.runner().cancel(runs[0])  # its config is all this test needs
    assert wait_for(lambda: runs[0].current_status().get("state") in ENDED_STATES, timeout=60)


def test_the_train_form_says_when_the_marks_cannot_be_read(studio):
    path = marks_path("mnist", "train", studio)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[]")
    app = AppTest.from_file(TRAIN, default_timeout=60).run()
    app.checkbox(key="form_exclude_marked").check().run()
    assert any("cannot be read" in error.value for error in app.error)
    assert next(button for button in app.button if button.label == "Start training").disabled


def test_a_running_audit_shows_its_progress_and_can_be_stopped(studio, tiny_data_dir):
    run = create_audit(AuditSpec(), studio)  # started elsewhere (before a reload): found by its settings
    run.update_status(state="running", pid=os.getpid(), progress=0.375, message="Fold 2 of 4: training")
    app = open_mistakes()
    bar = app.get("progress")[0]
    assert bar.value == 37 and bar.proto.text == "Fold 2 of 4: training"
    assert not app.get("button") or all(b.key != "audit_start" for b in app.button)
    app.button(key="audit_stop").click().run()
    assert not app.exception and run.stop_requested()

    run.update_status(state="cancelled", message="Stopped on request (stopped during model 2 of 8).")
    app.session_state["audit_job"] = run.id  # as if this session had started it
    app.run()
    assert any("Stopped on request" in info.value for info in app.info)
    assert app.button(key="audit_start").label == "Start audit"


def test_the_test_split_judged_by_the_model_chosen_for_mistakes(studio, tiny_data_dir):
    model_run = create_run(TrainConfig.preset("fast"), studio)  # a finished run; its weights are never loaded here
    model_run.update_status(state="finished", ended_at=time.time())
    model_run.checkpoint_path.write_bytes(b"not needed")
    _, labels = load_split("mnist", False, tiny_data_dir, download_missing=False)
    labels = labels.numpy().astype(np.int64)
    probabilities = np.eye(10, dtype=np.float32)[labels] * 0.9 + 0.01
    probabilities[42] = np.eye(10, dtype=np.float32)[(labels[42] + 5) % 10] * 0.9 + 0.01
    audit = create_audit(AuditSpec(split="test", checkpoint=str(studio / model_run.id)), studio)
    save_result(audit, AuditResult("test", probabilities, labels))
    audit.update_status(state="finished", seconds=2.0, ended_at=time.time())

    app = open_mistakes()
    app.segmented_control(key="audit_split").set_value("test").run()
    assert app.button(key="audit_start").label == "Start audit"  # no audit by the fold models yet
    app.radio(key="audit_judge").set_value("chosen").run()
    assert not app.exception
    assert any(f"Judging with: {ui.state.model_label(model_run.id)}" in c.value for c in app.caption)
    assert app.button(key="audit_start").label == "Run again"
    assert shown_images(app)[0] == 42
    app.segmented_control(key="audit_mark_mnist_test_42").set_value("wrong").run()
    assert load_marks("mnist", "test", studio) == {42: "wrong"}
    assert load_marks("mnist", "train", studio) == {}
