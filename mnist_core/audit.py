"""Label audit: find the images of a split whose given label is probably wrong.

It needs out-of-sample predicted probabilities: for each image, what models that never trained
on it think of it.

- **Training split:** K-fold cross-validation, `rounds` times. Each round shuffles the 60,000
  images (seeded) into K folds of its own; K models, each trained with `fit` on the other folds
  (`train_indices`), each judge their held-out fold. An image's probabilities are the average of
  its judgements over the rounds, then rescaled by one temperature fitted to them
  (`fit_temperature`) so that "90 % sure" means what it says. Each fold model also judges the
  10,000 test images, and their average is the test split's out-of-sample probabilities, for free.
  The defaults (2 rounds of 4 folds of the fast preset for 3 epochs: 8 models, about 35 s on 2
  CPU cores) were chosen by `bench/label_audit.py`; docs/label-audit.md has the comparison.
- **Test split:** any model trained on the training set (a checkpoint) judges it, or the fold
  models' average from a training-split audit.

**The ranking** (`rank`, RANKED_BY) is by self-confidence: the probability the models give the
given label, lowest first. Normalized margin (that probability minus the best other label's)
and confident learning's order (the confident joint's off-diagonal images first) were compared
on the same probabilities: self-confidence found as many clear errors in the top 100 as the
margin, more in the top 50, and is the easiest to explain.

**How many are wrong** (`estimate_label_errors`) is confident learning's estimate (Northcutt,
Jiang and Chuang, 2021, "Confident Learning: Estimating Uncertainty in Dataset Labels", JAIR 70):
the off-diagonal mass of the calibrated confident joint. That many images, from the top of the
ranking, are flagged. It is written out here in a few lines rather than taken from cleanlab,
which implements it but is AGPL-licensed, a licence this project must not take on (the app is
meant to be hosted).

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

from mnist_core.config import PRESETS, ConfigError, TrainConfig
from mnist_core.data import load_split
from mnist_core.events import Event, Failed, Progress
from mnist_core.job import interrupted
from mnist_core.runs import AUDIT, Run, create_run, list_runs
from mnist_core.storage import CacheDamaged, atomic_write_bytes, read_npz
from mnist_core.train import fit, logits_in_batches

SPLITS = ("train", "test")
DEFAULT_FOLDS = 4
MAX_FOLDS = 10
DEFAULT_ROUNDS = 2  # two cross-validations, each with its own folds and seeds, averaged
MAX_ROUNDS = 5
FOLD_EPOCHS = {"fast": 3}  # the fast preset's one epoch leaves its probabilities noisy; 3 fit in the minute
RESULT_FILE = "audit.npz"
AuditProgress = Callable[[float, str], None]  # (fraction done 0..1, what is happening)


class AuditCancelled(Exception):
    """The audit was stopped on request."""


class AuditFailed(Exception):
    """A fold model could not be trained; the message says why."""


def fold_config(preset: str) -> TrainConfig:
    """How an audit's fold models train when they train like `preset`: the preset, with the
    epochs of FOLD_EPOCHS where it names the preset."""
    config = TrainConfig.preset(preset)
    return config.replace(epochs=FOLD_EPOCHS[preset]) if preset in FOLD_EPOCHS else config


def preset_of(config: TrainConfig | dict) -> str | None:
    """The preset whose fold models train with `config` (a TrainConfig or its dict), or None."""
    wanted = json.loads(json.dumps(config.to_dict() if isinstance(config, TrainConfig) else config))
    return next((name for name in PRESETS if json.loads(json.dumps(fold_config(name).to_dict())) == wanted), None)


@dataclass(frozen=True)
class AuditSpec:
    """What to audit and how: the split, the config of the fold models, K, the rounds of K-fold
    cross-validation averaged, the fold seed."""

    split: str = "train"
    config: TrainConfig = fold_config("fast")
    folds: int = DEFAULT_FOLDS
    seed: int = 0
    checkpoint: str = ""  # test split only: a run folder, a .pt file or "default"; "" = the fold models' average
    rounds: int = DEFAULT_ROUNDS

    def validate(self) -> AuditSpec:
        if self.split not in SPLITS:
            raise ConfigError("split", f"{self.split!r} is not a split; choose train or test")
        if isinstance(self.folds, bool) or not isinstance(self.folds, int) or not 2 <= self.folds <= MAX_FOLDS:
            raise ConfigError("folds", f"must be a whole number from 2 to {MAX_FOLDS}, got {self.folds!r}")
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or not 1 <= self.rounds <= MAX_ROUNDS:
            raise ConfigError("rounds", f"must be a whole number from 1 to {MAX_ROUNDS}, got {self.rounds!r}")
        if self.checkpoint and self.split != "test":
            raise ConfigError("checkpoint", "only a test-split audit uses a checkpoint")
        if self.config.exclude or self.config.train_subset:
            raise ConfigError("config", "the fold models train on whole folds: no exclude or train_subset")
        self.config.validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"split": self.split, "config": self.config.to_dict(), "folds": self.folds, "seed": self.seed,
                "checkpoint": self.checkpoint, "rounds": self.rounds}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AuditSpec:
        return cls(split=values["split"], config=TrainConfig.from_dict(values["config"]), folds=values["folds"],
                   seed=values.get("seed", 0), checkpoint=values.get("checkpoint", ""),
                   rounds=values.get("rounds", 1))  # audits stored before rounds had one

    @property
    def models(self) -> int:
        """How many fold models the audit trains."""
        return 0 if self.checkpoint else self.folds * self.rounds


@dataclass
class AuditResult:
    split: str
    probabilities: np.ndarray  # [N, 10] float32, out of sample
    labels: np.ndarray  # [N] the given labels
    test_probabilities: np.ndarray | None = None  # a train audit's fold models' average on the test split
    test_labels: np.ndarray | None = None
    temperature: float = 1.0  # the probabilities were rescaled by it (`fit_temperature`); 1: as the models gave them

    def test_split(self) -> AuditResult:
        """A train audit's by-product: the test split, judged by the fold models' average."""
        return AuditResult("test", self.test_probabilities, self.test_labels, temperature=self.temperature)

    @property
    def ranking(self) -> dict[str, np.ndarray]:
        return rank(self.probabilities, self.labels)

    @property
    def out_of_sample_accuracy(self) -> float:
        return float((self.probabilities.argmax(1) == self.labels).mean() * 100)


RANKING_SCORES = ("self_confidence", "normalized_margin", "confident_learning")
RANKED_BY = "self_confidence"  # kept by bench/label_audit.py's comparison (docs/label-audit.md)


def rank(probabilities: np.ndarray, labels: np.ndarray, by: str = RANKED_BY) -> dict[str, np.ndarray]:
    """Every image of the split ranked, most suspicious first, by one of RANKING_SCORES:

    - `self_confidence`: the out-of-sample probability of the given label, lowest first;
    - `normalized_margin`: that probability minus the most probable other label's, lowest first;
    - `confident_learning`: the confident joint's off-diagonal images first, then by self-confidence.

    Returns arrays over the images, in image order: `suggested` (the most probable label other
    than the given one), `given_probability`, `suggested_probability`, `score` (higher is more
    suspicious), `flagged` (the first `estimated` images of the ranking), and `order` (the
    indices ranked) and `estimated` (a 0-d array: `estimate_label_errors`)."""
    if by not in RANKING_SCORES:
        raise ValueError(f"unknown ranking score {by!r}; choose one of {', '.join(RANKING_SCORES)}")
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    every = np.arange(len(labels))
    self_confidence = probabilities[every, labels]
    others = probabilities.copy()
    others[every, labels] = -1.0
    suggested = others.argmax(1)
    suggested_probability = probabilities[every, suggested]
    if by == "self_confidence":
        score = 1.0 - self_confidence
    elif by == "normalized_margin":
        score = suggested_probability - self_confidence  # -1..1
    else:
        score = (1.0 - self_confidence) + off_diagonal(probabilities, labels)
    order = np.lexsort((every, -score))  # highest score first; ties in image order
    estimated = estimate_label_errors(probabilities, labels)
    flagged = np.zeros(len(labels), dtype=bool)
    flagged[order[:estimated]] = True
    return {"order": order, "suggested": suggested, "given_probability": self_confidence,
            "suggested_probability": suggested_probability, "score": score, "flagged": flagged,
            "estimated": np.array(estimated)}


def _confident_labels(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Confident learning's confident label of each image, or -1 where no class is confident.

    Class j's threshold t_j is the mean predicted probability of j over the images labelled j
    (how sure the models are, on average, of class j's own images). An image's confident label is,
    among the classes whose probability reaches their threshold, the most probable one."""
    classes = probabilities.shape[1]
    self_confidence = probabilities[np.arange(len(labels)), labels]
    thresholds = np.array([self_confidence[labels == j].mean() if (labels == j).any() else 1.0
                           for j in range(classes)])
    reaching = probabilities >= thresholds
    return np.where(reaching.any(1), np.where(reaching, probabilities, -1.0).argmax(1), -1)


