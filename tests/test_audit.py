"""The label audit: confident learning's ranking, K-fold out-of-sample probabilities on tiny data
with deliberately flipped labels, the stored results, marks, the job and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mnist_core import audit
from mnist_core.audit import (
    AuditResult,
    AuditSpec,
    create_audit,
    estimate_label_errors,
    execute_audit,
    find_cached,
    fold_indices,
    off_diagonal,
    rank,
    why_suspected,
)
from mnist_core.config import ConfigError, TrainConfig
from mnist_core.events import Started
from mnist_core.jobs import JobRunner
from mnist_core.marks import MarksDamaged, excluded_indices, load_marks, marks_csv, marks_path, set_mark
from mnist_core.runs import list_runs
from mnist_core.train import fit
from tests.conftest import TINY_TEST, TINY_TRAIN, run_command, tiny_digits, wait_for, write_idx

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


PROBABILITIES = np.array([
    [0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.05, 0.05, 0.9],
    [0.05, 0.9, 0.05],  # labelled 0, confidently a 1: an issue
    [0.3, 0.4, 0.3],  # labelled 1, unsure: no other class is confident
    [0.1, 0.1, 0.8],
    [0.02, 0.49, 0.49],  # labelled 2, a coin toss between 1 and 2
])
LABELS = np.array([0, 1, 2, 0, 1, 2, 2])


def test_each_ranking_score_orders_the_images_as_its_definition_says():
    by_self_confidence = rank(PROBABILITIES, LABELS, by="self_confidence")
    assert by_self_confidence["order"].tolist() == [3, 4, 6, 5, 0, 1, 2]  # p(given) .05 .4 .49 .8 .9 .9 .9, ties by index
    assert by_self_confidence["given_probability"][3] == pytest.approx(0.05)
    assert by_self_confidence["suggested"][3] == 1 and by_self_confidence["suggested_probability"][3] == pytest.approx(0.9)

    by_margin = rank(PROBABILITIES, LABELS, by="normalized_margin")  # p(best other) - p(given)
    assert by_margin["order"][:3].tolist() == [3, 6, 4]  # +.85, 0, -.1: the coin toss before the unsure 1
    assert by_margin["score"][6] == pytest.approx(0.0)

    by_cl = rank(PROBABILITIES, LABELS, by="confident_learning")
    assert by_cl["order"][0] == 3  # the off-diagonal image first
    assert off_diagonal(PROBABILITIES, LABELS).tolist() == [False, False, False, True, False, False, False]
    for ranked in (by_self_confidence, by_margin, by_cl):
        assert sorted(ranked["order"].tolist()) == list(range(len(LABELS)))
        assert (np.diff(ranked["score"][ranked["order"]]) <= 0).all()  # highest score first
    with pytest.raises(ValueError, match="unknown ranking score"):
        rank(PROBABILITIES, LABELS, by="loudest")


def test_the_estimate_scales_each_classs_confident_share_of_wrong_labels_to_the_whole_class():
    # Class 0: 100 images, 80 confidently 0, 10 confidently 1, 10 confident of nothing (its
    # threshold is their mean p(0), 0.815). Class 1: 100 images (threshold 0.94), half confidently 1.
    # The confident joint's row 0 is [80, 10]; calibrated to the row's 100 images it is
    # [88.9, 11.1]: 11 wrong labels, not the 10 counted.
    sure_0, sure_1, unsure = [0.95, 0.05], [0.02, 0.98], [0.5, 0.5]
    probabilities = np.array([sure_0] * 80 + [[0.05, 0.95]] * 10 + [unsure] * 10 + [sure_1] * 50 + [[0.1, 0.9]] * 50)
    labels = np.array([0] * 100 + [1] * 100)
    assert off_diagonal(probabilities, labels).sum() == 10
    assert estimate_label_errors(probabilities, labels) == 11
    ranked = rank(probabilities, labels)
    assert int(ranked["estimated"]) == 11 and ranked["flagged"].sum() == 11
    assert set(np.flatnonzero(ranked["flagged"])) >= set(range(80, 90))  # the ten confidently 1 among them
    clean = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    assert estimate_label_errors(clean, np.array([0, 0, 1, 1])) == 0


def test_the_temperature_undoes_a_known_flattening_and_keeps_each_images_most_probable_class():
    generator = np.random.default_rng(0)
    logits = generator.normal(0, 3, size=(20_000, 10))
    honest = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([generator.choice(10, p=row) for row in honest])  # labels drawn from the honest probabilities
    flattened = audit.rescale(honest, 2.5)  # as label smoothing would leave them: too unsure
    temperature = audit.fit_temperature(flattened, labels)
    assert temperature == pytest.approx(1 / 2.5, rel=0.06)
    rescaled = audit.rescale(flattened, temperature)
    np.testing.assert_allclose(rescaled, honest, atol=0.03)
    assert (rescaled.argmax(1) == flattened.argmax(1)).all()


def test_the_reason_says_in_plain_words_what_the_models_think():
    names = tuple(str(digit) for digit in range(10))
    assert why_suspected(9, 4, 0.02, 0.97, names) == "The models are 97 % sure this is a 4, but it is labelled 9 (2 %)."
    assert why_suspected(3, 8, 0.01, 0.9, names).startswith("The models are 90 % sure this is an 8,")
    assert why_suspected(3, 9, 0.0004, 0.9991, names) == (
        "The models are over 99 % sure this is a 9, but it is labelled 3 (under 1 %).")  # never "100 %" or "0 %"
    assert why_suspected(1, 7, 0.5, 0.4, names) == (
        "It is labelled 1, but the models give that only 50 %; their next guess is 7 (40 %).")


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
    spec = AuditSpec(config=FOLD_CONFIG, folds=4, seed=5, rounds=2)
    audit.cross_validate(spec, flipped_data_dir)
    held_out = fold_indices(TINY_TRAIN, 4, seed=5) + fold_indices(TINY_TRAIN, 4, seed=6)  # each round its own folds
    assert len(calls) == 8 == spec.models
    assert any((a != b).any() for a, b in zip(held_out[:4], held_out[4:]))
    for trained_on, fold in zip(calls, held_out):
        assert not set(trained_on) & set(fold)
        assert sorted([*trained_on, *fold]) == list(range(TINY_TRAIN))


def test_rounds_average_each_images_held_out_judgements(flipped_data_dir, monkeypatch):
    """Two rounds: an image's probabilities are the mean of its two held-out judgements, at the
    temperature fitted to them."""
    judged: list[tuple[np.ndarray, np.ndarray]] = []  # (the images judged, their probabilities)
    real_softmax = audit._softmax

    def recording_softmax(logits):
        probabilities = real_softmax(logits)
        if len(probabilities) != TINY_TEST:  # a held-out fold, not the test split
            judged.append(probabilities)
        return probabilities

    monkeypatch.setattr(audit, "_softmax", recording_softmax)
    spec = AuditSpec(config=FOLD_CONFIG.replace(epochs=1), folds=2, seed=0, rounds=2)
    result = audit.cross_validate(spec, flipped_data_dir)
    folds = fold_indices(TINY_TRAIN, 2, seed=0) + fold_indices(TINY_TRAIN, 2, seed=1)
    expected = np.zeros((TINY_TRAIN, 10))
    for fold, probabilities in zip(folds, judged):
        expected[fold] += probabilities / 2
    assert len(judged) == 4
    assert result.temperature == audit.fit_temperature(expected, result.labels)  # then made honest
    np.testing.assert_allclose(result.probabilities, audit.rescale(expected, result.temperature), atol=1e-6)


def test_an_audit_of_tiny_data_ranks_the_flipped_labels_at_the_top(flipped_data_dir, runs_dir):
    spec = AuditSpec(config=FOLD_CONFIG, folds=4, rounds=1)
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
    assert find_cached(AuditSpec(config=FOLD_CONFIG, folds=5, rounds=1), runs_dir) is None
    assert find_cached(AuditSpec(config=FOLD_CONFIG, folds=4, rounds=2), runs_dir) is None
    test = audit.result_for(AuditSpec(split="test", config=FOLD_CONFIG, rounds=1), find_cached(
        AuditSpec(split="test", config=FOLD_CONFIG, rounds=1), runs_dir))
    assert test.split == "test" and test.probabilities.shape == (TINY_TEST, 10)
    assert test.out_of_sample_accuracy > 90


def test_a_bad_audit_spec_says_which_setting():
    for spec, field in ((AuditSpec(split="val"), "split"), (AuditSpec(folds=1), "folds"), (AuditSpec(rounds=0), "rounds"),
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
        done = run_command("audit", "--folds", "2", "--data-dir", flipped_data_dir, "--runs-dir", runs_dir, *extra)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr

    first, stderr = audit_cli()
    assert "model 4 of 4" in stderr and "Traceback" not in stderr  # 2 rounds of 2 folds
    assert sorted(first["ranked_indices"]) == list(range(TINY_TRAIN)) and first["folds"] == 2 and first["models"] == 4
    assert first["cached"] is False and first["seconds"] > 0 and 0 <= first["out_of_sample_accuracy"] <= 100
    assert first["ranked_by"] == audit.RANKED_BY and first["estimated_label_errors"] >= 1  # labels were flipped
    assert f"about {first['estimated_label_errors']:,} of the {TINY_TRAIN:,} train labels are likely wrong" in stderr
    again, _ = audit_cli()
    assert again["cached"] is True and again["ranked_indices"] == first["ranked_indices"]
    test, _ = audit_cli("--split", "test")  # the fold models' average: no new training
    assert test["cached"] is True and sorted(test["ranked_indices"]) == list(range(TINY_TEST))
    shipped, _ = audit_cli("--split", "test", "--checkpoint", "default")  # one model trained on the training set
    assert shipped["cached"] is False and shipped["folds"] == 0 and len(shipped["ranked_indices"]) == TINY_TEST


def test_cli_train_exclude_marked_records_the_left_out_images(tiny_data_dir, runs_dir):
    set_mark("mnist", "train", 5, "wrong", runs_dir)
    set_mark("mnist", "train", 2, "ambiguous", runs_dir)
    done = run_command("train", "--model", "fast", "--epochs", "1", "--exclude-marked", "--exclude-ambiguous",
                       "--data-dir", tiny_data_dir, "--runs-dir", runs_dir)
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
