"""The training engine: `fit(config, on_event, should_stop)`, a plain loop that reports events.

The loop is the case study's (zero_grad, forward, loss, backward, step) with what a real
tool needs around it: data resident on the device and reshuffled every epoch, an optional
schedule, mixed precision on CUDA, a progress event for every 0.2 s of steps
(`REPORT_EVERY_SECONDS`; on a GPU once it has trained them), validation after each epoch (one
pass over the 10,000 test images on a GPU), cancellation between any two steps, a NaN loss
reported as a failure, and an optional torch.compile. How each step runs is `train_steps`' job:
as Python, or on a GPU replayed from a CUDA graph. The time spent preparing either (compiling,
recording the graphs) is measured apart from the training time and reported as a `Compiled`
event.

The loop never waits for the GPU inside an epoch: each step's loss stays on the device, and
progress reports read it, and time the GPU's steps, when the GPU has got there
(`progress_windows`).

A run that diverges is stopped as a failure with advice, whether its loss becomes NaN or
infinite, blows up to a size no healthy run reaches (`LOSS_BLOWUP`), or leaves the model no
better than guessing after an epoch (`chance_level_problem`).

It knows nothing of its listeners: the CLI prints the events, the job runner writes them to
a run folder. `on_checkpoint(checkpoint)` is called after every epoch with a checkpoint dict.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnist_core.checkpoint import make_checkpoint
from mnist_core.config import TrainConfig
from mnist_core.data import Batches, ProgressCallback, load_split, normalize
from mnist_core.device import device_label, one_thread, resolve_device
from mnist_core.events import GRAPH_METHOD, Cancelled, Compiled, EpochEnd, Event, Failed, Finished, Progress, Started
from mnist_core.models import MODELS, PREPARE_IMAGES, build_model, count_parameters
from mnist_core.progress_windows import ProgressWindows
from mnist_core.storage import is_disk_full
from mnist_core.train_steps import (
    EagerSteps,
    GraphSteps,
    make_optimizer,
    make_scheduler,
    mark_compiled_step,
    mixed_precision,
    use_cuda_graphs,
)

REPORT_EVERY_SECONDS = 0.2
GUESSING_LOSS = math.log(10)  # cross-entropy of a model that gives each of the 10 classes 1/10
# A mean training loss no healthy run gets near: the case study's early spike (the highest
# report of any preset's first epoch) is about 18, while a learning rate of 10 reaches 1e15.
LOSS_BLOWUP = 1000.0
CHANCE_ACCURACY = 15.0  # percent: 10 % is guessing, a constant answer scores up to 11.35 % on MNIST's test set
CHANCE_MIN_STEPS = 50  # an epoch this short may honestly not have learned yet
COMPILE_BACKEND = "inductor"  # torch.compile's default; tests use "eager" to skip the C++ compiler
# torch.compile's mode. "auto": "reduce-overhead" (CUDA graphs) on a GPU, where a small model's
# step is bound by kernel launches (on an H200 it took the seed model from 25,000 images/s with
# the default mode to 36,000: bench/gpu.py), and the default mode elsewhere.
COMPILE_MODE = "auto"


@dataclass
class FitResult:
    outcome: Event  # Finished, Failed or Cancelled
    model: nn.Module | None = None
    epochs: list[EpochEnd] = field(default_factory=list)


def fit(
    config: TrainConfig,
    on_event: Callable[[Event], None] = lambda event: None,
    should_stop: Callable[[], bool] = lambda: False,
    data_dir: str | Path | None = None,
    on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
    on_download: ProgressCallback | None = None,
    download_missing: bool = True,
    train_indices: Sequence[int] | torch.Tensor | None = None,
) -> FitResult:
    """Train `config` and report through `on_event`; the last event is Finished, Failed or Cancelled.

    `train_indices` trains on those images of the training split only (a label audit's folds);
    `config.exclude` then leaves its images out of them, and `config.train_subset` keeps the first N.

    Raises ConfigError for an invalid config; every other problem, a listener's included,
    becomes a Failed outcome (reported to the listener when it can still take it).
    """
    config.validate()
    result = FitResult(outcome=Failed("training did not start"))
    try:
        _train(config, on_event, should_stop, data_dir, on_checkpoint, on_download, download_missing, train_indices,
               result)
    except Exception as error:  # noqa: BLE001 - the listener must learn of every failure
        result.outcome = Failed(failure_message(error))
    try:
        on_event(result.outcome)
    except Exception as error:  # noqa: BLE001 - a listener failing on the last event must not escape either
        if not isinstance(result.outcome, Failed):
            result.outcome = Failed(failure_message(error))
    return result


def failure_message(error: BaseException) -> str:
    """What a person is told when training stops on an exception.

    The project's own errors (a full disk, a missing or damaged dataset, a bad checkpoint) are
    written to be read as they are; anything else keeps its type name for the bug report."""
    if type(error).__module__.startswith("mnist_core."):
        return str(error)
    if is_disk_full(error):
        return f"The disk filled up while training: {error}"
    return f"{type(error).__name__}: {error}"


def chance_level_problem(epoch: EpochEnd, steps: int, lr: float) -> str | None:
    """Why an epoch's result means training diverged, or None.

    After a real epoch, a model no better than guessing on the validation images whose
    training loss is no lower than guessing's has not learned: its weights went astray."""
    if steps >= CHANCE_MIN_STEPS and epoch.val_accuracy <= CHANCE_ACCURACY and epoch.train_loss >= GUESSING_LOSS:
        return (f"After epoch {epoch.epoch} the model is no better than guessing ({epoch.val_accuracy:.1f} % "
                f"validation accuracy, training loss {epoch.train_loss:.3g}; guessing gives {GUESSING_LOSS:.2f}): "
                f"training diverged. {_smaller_lr_advice(lr)}")
    return None


def _smaller_lr_advice(lr: float) -> str:
    return f"Try a smaller learning rate than {lr:g}."


def training_indices(config: TrainConfig, size: int, train_indices=None) -> torch.Tensor | None:
    """Which images of the training split (of `size`) a run trains on, in order; None for all of them."""
    keep = None if train_indices is None else torch.as_tensor(train_indices, dtype=torch.long)
    if config.exclude:
        wanted = torch.ones(size, dtype=torch.bool)
        wanted[torch.as_tensor(config.exclude, dtype=torch.long)] = False
        keep = wanted.nonzero().squeeze(1) if keep is None else keep[wanted[keep]]
    if config.train_subset:
        keep = torch.arange(min(config.train_subset, size)) if keep is None else keep[: config.train_subset]
    return keep


def _train(config, on_event, should_stop, data_dir, on_checkpoint, on_download, download_missing, train_indices,
           result: FitResult) -> None:
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    device = resolve_device(config.device)
    train_images, train_labels = load_split(config.dataset, True, data_dir, download_missing, on_download)
    val_images, val_labels = load_split(config.dataset, False, data_dir, download_missing, on_download)
    keep = training_indices(config, len(train_labels), train_indices)
    if keep is not None:
        train_images, train_labels = train_images[keep], train_labels[keep]
    batches = Batches(
        train_images,
        train_labels,
        config.batch_size,
        device,
        config.dataset,
        augment=config.augment,
        generator=generator,
    )
    on_cuda = device.type == "cuda"
    # channels_last makes oneDNN (CPU) and cuDNN (GPU) convolutions up to 1.7x faster here.
    wide_convolutions = MODELS[config.model].channels_last and device.type in ("cpu", "cuda")
    memory_format = torch.channels_last if wide_convolutions else torch.contiguous_format
    model = build_model(config.model).to(device, memory_format=memory_format)
    result.model = model
    val_images = val_images.to(device)  # evaluated every epoch: sent to the device once
    prepare_start = time.perf_counter()
    prepare = MODELS[config.model].prepare
    if prepare:  # on one thread: it is small, and it meets the page's redraw after Start (device.one_thread)
        with one_thread():
            prepare(model, normalize(batches.images[:PREPARE_IMAGES], config.dataset))
    # Setting weights from the data is part of training: its time counts (milliseconds).
    prepare_seconds = time.perf_counter() - prepare_start
    loss_function = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    steps_per_epoch = len(batches)
    on_event(
        Started(
            device_label(device), config.model, count_parameters(model), config.epochs, steps_per_epoch,
            len(train_labels)
        )
    )
    steps, compile_seconds = _steps(config, model, loss_function, batches, memory_format, on_event)

    train_seconds = prepare_seconds
    images_seen = 0
    windows = ProgressWindows(device)
    for epoch in range(1, config.epochs + 1):
        model.train()
        epoch_start = last_report = time.perf_counter()
        windows.begin_epoch(train_seconds)
        steps.begin_epoch(batches.plan())
        first = report_images = 0  # the window of steps since the last report
        for index, size in enumerate(batches.batch_sizes()):
            if should_stop():
                result.outcome = Cancelled(epoch - 1)
                return
            steps.run(index)
            step, report_images = index + 1, report_images + size
            now = time.perf_counter()
            if now - last_report >= REPORT_EVERY_SECONDS or step == steps_per_epoch:
                windows.ask(steps.losses, first, step, report_images, (epoch, step))
                first, report_images, last_report = step, 0, now
            for window in windows.ready(wait=step == steps_per_epoch):
                at_epoch, at_step = window.info
                mean_loss = window.mean_loss
                if not math.isfinite(mean_loss) or mean_loss > LOSS_BLOWUP:
                    became = f"became {mean_loss}" if not math.isfinite(mean_loss) else f"reached {mean_loss:.3g}"
                    result.outcome = Failed(
                        f"The training loss {became} at epoch {at_epoch}, step {at_step}: training "
                        f"diverged. {_smaller_lr_advice(config.lr)}"
                    )
                    return
                on_event(Progress(at_epoch, at_step, steps_per_epoch, mean_loss, window.images_per_second,
                                  window.elapsed))
        if on_cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - epoch_start
        train_seconds += seconds
        images_seen += len(train_labels)
        val_loss, val_accuracy = _validate(model, val_images, val_labels, device, config.dataset)
        epoch_end = EpochEnd(epoch, steps.losses.sum().item() / steps_per_epoch, val_loss, val_accuracy, seconds)
        result.epochs.append(epoch_end)
        on_event(epoch_end)
        diverged = chance_level_problem(epoch_end, steps_per_epoch, config.lr)
        if diverged:  # its checkpoint would be worthless: the previous epoch's is kept
            result.outcome = Failed(diverged)
            return
        if on_checkpoint:
            metrics = {"val_loss": val_loss, "val_accuracy": val_accuracy, "train_seconds": train_seconds}
            on_checkpoint(make_checkpoint(model, config, epoch, metrics))
    # The case study validates on MNIST's 10,000 test images, so the last epoch's
    # validation accuracy is the test accuracy.
    result.outcome = Finished(
        result.epochs[-1].val_accuracy, train_seconds, images_seen / train_seconds, config.epochs, compile_seconds
    )


def _steps(config, model, loss_function, batches: Batches, memory_format, on_event) -> tuple[Any, float]:
    """How the run's steps run (train_steps), and the seconds spent preparing them before training:
    recording CUDA graphs, or torch.compile's warm-up. Either is reported as a Compiled event."""
    total_steps = config.epochs * len(batches)
    if use_cuda_graphs(config, batches.device):
        start = time.perf_counter()
        try:
            steps = GraphSteps(config, model, loss_function, batches, memory_format, total_steps)
        except Exception as error:  # noqa: BLE001 - the eager loop trains the same model, only slower
            headline = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            warnings.warn(f"Recording the training step as a CUDA graph failed ({headline}); "
                          "training without CUDA graphs", stacklevel=2)
        else:
            seconds = time.perf_counter() - start
            on_event(Compiled(seconds, GRAPH_METHOD))
            return steps, seconds
    optimizer = make_optimizer(config, model)
    scheduler = make_scheduler(config, optimizer, total_steps)
    autocast, scaler = mixed_precision(batches.device)
    train_model, seconds = model, 0.0  # what the steps call: the model itself, or its compiled form
    if config.compile_model:
        train_model, seconds = _compile(model, batches, loss_function, autocast, memory_format)
        on_event(Compiled(seconds))
    return EagerSteps(batches, train_model, optimizer, scheduler, scaler, autocast, loss_function, memory_format,
                      compiled=config.compile_model), seconds


def compile_mode(device: torch.device) -> str | None:
    """torch.compile's mode for training on `device` (see COMPILE_MODE); None is its default."""
    if COMPILE_MODE == "auto":
        return "reduce-overhead" if device.type == "cuda" else None
    return COMPILE_MODE


def _compile(model, batches: Batches, loss_function, autocast, memory_format) -> tuple[nn.Module, float]:
    """The model under torch.compile, already compiled for every batch shape the epoch has.

    torch.compile works lazily on the first call, and again for the last, smaller batch, so
    untimed, that work would land in the first and last steps. Here it happens up front on
    the first images (forward and backward, no optimizer step); the gradients and batch-norm
    statistics of those passes are then thrown away, so training starts from the same state.
    """
    mode = compile_mode(batches.device)
    compiled = torch.compile(model, backend=COMPILE_BACKEND, mode=mode, dynamic=False)  # fixed shapes: fastest kernels
    saved_buffers = {name: buffer.clone() for name, buffer in model.named_buffers()}
    sizes = {min(batches.batch_size, len(batches.labels)), len(batches.labels) % batches.batch_size} - {0}
    # CUDA graphs are recorded on a shape's second pass and replayed from its third.
    passes = 3 if mode in ("reduce-overhead", "max-autotune") else 1
    start = time.perf_counter()
    try:
        for size in [size for size in sorted(sizes, reverse=True) for _ in range(passes)]:
            images = normalize(batches.images[:size], batches.dataset).contiguous(memory_format=memory_format)
            mark_compiled_step()
            with autocast:
                loss = loss_function(compiled(images), batches.labels[:size])
            loss.backward()
            model.zero_grad(set_to_none=True)  # a gradient kept to the next pass would outlive its CUDA graph
        if batches.device.type == "cuda":
            torch.cuda.synchronize()
    except Exception as error:  # noqa: BLE001 - a compiler problem must read as one
        headline = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RuntimeError(f"torch.compile failed ({headline}); train without compiling instead") from error
    seconds = time.perf_counter() - start
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            buffer.copy_(saved_buffers[name])
    return compiled, seconds


@torch.inference_mode()
def logits_in_batches(
    model: nn.Module,
    images: torch.Tensor,
    device: torch.device | None = None,
    dataset: str = "mnist",
    batch_size: int = 2000,
) -> torch.Tensor:
    """Logits [N, 10] for uint8 images [N, 28, 28], in eval mode, without tracking gradients.

    Validation's pass, and every later one over a whole split (evaluation, the audit, the map)."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    outputs = []
    try:
        with autocast:
            for start in range(0, len(images), batch_size):
                batch = normalize(images[start : start + batch_size].to(device), dataset)
                outputs.append(model(batch).float())
    finally:  # e.g. out of GPU memory: the model goes back to training mode all the same
        model.train(was_training)
    return torch.cat(outputs)


def _validate(model, images, labels, device, dataset) -> tuple[float, float]:
    # One pass on a GPU: the deep model's activations for 10,000 images peak at about 1.5 GB in
    # bf16. Batches of 2,000 on a GPU without that much free, and on a CPU.
    logits = None
    if device.type == "cuda":
        try:
            logits = logits_in_batches(model, images, device, dataset, batch_size=len(images))
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
    if logits is None:
        logits = logits_in_batches(model, images, device, dataset)
    logits = logits.float()
    labels = labels.to(logits.device)
    loss = nn.functional.cross_entropy(logits, labels).item()
    accuracy = (logits.argmax(1) == labels).float().mean().item() * 100
    return loss, accuracy
