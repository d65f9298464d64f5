"""Label audit: find the images of a split whose given label is probably wrong.

Confident learning (Northcutt, Jiang and Chuang, 2021, "Confident Learning: Estimating
Uncertainty in Dataset Labels", JAIR 70) needs out-of-sample predicted probabilities: for
each image, what a model that never trained on it thinks of it.

- **Training split:** K-fold cross-validation. The 60,000 images are shuffled (seeded) into K
  folds; K models, each trained with `fit` on the other folds (`train_indices`), each predict
  their held-out fold. Each fold model also predicts the 10,000 test images, and their average
  is the test split's out-of-sample probabilities, for free.
- **Test split:** any model trained on the training set (a checkpoint) predicts it, or the fold
  models' average from a training-split audit.

The ranking (`rank`) is confident learning's, written out here in a few lines rather than taken
from cleanlab, which implements it but is AGPL-licensed, a licence this project must not take on
(the app is meant to be hosted):
1. per-class thresholds t_j: the mean predicted probability of class j over the images labelled j
   (how confident the models are, on average, about class j's own images);
2. an image's confident label is, among the classes j whose probability reaches t_j, the most
   probable one; an image whose confident label differs from its given label is a label issue
   (an off-diagonal entry of the paper's confident joint);
3. issues come first, then everything else, each ordered by self-confidence, the probability of
   the given label, lowest first (the paper's and cleanlab's default ranking).
The score is 1 - self-confidence, plus 1 for an issue, so higher is more suspicious.

Results are stored per split and configuration in the runs folder: an audit is a run folder
(kind "audit" in status.json) whose `audit.npz` holds the probabilities and the ranking, so a
second audit with the same settings is read back (`find_cached`) instead of trained again.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mnist_core.config import ConfigError, TrainConfig
from mnist_core.data import load_split
from mnist_core.events import Event, Failed, Progress
from mnist_core.job import interrupted
from mnist_core.runs import AUDIT, Run, create_run, list_runs
from mnist_core.storage import CacheDamaged, atomic_write_bytes, read_npz
from mnist_core.train import fit, logits_in_batches

SPLITS = ("train", "test")
DEFAULT_FOLDS = 4
MAX_FOLDS = 10
RESULT_FILE = "audit.npz"
AuditProgress = Callable[[float, str], None]  # (fraction done 0..1, what is happening)


class AuditCancelled(Exception):
    """The audit was stopped on request."""


class AuditFailed(Exception):
    """A fold model could not be trained; the message says why."""


@dataclass(frozen=True)
class AuditSpec:
    """What to audit and how: the split, the preset (or config) of the fold models, K, the fold seed."""

    split: str = "train"
    config: TrainConfig = TrainConfig.preset("fast")
    folds: int = DEFAULT_FOLDS
    seed: int = 0
    checkpoint: str = ""  # test split only: a run folder, a .pt file or "default"; "" = the fold models' average

    def validate(self) -> AuditSpec:
        if self.split not in SPLITS:
            raise ConfigError("split", f"{self.split!r} is not a split; choose train or test")
        if isinstance(self.folds, bool) or not isinstance(self.folds, int) or not 2 <= self.folds <= MAX_FOLDS:
            raise ConfigError("folds", f"must be a whole number from 2 to {MAX_FOLDS}, got {self.folds!r}")
        if self.checkpoint and self.split != "test":
            raise ConfigError("checkpoint", "only a test-split audit uses a checkpoint")
        if self.config.exclude or self.config.train_subset:
            raise ConfigError("config", "the fold models train on whole folds: no exclude or train_subset")
        self.config.validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"split": self.split, "config": self.config.to_dict(), "folds": self.folds, "seed": self.seed,
                "checkpoint": self.checkpoint}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AuditSpec:
        return cls(split=values["split"], config=TrainConfig.from_dict(values["config"]), folds=values["folds"],
                   seed=values.get("seed", 0), checkpoint=values.get("checkpoint", ""))


@dataclass
class AuditResult:
    split: str
    probabilities: np.ndarray  # [N, 10] float32, out of sample
    labels: np.ndarray  # [N] the given labels
    test_probabilities: np.ndarray | None = None  # a train audit's fold models' average on the test split
    test_labels: np.ndarray | None = None

    def test_split(self) -> AuditResult:
        """A train audit's by-product: the test split, judged by the fold models' average."""
        return AuditResult("test", self.test_probabilities, self.test_labels)

    @property
    def ranking(self) -> dict[str, np.ndarray]:
        return rank(self.probabilities, self.labels)

    @property
    def out_of_sample_accuracy(self) -> float:
        return float((self.probabilities.argmax(1) == self.labels).mean() * 100)


def rank(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Confident learning's ranking of every image, most suspicious first (see the module docstring).

    Returns arrays over the images, in image order: `suggested` (the confident label, else the
    most probable one), `given_probability`, `issue` (bool) and `score`; and `order`, the image
    indices ranked."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    classes = probabilities.shape[1]
    self_confidence = probabilities[np.arange(len(labels)), labels]
    thresholds = np.array([self_confidence[labels == j].mean() if (labels == j).any() else 1.0
                           for j in range(classes)])
    reaching = probabilities >= thresholds  # [N, classes]: classes each image is confidently in
    confident = np.where(reaching, probabilities, -1.0).argmax(1)
    has_confident = reaching.any(1)
    issue = has_confident & (confident != labels)
    suggested = np.where(has_confident, confident, probabilities.argmax(1))
    score = (1.0 - self_confidence) + issue
    order = np.lexsort((self_confidence, ~issue))  # issues first, then by self-confidence, lowest first
    return {"order": order, "suggested": suggested, "given_probability": self_confidence, "issue": issue,
            "score": score}


def fold_indices(size: int, folds: int, seed: int) -> list[np.ndarray]:
    """The K held-out folds: a seeded shuffle of 0..size-1, cut into K nearly equal parts."""
    order = np.random.default_rng(seed).permutation(size)
    return [np.sort(part) for part in np.array_split(order, folds)]


def cross_validate(spec: AuditSpec, data_dir: str | Path | None = None,
                   on_progress: AuditProgress = lambda fraction, text: None,
                   should_stop: Callable[[], bool] = lambda: False) -> AuditResult:
    """Out-of-sample probabilities of the training split (and the fold models' average on the test split)."""
    config = spec.config
    train_images, train_labels = load_split(config.dataset, True, data_dir, download_missing=False)
    test_images, test_labels = load_split(config.dataset, False, data_dir, download_missing=False)
    probabilities = np.zeros((len(train_labels), 10), dtype=np.float32)
    test_sum = np.zeros((len(test_images), 10), dtype=np.float64)
    folds = fold_indices(len(train_labels), spec.folds, spec.seed)
    everything = np.arange(len(train_labels))
    for number, held_out in enumerate(folds, start=1):
        def on_event(event: Event, number=number) -> None:
            if isinstance(event, Progress):
                within = ((event.epoch - 1) * event.steps_per_epoch + event.step) / (config.epochs * event.steps_per_epoch)
                on_progress((number - 1 + within) / spec.folds, f"fold {number} of {spec.folds}: training")

        on_progress((number - 1) / spec.folds, f"fold {number} of {spec.folds}: starting")
        trained_on = np.setdiff1d(everything, held_out, assume_unique=True)
        result = fit(config.replace(seed=config.seed + number - 1), on_event=on_event, should_stop=should_stop,
                     data_dir=data_dir, download_missing=False, train_indices=torch.from_numpy(trained_on))
        if should_stop():
            raise AuditCancelled(f"stopped during fold {number} of {spec.folds}")
        if isinstance(result.outcome, Failed) or result.model is None:
            raise AuditFailed(f"fold {number} of {spec.folds}: {getattr(result.outcome, 'message', 'no model')}")
        model = result.model
        probabilities[held_out] = _softmax(logits_in_batches(model, train_images[torch.from_numpy(held_out)],
                                                             dataset=config.dataset))
        test_sum += _softmax(logits_in_batches(model, test_images, dataset=config.dataset))
        on_progress(number / spec.folds, f"fold {number} of {spec.folds}: done")
    return AuditResult("train", probabilities, train_labels.numpy().astype(np.int64),
                       (test_sum / spec.folds).astype(np.float32), test_labels.numpy().astype(np.int64))


def audit_test_with_checkpoint(spec: AuditSpec, data_dir: str | Path | None = None) -> AuditResult:
    """The test split's probabilities from one model trained on the training set."""
    from mnist_core.inference import load_model, resolve_checkpoint

    model, trained = load_model(resolve_checkpoint(spec.checkpoint))
    if trained.dataset != spec.config.dataset:  # its labels, the marks and the page would not match
        raise AuditFailed(f"that model was trained on {trained.dataset}, but this audit judges {spec.config.dataset}")
    images, labels = load_split(trained.dataset, False, data_dir, download_missing=False)
    return AuditResult("test", _softmax(logits_in_batches(model, images, dataset=trained.dataset)),
                       labels.numpy().astype(np.int64))


def _softmax(logits: torch.Tensor) -> np.ndarray:
    return torch.softmax(logits.float(), 1).cpu().numpy().astype(np.float32)


def save_result(run: Run, result: AuditResult) -> None:
    """Write the result into the audit's run folder, atomically (plain arrays: loads without pickle)."""
    buffer = io.BytesIO()
    extra = {} if result.test_probabilities is None else {"test_probabilities": result.test_probabilities,
                                                          "test_labels": result.test_labels}
    ranking = result.ranking
    np.savez_compressed(buffer, split=np.array(result.split), probabilities=result.probabilities,
                        labels=result.labels, order=ranking["order"], **extra)
    data = buffer.getvalue()
    atomic_write_bytes(run.path / RESULT_FILE, lambda file: file.write(data), needed_bytes=len(data))


def load_result(run: Run) -> AuditResult:
    """An audit's stored result; FileNotFoundError when it is missing, CacheDamaged (a ValueError)
    naming "audit.npz of run …" when it is damaged (cut off, corrupted, or arrays that do not fit)."""
    name = f"{RESULT_FILE} of run {run.id}"
    stored = read_npz(run.path / RESULT_FILE, name, required=("split", "probabilities", "labels"))
    split, probabilities, labels = str(stored["split"]), stored["probabilities"], stored["labels"]
    test = (stored.get("test_probabilities"), stored.get("test_labels"))
    has_test = test[0] is not None or test[1] is not None
    if split not in SPLITS or not _fits(probabilities, labels) or (has_test and not _fits(*test)):
        raise CacheDamaged(name, "its arrays do not fit together")
    return AuditResult(split, probabilities, labels, *test)


def _fits(probabilities: np.ndarray | None, labels: np.ndarray | None) -> bool:
    """[N, 10] probabilities for [N] labels."""
    return (probabilities is not None and labels is not None and probabilities.ndim == 2
            and probabilities.shape[1] == 10 and labels.shape == probabilities.shape[:1])


def audit_spec(run: Run) -> AuditSpec:
    return AuditSpec.from_dict(run.status()["audit"])


def create_audit(spec: AuditSpec, runs_dir: str | Path | None = None, owner: str = "") -> Run:
    """A queued audit: a run folder holding the fold models' config, with kind "audit" and its spec."""
    spec.validate()
    return create_run(spec.config, runs_dir, owner=owner, extra_status={"kind": AUDIT, "audit": spec.to_dict()})


def find_cached(spec: AuditSpec, runs_dir: str | Path | None = None) -> Run | None:
    """The newest finished audit with exactly these settings (a test audit may also come from a
    train audit's fold models), or None."""
    wanted = json.loads(json.dumps(spec.to_dict()))  # as status.json holds it: lists, not tuples
    as_train = {**wanted, "split": "train"}
    for run in list_runs(runs_dir):
        status = run.status()
        if status.get("kind") != AUDIT or status.get("state") != "finished":
            continue
        if not (run.path / RESULT_FILE).is_file():
            continue
        if status.get("audit") == wanted or (spec.split == "test" and not spec.checkpoint
                                             and status.get("audit") == as_train):
            return run
    return None


def result_for(spec: AuditSpec, run: Run) -> AuditResult:
    """The result of `spec` from a stored audit (the test split of a train audit included)."""
    stored = load_result(run)
    return stored.test_split() if spec.split == "test" and stored.split == "train" else stored


def execute_audit(run: Run, data_dir: str | Path | None = None, should_stop: Callable[[], bool] = lambda: False,
                  on_progress: AuditProgress = lambda fraction, text: None,
                  interrupted_because: Callable[[], str | None] = lambda: None) -> AuditResult | None:
    """Run the audit recorded in `run` here and now, reporting progress in its status; None if cancelled.

    Like `jobs.execute_run`: a failure is recorded in the status, never raised, and a stop that
    nobody asked for (`interrupted_because`, the server went away) is recorded as interrupted."""
    import os

    spec = audit_spec(run)
    run.update_status(state="running", pid=os.getpid(), started_at=time.time(), message="", phase="auditing",
                      progress=0.0)
    last = [0.0]
    start = time.perf_counter()

    def report(fraction: float, text: str) -> None:
        on_progress(fraction, text)
        if time.monotonic() - last[0] >= 0.5 or fraction >= 1:
            last[0] = time.monotonic()
            run.update_status(progress=round(fraction, 4), message=text.capitalize())

    stop = lambda: run.stop_requested() or should_stop() or interrupted_because() is not None  # noqa: E731
    try:
        if spec.split == "test" and spec.checkpoint:
            result = audit_test_with_checkpoint(spec, data_dir)
        else:
            result = cross_validate(spec, data_dir, report, stop)
        save_result(run, result)  # a train audit, kept whole: its test split serves a later test audit
        if spec.split == "test" and not spec.checkpoint:
            result = result.test_split()
    except AuditCancelled as stopped:
        reason = interrupted_because()
        if reason:
            run.update_status(**interrupted(reason, f"Nothing of the audit is kept ({stopped})."))
        else:
            run.update_status(state="cancelled", ended_at=time.time(), message=f"Stopped on request ({stopped}).")
        return None
    except Exception as error:  # noqa: BLE001 - recorded for the page and the CLI
        from mnist_core.train import failure_message

        run.update_status(state="failed", ended_at=time.time(), message=failure_message(error))
        return None
    run.update_status(state="finished", ended_at=time.time(), progress=1.0, seconds=time.perf_counter() - start,
                      out_of_sample_accuracy=result.out_of_sample_accuracy,
                      message=f"{result.out_of_sample_accuracy:.2f} % out-of-sample accuracy on the {spec.split} split")
    return result
