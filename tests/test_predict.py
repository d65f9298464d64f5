"""predict: a drawing in, ten probabilities out, from a module, a checkpoint, a run folder or the default."""

import numpy as np
import pytest
import torch

import mnist_core.inference
from mnist_core.checkpoint import make_checkpoint, save_checkpoint
from mnist_core.config import TrainConfig
from mnist_core.data import normalize
from mnist_core.device import one_thread
from mnist_core.inference import predict, probabilities, resolve_model, saliency
from mnist_core.models import build_model
from mnist_core.preprocess import canvas_to_mnist


def drawing() -> np.ndarray:
    """A 280x280 RGBA canvas, strokes only in the alpha channel (the canvas's default), off-centre."""
    canvas = np.zeros((280, 280, 4), dtype=np.uint8)
    canvas[40:60, 150:250, 3] = 255  # the bar of a '7'
    for row in range(60, 200):
        column = 240 - (row - 60) // 2
        canvas[row, column - 9 : column + 9, 3] = 255
    return canvas


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("modern").eval()  # batch norm: eval mode matters


@pytest.fixture
def checkpoint(tmp_path, model):
    path = tmp_path / "run" / "checkpoint.pt"
    path.parent.mkdir()
    save_checkpoint(path, make_checkpoint(model, TrainConfig(model="modern"), 1, {}))
    return path


def expected(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """The reference: preprocess, normalise as in training, softmax of the logits."""
    with torch.no_grad():
        logits = model(normalize(torch.from_numpy(canvas_to_mnist(image))[None]))
    return torch.softmax(logits, 1)[0].numpy()


def test_predict_gives_ten_probabilities_matching_the_reference(model):
    result = predict(drawing(), model)
    assert result.shape == (10,) and np.issubdtype(result.dtype, np.floating)
    assert result.sum() == pytest.approx(1, abs=1e-9) and result.min() >= 0
    np.testing.assert_allclose(result, expected(model, drawing()), atol=1e-5)


def test_a_checkpoint_file_a_run_folder_and_the_default_give_the_same_answer(model, checkpoint, monkeypatch):
    reference = predict(drawing(), model)
    np.testing.assert_allclose(predict(drawing(), str(checkpoint)), reference, atol=1e-5)
    np.testing.assert_allclose(predict(drawing(), checkpoint.parent), reference, atol=1e-5)
    monkeypatch.setattr(mnist_core.inference, "DEFAULT_MODEL_PATH", checkpoint)
    np.testing.assert_allclose(predict(drawing()), reference, atol=1e-5)
    np.testing.assert_allclose(predict(drawing(), "default"), reference, atol=1e-5)


def test_a_missing_default_model_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist_core.inference, "DEFAULT_MODEL_PATH", tmp_path / "none.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        predict(drawing())


def test_an_empty_canvas_gives_none(model):
    assert predict(np.zeros((280, 280, 4), dtype=np.uint8), model) is None


def test_a_model_in_training_mode_is_used_in_eval_mode_and_left_as_it_was(model):
    reference = predict(drawing(), model)
    model.train()
    try:
        np.testing.assert_allclose(predict(drawing(), model), reference, atol=1e-6)
        assert model.training
    finally:
        model.eval()


def test_resolve_model_reports_the_dataset(model, checkpoint):
    assert resolve_model(model) == (model, "mnist")
    network, dataset = resolve_model(checkpoint)
    assert isinstance(network, torch.nn.Module) and dataset == "mnist"


def test_one_thread_restores_the_thread_count():
    before = torch.get_num_threads()  # 1 in the tests (tests/conftest.py): start from two
    torch.set_num_threads(2)
    try:
        with one_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_saliency_of_the_drawing(model):
    pixels = canvas_to_mnist(drawing())
    attribution = saliency(model, pixels, int(probabilities(model, pixels).argmax()))
    assert attribution.shape == (28, 28) and np.abs(attribution).max() == pytest.approx(1)
    assert np.all(attribution[pixels == 0] == 0)  # blank pixels changed nothing, so get no credit


def test_predict_is_reachable_from_the_package():
    import mnist_core
    from mnist_core.inference import predict

    assert mnist_core.predict is predict
