"""`export`: a run's curves read back by TensorBoard's own reader, and its model as ONNX, checked
with onnxruntime against PyTorch on the test digits (the real MNIST when MNIST_DATA_DIR holds it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mnist_core import export
from mnist_core.config import TrainConfig
from mnist_core.events import EpochEnd, Finished, Progress
from mnist_core.jobs import execute_run
from mnist_core.runs import create_run
from tests.conftest import missing_module, needs, real_data_dir, run_command

# tensorboardX and onnx are in requirements.txt; onnxruntime and tensorboard, the readers, in requirements-dev.txt.
pytestmark = needs(missing_module("tensorboardX", "onnx", "onnxruntime", "tensorboard",
                                  install="pip install -r requirements-dev.txt"))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_data_dir):
    run = create_run(TrainConfig(model="fast", epochs=2, batch_size=32, lr=0.003, train_subset=256),
                     tmp_path_factory.mktemp("runs"))
    execute_run(run, tiny_data_dir)
    return run


def test_tensorboard_reads_the_losses_accuracies_and_settings_back(finished_run, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = export.to_tensorboard(finished_run, tmp_path / "tb")
    reader = EventAccumulator(str(folder))
    reader.Reload()
    events = finished_run.events()
    progress = [e for e in events if isinstance(e, Progress)]
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    assert [round(s.value, 4) for s in reader.Scalars("train/loss")] == [round(e.loss, 4) for e in progress]
    assert [(s.step, round(s.value, 3)) for s in reader.Scalars("val/accuracy")] == [
        (e.epoch, round(e.val_accuracy, 3)) for e in epochs]
    assert [s.step for s in reader.Scalars("val/loss")] == [1, 2]
    finished = next(e for e in events if isinstance(e, Finished))
    assert reader.Scalars("test/accuracy")[0].value == pytest.approx(finished.test_accuracy, abs=1e-4)
    settings = EventAccumulator(str(folder / "hparams"))
    settings.Reload()
    content = b"".join(settings.PluginTagToContent("hparams").values())
    assert b"lr" in content and b"batch_size" in content  # the hyperparameters, in the HParams view


def test_the_onnx_model_takes_raw_pixels_and_agrees_with_pytorch(tmp_path, tiny_data_dir):
    data_dir = real_data_dir() or tiny_data_dir
    path = export.to_onnx("default", tmp_path / "model.onnx")
    check = export.check_onnx(path, "default", data_dir)
    print(f"\nONNX vs PyTorch on {check}")
    assert check["agreement"] >= 99.9 and check["max_probability_difference"] < 1e-3
    assert check["onnx_accuracy"] == pytest.approx(check["torch_accuracy"], abs=0.1)

    import numpy as np
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (pixels,), (probabilities,) = session.get_inputs(), session.get_outputs()
    assert (pixels.name, probabilities.name) == ("pixels", "probabilities")
    out = session.run(None, {"pixels": np.zeros((3, 1, 28, 28), np.float32)})[0]  # any batch size
    assert out.shape == (3, 10) and np.allclose(out.sum(1), 1, atol=1e-5)


def test_the_command_exports_both_and_says_what_is_missing(finished_run, tmp_path, tiny_data_dir, monkeypatch):
    def command(*args):
        return run_command("export", *args, "--runs-dir", finished_run.path.parent, "--data-dir", tiny_data_dir)

    done = command(finished_run.id, "--tensorboard", str(tmp_path / "tb"), "--onnx", str(tmp_path / "m.onnx"))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(result["tensorboard"]).is_dir() and Path(result["onnx"]).is_file()
    assert result["check"]["agreement"] >= 99.9
    nothing = command(finished_run.id)
    assert nothing.returncode == 2 and "--tensorboard DIR and/or --onnx FILE" in nothing.stderr
    unknown = command("no-such-run", "--onnx", str(tmp_path / "x.onnx"))
    assert unknown.returncode == 1 and "no run 'no-such-run'" in unknown.stderr and not (tmp_path / "x.onnx").exists()

    monkeypatch.setattr(export.importlib.util, "find_spec", lambda name: None)  # as without the packages
    with pytest.raises(export.ExportUnavailable, match="pip install -r requirements.txt"):
        export.to_onnx("default", tmp_path / "y.onnx")


def test_the_pages_downloads_hold_the_same_exports(finished_run, tmp_path):
    import io
    import zipfile

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with zipfile.ZipFile(io.BytesIO(export.tensorboard_zip(finished_run))) as archive:
        archive.extractall(tmp_path / "unzipped")
    reader = EventAccumulator(str(tmp_path / "unzipped" / finished_run.id))
    reader.Reload()
    assert {"train/loss", "val/loss", "val/accuracy"} <= set(reader.Tags()["scalars"])

    import numpy as np
    import onnxruntime

    session = onnxruntime.InferenceSession(export.onnx_bytes(finished_run.path), providers=["CPUExecutionProvider"])
    assert session.run(None, {"pixels": np.zeros((1, 1, 28, 28), np.float32)})[0].shape == (1, 10)
    assert export.available() is None
