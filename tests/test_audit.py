"""The label audit: confident learning's ranking, K-fold out-of-sample probabilities on tiny data
with deliberately flipped labels, the stored results, marks, the job and the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnist_core import audit
from mnist_core.audit import AuditResult, AuditSpec, create_audit, execute_audit, find_cached, fold_indices, rank
from mnist_core.config import ConfigError, TrainConfig
from mnist_core.events import Started
from mnist_core.jobs import JobRunner
from mnist_core.marks import MarksDamaged, excluded_indices, load_marks, marks_csv, marks_path, set_mark
from mnist_core.runs import list_runs
from mnist_core.train import fit
from tests.conftest import TINY_TEST, TINY_TRAIN, tiny_digits, wait_for, write_idx

ROOT = Path(__file__).resolve().parent.parent
FLIPPED = [3, 50, 101, 177, 260, 333, 404, 480]  # training images given a wrong label on purpose
# The tiny digits are learnt in a few epochs; the fold models must not memorise the flipped ones.
FOLD_CONFIG = TrainConfig.preset("fast").replace(epochs=4, batch_size=32, label_smoothing=0.0)


@pytest.fixture(scope="module")
def flipped_data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("flipped-data")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images, labels = tiny_digits(TINY_TRAIN, seed=1)
    labels = labels.copy()
    labels[FLIPPED] = (labels[FLIPPED] + 3) % 10
    write_idx(raw, "train", images, labels)
    write_idx(raw, "t10k", *tiny_digits(TINY_TEST, seed=2))
    return root


def test_rank_puts_confidently_contradicted_labels_first_and_suggests_the_other_class():
    labels = np.array([0, 1, 2, 0, 1, 2])
    probabilities = np.array([
        [0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.05, 0.05, 0.9],
        [0.05, 0.9, 0.05],  # labelled 0, confidently a 1: an issue
        [0.3, 0.4, 0.3],  # labelled 1, unsure: low self-confidence but no other class is confident
        [0.1, 0.1, 0.8],
    ])
    ranked = rank(probabilities, labels)
    assert ranked["order"][:2].tolist() == [3, 4]
    assert ranked["issue"].tolist() == [False, False, False, True, False, False]
    assert ranked["suggested"][3] == 1 and ranked["given_probability"][3] == pytest.approx(0.05)
    assert ranked["score"][3] > ranked["score"][4] > ranked["score"][0]
    assert sorted(ranked["order"].tolist()) == list(range(6))


def test_folds_cover_every_image_once_and_repeat_with_their_seed():
    folds = fold_indices(103, 4, seed=7)
    assert sorted(np.concatenate(folds).tolist()) == list(range(103))
    assert [len(f) for f in folds] == [26, 26, 26, 25]
    assert all((a == b).all() for a, b in zip(folds, fold_indices(103, 4, seed=7)))


def test_fit_trains_on_exactly_the_given_images_minus_the_excluded(tiny_data_dir):
    seen = []
    config = TrainConfig(model="fast", epochs=1, batch_size=64, exclude=(0, 1, 2))
    fit(config, on_event=lambda event: seen.append(event), data_dir=tiny_data_dir, train_indices=list(range(100, 200)))
    assert next(e for e in seen if isinstance(e, Started)).train_images == 100  # 0-2 are not among them
    seen.clear()
    fit(config, on_event=lambda event: seen.append(event), data_dir=tiny_data_dir)
    assert next(e for e in seen if isinstance(e, Started)).train_images == TINY_TRAIN - 3


def test_the_fold_models_never_see_their_held_out_images(flipped_data_dir, monkeypatch):
    calls = []
    real_fit = audit.fit

    def recording_fit(config, **kwargs):
        calls.append(kwargs["train_indices"].numpy())
        return real_fit(config.replace(epochs=1), **kwargs)

    monkeypatch.setattr(audit, "fit", recording_fit)
    spec = AuditSpec(config=FOLD_CONFIG, folds=4, seed=5)
    audit.cross_validate(spec, flipped_data_dir)
    held_out = fold_indices(TINY_TRAIN, 4, seed=5)
    assert len(calls) == 4
    for trained_on, fold in zip(calls, held_out):
        assert not set(trained_on) & set(fold)
        assert sorted([*trained_on, *fold]) == list(range(TINY_TRAIN))


def test_an_audit_of_tiny_data_ranks_the_flipped_labels_at_the_top(flipped_data_dir, runs_dir):
    spec = AuditSpec(config=FOLD_CONFIG, folds=4)
    run = create_audit(spec, runs_dir)
    result = execute_audit(run, flipped_data_dir)
    assert run.status()["state"] == "finished", run.status().get("message")
    top = result.ranking["order"][: len(FLIPPED)].tolist()
    assert sorted(top) == FLIPPED
    suggested = result.ranking["suggested"][FLIPPED]
    _, clean = tiny_digits(TINY_TRAIN, seed=1)
    assert (suggested == clean[FLIPPED]).mean() >= 0.75  # mostly the true class
    assert run.status()["progress"] == 1.0 and run.status()["out_of_sample_accuracy"] > 90

    # Stored: the same settings read it back, the test split comes from the fold models' average.
    assert find_cached(spec, runs_dir) == run
    assert find_cached(AuditSpec(config=FOLD_CONFIG, folds=5), runs_dir) is None
    test = audit.result_for(AuditSpec(split="test", config=FOLD_CONFIG), find_cached(
        AuditSpec(split="test", config=FOLD_CONFIG), runs_dir))
    assert test.split == "test" and test.probabilities.shape == (TINY_TEST, 10)
    assert test.out_of_sample_accuracy > 90


def test_a_bad_audit_spec_says_which_setting():
    for spec, field in ((AuditSpec(split="val"), "split"), (AuditSpec(folds=1), "folds"),
                        (AuditSpec(checkpoint="default"), "checkpoint"),
                        (AuditSpec(config=TrainConfig(train_subset=10)), "config")):
        with pytest.raises(ConfigError) as raised:
            spec.validate()
        assert raised.value.field == field


def test_exclude_must_be_sorted_unique_indices_of_the_training_split():
    TrainConfig(exclude=(1, 5, 59_999)).validate()  # raises if not allowed
    assert TrainConfig.from_dict({"exclude": [1, 2]}).exclude == (1, 2)
    for bad in ((5, 1), (1, 1), (-1,), (60_000,), [1], ("1",)):
        with pytest.raises(ConfigError, match="exclude"):
            TrainConfig(exclude=bad).validate()


def test_marks_are_saved_atomically_reloaded_and_exported(runs_dir, monkeypatch):
    assert load_marks("mnist", "train", runs_dir) == {}
    set_mark("mnist", "train", 7, "wrong", runs_dir)
    set_mark("mnist", "train", 3, "ambiguous", runs_dir)
    set_mark("mnist", "train", 9, "right", runs_dir)
    assert load_marks("mnist", "train", runs_dir) == {7: "wrong", 3: "ambiguous", 9: "right"}
    assert excluded_indices("mnist", runs_dir) == (7,)
    assert excluded_indices("mnist", runs_dir, ambiguous=True) == (3, 7)
    set_mark("mnist", "train", 9, None, runs_dir)
    assert 9 not in load_marks("mnist", "train", runs_dir)
    assert list_runs(runs_dir) == []  # the marks folder is not a run
    csv = marks_csv("mnist", "train", {7: {"given": 1, "suggested": 7}}, runs_dir)
    assert csv.splitlines() == ["dataset,split,index,verdict,given,suggested", "mnist,train,3,ambiguous,,",
                                "mnist,train,7,wrong,1,7"]

    # A write that fails half-way leaves the previous marks whole, and no temporary file behind.
    before = marks_path("mnist", "train", runs_dir).read_bytes()

    def torn_dumps(values, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("mnist_core.runs.json.dumps", torn_dumps)
    with pytest.raises(OSError):
        set_mark("mnist", "train", 11, "wrong", runs_dir)
    monkeypatch.undo()
    assert marks_path("mnist", "train", runs_dir).read_bytes() == before
    assert [p.name for p in marks_path("mnist", "train", runs_dir).parent.iterdir()] == ["mnist-train.json"]

    marks_path("mnist", "train", runs_dir).write_text("{not json")
    with pytest.raises(MarksDamaged, match="mnist-train.json"):
        load_marks("mnist", "train", runs_dir)


def test_an_audit_is_a_background_job_in_the_run_history(flipped_data_dir, runs_dir):
    runner = JobRunner(runs_dir, flipped_data_dir, max_running=1, standby=False)
    run = runner.submit_audit(AuditSpec(config=FOLD_CONFIG.replace(epochs=1), folds=2))
    assert wait_for(lambda: run.status().get("state") in ("finished", "failed"), timeout=180)
    assert run.status()["state"] == "finished", run.status().get("message")
    from mnist_core.runs import summarize

    summary = summarize(run)
    assert summary.kind == "audit" and summary.progress == 1.0 and summary.train_seconds > 0
    assert list_runs(runs_dir) == [run] and not run.has_checkpoint()  # never offered to Mistakes or Draw


def test_cli_audit_prints_the_ranking_and_reuses_a_stored_audit(flipped_data_dir, runs_dir):
    def audit_cli(*extra):
        done = subprocess.run([sys.executable, "-m", "mnist_core", "audit", "--folds", "2", "--data-dir",
                               str(flipped_data_dir), "--runs-dir", str(runs_dir), *extra],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr

    first, stderr = audit_cli()
    assert "fold 2 of 2" in stderr and "Traceback" not in stderr
    assert sorted(first["ranked_indices"]) == list(range(TINY_TRAIN)) and first["folds"] == 2
    assert first["cached"] is False and first["seconds"] > 0 and 0 <= first["out_of_sample_accuracy"] <= 100
    again, _ = audit_cli()
    assert again["cached"] is True and again["ranked_indices"] == first["ranked_indices"]
    test, _ = audit_cli("--split", "test")  # the fold models' average: no new training
    assert test["cached"] is True and sorted(test["ranked_indices"]) == list(range(TINY_TEST))
    shipped, _ = audit_cli("--split", "test", "--checkpoint", "default")  # one model trained on the training set
    assert shipped["cached"] is False and shipped["folds"] == 0 and len(shipped["ranked_indices"]) == TINY_TEST


def test_cli_train_exclude_marked_records_the_left_out_images(tiny_data_dir, runs_dir):
    set_mark("mnist", "train", 5, "wrong", runs_dir)
    set_mark("mnist", "train", 2, "ambiguous", runs_dir)
    done = subprocess.run([sys.executable, "-m", "mnist_core", "train", "--model", "fast", "--epochs", "1",
                           "--exclude-marked", "--exclude-ambiguous", "--data-dir", str(tiny_data_dir),
                           "--runs-dir", str(runs_dir)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "leaving out 2 training images" in done.stderr
    run_dir = Path(json.loads(done.stdout.strip().splitlines()[-1])["run_dir"])
    assert json.loads((run_dir / "config.json").read_text())["exclude"] == [2, 5]


def test_a_stored_result_is_plain_arrays(runs_dir):
    run = create_audit(AuditSpec(), runs_dir)
    result = AuditResult("train", np.eye(10, dtype=np.float32)[[1, 2]], np.array([1, 3]))
    audit.save_result(run, result)
    with np.load(run.path / audit.RESULT_FILE, allow_pickle=False) as stored:  # no pickle needed to read it
        assert stored["order"].tolist() == [1, 0]
    assert audit.load_result(run).labels.tolist() == [1, 3]
