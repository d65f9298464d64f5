"""A run out of the studio, into the tools people already use: TensorBoard and ONNX.

- `to_tensorboard(run, folder)` writes TensorBoard event files with tensorboardX (MIT, a small
  writer without TensorFlow): the training loss at every progress report (by step), the
  validation loss and accuracy after each epoch (by epoch), the test accuracy at the end, and the
  hyperparameters in TensorBoard's HParams view. `tensorboard --logdir FOLDER` shows them.
- `to_onnx(checkpoint, file)` writes the model as ONNX with its input and output as a web page
  has them: a float batch `pixels` [N, 1, 28, 28] with values 0..1 (0 = background, as in
  MNIST's files and a canvas's ink), and `probabilities` [N, 10]. The dataset's normalization
  and the softmax are inside the graph. `check_onnx` runs it with onnxruntime on the test split
  and counts how often it agrees with PyTorch.

tensorboardX and onnx are in requirements.txt; an install without them still runs, and these
functions then raise ExportUnavailable, which says what to install.
"""

from __future__ import annotations

import importlib.util
import io
import tempfile
import warnings
import zipfile
from pathlib import Path

import torch

from mnist_core.data import NORMALIZATION
from mnist_core.events import EpochEnd, Finished, Progress
from mnist_core.runs import Run

ONNX_OPSET = 17
INSTALL = "pip install -r requirements.txt"


class ExportUnavailable(RuntimeError):
    """A package the export needs is not installed; the message says which and how to install it."""


def _require(module: str, purpose: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ExportUnavailable(f"{purpose} needs the {module} package: {INSTALL}")


def to_tensorboard(run: Run, folder: str | Path) -> Path:
    """Write `run`'s curves and settings as TensorBoard event files under `folder/<run id>`; returns
    that folder."""
    _require("tensorboardX", "TensorBoard export")
    from tensorboardX import SummaryWriter

    config = run.config
    target = Path(folder) / run.id
    events = run.events()
    finished = next((e for e in events if isinstance(e, Finished)), None)
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    with SummaryWriter(logdir=str(target)) as writer:
        for event in events:
            if isinstance(event, Progress):
                step = (event.epoch - 1) * event.steps_per_epoch + event.step
                writer.add_scalar("train/loss", event.loss, step, walltime=None)
                writer.add_scalar("train/images_per_second", event.images_per_second, step)
            elif isinstance(event, EpochEnd):
                writer.add_scalar("val/loss", event.val_loss, event.epoch)
                writer.add_scalar("val/accuracy", event.val_accuracy, event.epoch)
                writer.add_scalar("train/epoch_loss", event.train_loss, event.epoch)
        if finished is not None:
            writer.add_scalar("test/accuracy", finished.test_accuracy, finished.epochs)
        hparams = {key: (value if isinstance(value, (int, float, str, bool)) else str(value))
                   for key, value in config.to_dict().items() if key != "exclude"}
        hparams["left_out"] = len(config.exclude)
        metrics = {"hparam/test_accuracy": finished.test_accuracy if finished else float("nan"),
                   "hparam/best_val_accuracy": max((e.val_accuracy for e in epochs), default=float("nan"))}
        writer.add_hparams(hparams, metrics, name="hparams")
    return target


class _Deployable(torch.nn.Module):
    """0..1 pixels in, probabilities out: the dataset's normalization and the softmax in the graph."""

    def __init__(self, model: torch.nn.Module, dataset: str) -> None:
        super().__init__()
        self.model = model
        mean, std = NORMALIZATION[dataset]
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("std", torch.tensor(std))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model((pixels - self.mean) / self.std), dim=1)


def tensorboard_zip(run: Run) -> bytes:
    """`to_tensorboard`'s files as one zip (the pages' download): unzip, then
    `tensorboard --logdir` the folder it made."""
    with tempfile.TemporaryDirectory(prefix="mnist-tensorboard-") as scratch:
        folder = to_tensorboard(run, scratch)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(scratch))
        return buffer.getvalue()


def to_onnx(checkpoint: str | Path, file: str | Path) -> Path:
    """Write the checkpoint's model (a run folder, a .pt file or "default") as ONNX to `file`,
    written whole or not at all; returns the file."""
    from mnist_core.storage import atomic_write_bytes

    data = onnx_bytes(checkpoint)
    path = Path(file)
    atomic_write_bytes(path, lambda out: out.write(data), needed_bytes=len(data))
    return path


def onnx_bytes(checkpoint: str | Path) -> bytes:
    """The checkpoint's model as an ONNX file's bytes (see the module docstring for its input and output)."""
    _require("onnx", "ONNX export")
    from mnist_core.inference import load_model, resolve_checkpoint

    model, config = load_model(resolve_checkpoint(checkpoint))
    deployable = _Deployable(model, config.dataset).eval()
    example = torch.rand(2, 1, 28, 28)
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter announces its own deprecation
        warnings.simplefilter("ignore")
        torch.onnx.export(deployable, (example,), buffer, dynamo=False, opset_version=ONNX_OPSET,
                          input_names=["pixels"], output_names=["probabilities"],
                          dynamic_axes={"pixels": {0: "batch"}, "probabilities": {0: "batch"}})
    return buffer.getvalue()


def available() -> str | None:
    """None when both exports can be made here, else what to install, in words (for a page)."""
    missing = [module for module in ("tensorboardX", "onnx") if importlib.util.find_spec(module) is None]
    return f"Exports need {' and '.join(missing)}: {INSTALL}" if missing else None


def check_onnx(file: str | Path, checkpoint: str | Path, data_dir: str | Path | None = None) -> dict:
    """Run the ONNX file with onnxruntime on the test split beside the PyTorch checkpoint: how many
    images, the share on which both predict the same class (percent), the largest probability
    difference, and each one's accuracy."""
    _require("onnxruntime", "Checking an ONNX export")
    import numpy as np
    import onnxruntime

    from mnist_core.data import load_split
    from mnist_core.evaluate import evaluate
    from mnist_core.inference import load_model, resolve_checkpoint

    path = resolve_checkpoint(checkpoint)
    config = load_model(path)[1]
    images, labels = load_split(config.dataset, False, data_dir, download_missing=False)
    pixels = (images.float() / 255).unsqueeze(1).numpy()
    session = onnxruntime.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    onnx_probabilities = np.concatenate([session.run(None, {"pixels": pixels[start:start + 2000]})[0]
                                         for start in range(0, len(pixels), 2000)])
    torch_result = evaluate(path, False, data_dir)
    labels = labels.numpy()
    return {
        "images": len(labels),
        "agreement": float((onnx_probabilities.argmax(1) == torch_result.predictions).mean() * 100),
        "max_probability_difference": float(np.abs(onnx_probabilities - torch_result.probabilities).max()),
        "onnx_accuracy": float((onnx_probabilities.argmax(1) == labels).mean() * 100),
        "torch_accuracy": torch_result.accuracy,
    }