def off_diagonal(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """True for the images whose confident label is not their given label: the off-diagonal
    entries of confident learning's confident joint."""
    confident = _confident_labels(probabilities, labels)
    return (confident >= 0) & (confident != labels)


def estimate_label_errors(probabilities: np.ndarray, labels: np.ndarray) -> int:
    """How many labels of the split are likely wrong: the off-diagonal mass of confident
    learning's calibrated confident joint (Northcutt et al. 2021, section 3.1).

    The confident joint C[i, j] counts the images labelled i whose confident label is j. Each row
    is rescaled to the number of images labelled i (images with no confident label still count
    in their row's size), so the joint sums to the split's size; its off-diagonal sum is the
    estimate. Unlike counting the off-diagonal images, this does not hinge on each class's
    threshold alone: a row's share of confident off-diagonal images is applied to the whole class."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    classes = probabilities.shape[1]
    confident = _confident_labels(probabilities, labels)
    estimate = 0.0
    for given in range(classes):
        in_row = confident[labels == given]
        counted = in_row[in_row >= 0]
        if len(counted):
            estimate += (counted != given).mean() * (labels == given).sum()
    return int(round(estimate))


def why_suspected(given: int, suggested: int, given_probability: float, suggested_probability: float,
                  names: tuple[str, ...] | list[str]) -> str:
    """Why an image is a suspect, in plain words for a student."""
    sure = _percent(suggested_probability)
    if suggested_probability > given_probability:
        return (f"The models are {sure} sure this is {_a(names[suggested])}, but it is labelled "
                f"{names[given]} ({_percent(given_probability)}).")
    return (f"It is labelled {names[given]}, but the models give that only {_percent(given_probability)}; "
            f"their next guess is {names[suggested]} ({sure}).")


def _percent(probability: float) -> str:
    """A whole percentage, never a rounded 100 % or 0 %: the models are never certain."""
    if probability >= 0.995:
        return "over 99 %"
    if probability < 0.005:
        return "under 1 %"
    return f"{probability * 100:.0f} %"


def _a(name: str) -> str:
    """'a 4', 'an 8', 'a sneaker', 'an ankle boot'."""
    return f"an {name}" if name[:1].lower() in "aeio" or name[:1] == "8" else f"a {name}"


def fold_indices(size: int, folds: int, seed: int) -> list[np.ndarray]:
    """The K held-out folds: a seeded shuffle of 0..size-1, cut into K nearly equal parts."""
    order = np.random.default_rng(seed).permutation(size)
    return [np.sort(part) for part in np.array_split(order, folds)]


def cross_validate(spec: AuditSpec, data_dir: str | Path | None = None,
                   on_progress: AuditProgress = lambda fraction, text: None,
                   should_stop: Callable[[], bool] = lambda: False) -> AuditResult:
    """Out-of-sample probabilities of the training split (and the fold models' average on the test split).

    Each of `spec.rounds` rounds is a K-fold cross-validation with folds of its own (seed
    `spec.seed + round`) and models seeded apart; an image's probabilities are the average of
    its held-out judgements, one per round. Averaging models that differ smooths out any one
    model's quirks, so a clean but unusual digit is less often mistaken for a label error."""
    config = spec.config
    train_images, train_labels = load_split(config.dataset, True, data_dir, download_missing=False)
    test_images, test_labels = load_split(config.dataset, False, data_dir, download_missing=False)
    probabilities = np.zeros((len(train_labels), 10), dtype=np.float64)
    test_sum = np.zeros((len(test_images), 10), dtype=np.float64)
    everything = np.arange(len(train_labels))
    total = spec.models
    for round_ in range(spec.rounds):
        for fold, held_out in enumerate(fold_indices(len(train_labels), spec.folds, spec.seed + round_)):
            done = round_ * spec.folds + fold  # models finished before this one
            name = f"model {done + 1} of {total}"

            def on_event(event: Event, done=done, name=name) -> None:
                if isinstance(event, Progress):
                    within = ((event.epoch - 1) * event.steps_per_epoch + event.step) / (config.epochs * event.steps_per_epoch)
                    on_progress((done + within) / total, f"{name}: training")

            on_progress(done / total, f"{name}: starting")
            trained_on = np.setdiff1d(everything, held_out, assume_unique=True)
            result = fit(config.replace(seed=config.seed + done), on_event=on_event, should_stop=should_stop,
                         data_dir=data_dir, download_missing=False, train_indices=torch.from_numpy(trained_on))
            if should_stop():
                raise AuditCancelled(f"stopped during {name}")
            if isinstance(result.outcome, Failed) or result.model is None:
                raise AuditFailed(f"{name}: {getattr(result.outcome, 'message', 'no model')}")
            model = result.model
            probabilities[held_out] += _softmax(logits_in_batches(model, train_images[torch.from_numpy(held_out)],
                                                                  dataset=config.dataset))
            test_sum += _softmax(logits_in_batches(model, test_images, dataset=config.dataset))
            on_progress((done + 1) / total, f"{name}: done")
    labels = train_labels.numpy().astype(np.int64)
    temperature = fit_temperature(probabilities / spec.rounds, labels)
    return AuditResult("train", rescale(probabilities / spec.rounds, temperature).astype(np.float32), labels,
                       rescale(test_sum / total, temperature).astype(np.float32), test_labels.numpy().astype(np.int64),
                       temperature)


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T that makes `probabilities` honest: softmax(log p / T) with the lowest
    negative log-likelihood of the given labels (temperature scaling, Guo et al. 2017).

    Fitted on out-of-sample probabilities, so it cannot flatter the models. The fold models of
    the fast preset train with label smoothing, which keeps every probability below about 0.82
    on purpose; without this, "the models are 80 % sure" would understate them, and confident
    learning's per-class thresholds, and so its estimate, would be set by the smoothing, not by
    the data. T only sharpens or flattens: the most probable class of an image never changes."""
    logits = torch.log(torch.as_tensor(probabilities, dtype=torch.float64).clamp_min(1e-12))
    target = torch.as_tensor(labels, dtype=torch.int64)
    temperatures = np.exp(np.linspace(np.log(0.1), np.log(10.0), 121))  # 0.1..10, 4 % apart
    losses = [torch.nn.functional.cross_entropy(logits / t, target).item() for t in temperatures]
    return float(temperatures[int(np.argmin(losses))])


def rescale(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): the probabilities at temperature T."""
    logits = torch.log(torch.as_tensor(probabilities, dtype=torch.float64).clamp_min(1e-12))
    return torch.softmax(logits / temperature, 1).numpy()


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
                        labels=result.labels, order=ranking["order"], temperature=np.array(result.temperature), **extra)
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
    temperature = stored.get("temperature", np.array(1.0))  # absent from audits stored before it was fitted
    if temperature.shape != () or not np.isfinite(temperature) or temperature <= 0:
        raise CacheDamaged(name, "its temperature is not a positive number")
    return AuditResult(split, probabilities, labels, *test, temperature=float(temperature))


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
