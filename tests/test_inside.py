"""Inside the network: layer outputs equal a forward pass done by hand, the filters' shapes, the
embedding map (built, cached, invalidated, a new image placed, the CLI) and the views' pictures.

The map tests train a small `fast` model on the tiny dataset (200 test images: enough for
t-SNE's default perplexity of 30) and build its map for real with openTSNE.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mnist_core import embedding
from mnist_core.checkpoint import make_checkpoint, save_checkpoint
from mnist_core.config import TrainConfig
from mnist_core.data import CLASS_NAMES, load_split, normalize
from mnist_core.inference import probabilities
from mnist_core.inside import conv_filters, layer_outputs
from mnist_core.models import MODELS, build_model
from mnist_core.train import fit
from ui import inside_charts as charts

ROOT = Path(__file__).resolve().parent.parent
DIGITS = CLASS_NAMES["mnist"]


def digit_image(seed: int = 0) -> torch.Tensor:
    """A uint8 28x28 image: a bright bar on noise, so every layer has something to show."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 60, (28, 28), dtype=torch.uint8, generator=generator)
    image[6:22, 12:16] = 255
    return image


def fresh_model(name: str, channels_last: bool) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(name).eval()
    return model.to(memory_format=torch.channels_last) if channels_last else model  # as inference.load_model does


def by_hand(model: nn.Module, image: torch.Tensor) -> list[tuple[str, np.ndarray]]:
    """(kind, output) of each layer, applied one after the other by this test, not by the model."""
    x = normalize(image.reshape(1, 28, 28))
    seen: list[tuple[str, np.ndarray]] = []
    with torch.no_grad():
        if isinstance(model, nn.Sequential):
            for layer in model:
                x = layer(x)
                if not isinstance(layer, nn.Dropout):  # a no-op at inference: the views leave it out
                    seen.append((type(layer).__name__, x[0].clone().numpy()))  # clone: the next ReLU is in place
        else:  # the seed model: conv1 -> sigmoid -> conv2 -> sigmoid -> flatten -> linear1
            for kind, step in [
                ("Conv2d", model.conv1),
                ("Sigmoid", model.sigmoid),
                ("Conv2d", model.conv2),
                ("Sigmoid", model.sigmoid),
            ]:
                x = step(x)
                seen.append((kind, x[0].clone().numpy()))
            x = model.linear1(x.flatten(1))  # a tensor method, not a module: no layer of its own
            seen.append(("Linear", x[0].clone().numpy()))
    return seen


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels-last"])
@pytest.mark.parametrize("name", list(MODELS))
def test_layer_outputs_equal_a_forward_pass_by_hand(name, channels_last):
    model, image = fresh_model(name, channels_last), digit_image()
    layers = layer_outputs(model, image)
    expected = by_hand(model, image)
    assert [layer.kind for layer in layers[:-1]] == [kind for kind, _ in expected]
    for layer, (_, values) in zip(layers, expected):
        assert layer.shape == values.shape and layer.output.dtype == np.float32
        assert np.allclose(layer.output, values, atol=1e-5), layer.label
    if name == "seed":
        assert [layer.name for layer in layers] == ["conv1", "sigmoid", "conv2", "sigmoid#2", "linear1", "softmax"]
    last = layers[-1]
    assert last.name == "softmax" and last.shape == (10,) and last.parameters == 0
    assert last.output.sum() == pytest.approx(1.0, abs=1e-5)
    reference = probabilities(model, image.numpy() / 255)  # what Draw's prediction computes
    assert int(last.output.argmax()) == int(reference.argmax())
    assert np.allclose(last.output, reference, atol=1e-5)
    assert sum(layer.parameters for layer in layers) == sum(p.numel() for p in model.parameters())


def test_a_float_image_gives_the_same_layers_as_its_uint8_original():
    model, image = fresh_model("fast", False), digit_image(1)
    for as_uint8, as_float in zip(layer_outputs(model, image), layer_outputs(model, image.float() / 255)):
        assert np.allclose(as_uint8.output, as_float.output, atol=1e-5)


def test_layer_labels_name_the_layer_its_kind_shape_and_parameters():
    layers = layer_outputs(fresh_model("modern", False), digit_image())
    assert layers[0].is_map and layers[0].label == "1. Conv2d · 32×28×28 · 288 params"
    assert [layer.step for layer in layers] == list(range(1, len(layers) + 1))  # no number skipped (dropout)
    assert layers[-1].label == f"{len(layers)}. Softmax · 10 · 0 params"  # not "softmax · Softmax"
    seed = layer_outputs(fresh_model("seed", False), digit_image())
    assert seed[0].label == "1. Conv2d (conv1) · 3×26×26 · 30 params"  # a module's name when it is a word
    assert seed[3].label == "4. Sigmoid · 6×24×24 · 0 params"  # the shared sigmoid's second call


@pytest.mark.parametrize(
    ("name", "shapes"),
    [
        ("seed", [(3, 1, 3, 3), (6, 3, 3, 3)]),
        ("fast", [(8, 1, 5, 5), (32, 8, 3, 3)]),
        ("modern", [(32, 1, 3, 3), (64, 32, 3, 3), (128, 64, 3, 3)]),
    ],
)
def test_conv_filters_are_each_convolutions_weights_in_order(name, shapes):
    filters = conv_filters(fresh_model(name, False))
    assert [weights.shape for _, weights in filters] == shapes
    assert all(weights.dtype == np.float32 for _, weights in filters)


# ---------------------------------------------------------------- the embedding map


def train_checkpoint(path: Path, data_dir: Path) -> Path:
    torch.manual_seed(0)
    result = fit(TrainConfig(model="fast", epochs=1, batch_size=64, lr=0.003), data_dir=data_dir)
    assert result.model is not None
    save_checkpoint(path, make_checkpoint(result.model, TrainConfig(model="fast"), 1, {}))
    return path


@pytest.fixture(scope="module")
def trained(tiny_data_dir, tmp_path_factory) -> Path:
    return train_checkpoint(tmp_path_factory.mktemp("embedding") / "checkpoint.pt", tiny_data_dir)


@pytest.fixture(scope="module")
def built(trained, tiny_data_dir) -> embedding.EmbeddingMap:
    steps = []
    result = embedding.build_map(trained, tiny_data_dir, on_progress=lambda fraction, text: steps.append(fraction))
    assert steps[-1] == 1.0 and steps == sorted(steps)
    return result


def test_a_built_map_is_stored_beside_its_checkpoint_and_read_back(built, trained, tiny_data_dir):
    _, labels = load_split("mnist", False, tiny_data_dir)
    assert built.path == trained.with_name("checkpoint.pt.map-test.npz") and built.path.is_file()
    assert built.xy.shape == (len(labels), 2) and np.array_equal(built.labels, labels.numpy())
    cached = embedding.load_cached(trained, data_dir=tiny_data_dir)
    assert cached is not None
    assert np.array_equal(cached.xy, built.xy) and np.array_equal(cached.predictions, built.predictions)


def test_a_changed_checkpoint_makes_its_stored_map_stale(built, trained, tmp_path, tiny_data_dir):
    copy = tmp_path / "checkpoint.pt"
    shutil.copy2(trained, copy)
    shutil.copy2(built.path, copy.with_name(built.path.name))
    assert embedding.load_cached(copy, data_dir=tiny_data_dir) is not None  # same size and time: still valid
    stat = copy.stat()
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))  # touched
    assert embedding.load_cached(copy, data_dir=tiny_data_dir) is None
    torch.save({"something": "else"}, copy)  # rewritten: another size too
    assert embedding.load_cached(copy, data_dir=tiny_data_dir) is None


def test_a_map_built_on_other_test_images_is_not_read_back(built, trained, tiny_data_dir, tmp_path):
    from tests.conftest import tiny_digits, write_idx

    other = tmp_path / "other-data" / "MNIST" / "raw"
    other.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        shutil.copy(tiny_data_dir / "MNIST" / "raw" / name, other / name)
    write_idx(other, "t10k", *tiny_digits(len(built.labels), seed=99))  # as many test images, other digits
    assert embedding.load_cached(trained, data_dir=tiny_data_dir) is not None
    assert embedding.load_cached(trained, data_dir=tmp_path / "other-data") is None


def test_a_new_image_is_placed_inside_the_map_with_its_five_nearest(built, trained, tiny_data_dir):
    from mnist_core.inference import load_model

    model, config = load_model(trained)
    images, labels = load_split("mnist", False, tiny_data_dir)
    xy, nearest = embedding.place(built, model, images[7], config.dataset)
    assert xy.shape == (2,)
    assert (built.xy.min(0) <= xy).all() and (xy <= built.xy.max(0)).all()
    assert nearest.shape == (5,) and len(set(nearest.tolist())) == 5
    assert nearest[0] == 7  # a test image's nearest is itself
    _, others = embedding.place(built, model, images[7], config.dataset, leave_out=7)
    assert len(others) == 5 and 7 not in others and others[:4].tolist() == nearest[1:].tolist()  # still five
    assert (labels[nearest] == labels[7]).sum() >= 3  # the tiny digits are easy: its neighbours share its label


def test_the_embed_command_builds_then_reuses_the_map(trained, tiny_data_dir, tmp_path):
    copy = tmp_path / "model.pt"
    shutil.copy2(trained, copy)  # no map beside it yet
    command = [sys.executable, "-m", "mnist_core", "embed", str(copy), "--data-dir", str(tiny_data_dir)]
    results = []
    for _ in range(2):
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "MNIST_RUNS_DIR": str(tmp_path / "runs")})  # its training slot
        assert done.returncode == 0, done.stderr
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    first, second = results
    assert first["cached"] is False and second["cached"] is True
    assert first["path"] == second["path"] == str(copy.with_name("model.pt.map-test.npz"))
    assert first["seconds"] >= second["seconds"] >= 0
    with np.load(first["path"]) as stored:
        assert stored["xy"].shape == (200, 2) and stored["labels"].shape == stored["predictions"].shape == (200,)
    assert embedding.building_status(copy)["state"] == "finished"


# ---------------------------------------------------------------- the views' pictures and figures


def test_a_wide_layer_shows_its_first_32_channels_in_one_picture_that_fits_a_panel():
    maps = np.random.default_rng(0).normal(size=(128, 7, 7)).astype(np.float32)
    picture, shown = charts.feature_maps_picture(maps)
    assert shown == 32 and picture.dtype == np.uint8 and picture.shape[2] == 3
    assert picture.shape[1] <= charts.PANEL_WIDTH and picture.shape[0] <= charts.MAX_PICTURE_HEIGHT


def test_each_channel_is_scaled_to_its_own_range_and_a_flat_one_stays_dark():
    maps = np.stack([np.full((4, 4), 5.0), np.arange(16.0).reshape(4, 4) * 100])
    scaled = charts.scale_each(maps)
    assert (scaled[0] == 0).all() and scaled[1].min() == 0 and scaled[1].max() == 1


@pytest.mark.parametrize("shape", [(3, 26, 26), (32, 28, 28), (64, 14, 14), (128, 3, 3), (8, 12, 12), (1, 28, 28)])
def test_every_grid_fits_the_panel(shape):
    columns, factor = charts.grid_layout(*shape)
    count, height, width = shape
    rows = -(-count // columns)
    assert columns * (width * factor + charts.GAP) - charts.GAP <= charts.PANEL_WIDTH
    assert rows * (height * factor + charts.GAP) - charts.GAP <= charts.MAX_PICTURE_HEIGHT


def test_filters_over_several_inputs_are_summed_and_say_so():
    weights = np.random.default_rng(0).normal(size=(64, 32, 3, 3))
    _, shown, note = charts.filters_picture(weights)
    assert shown == 32 and note == "summed over its 32 input channels"
    assert charts.filters_picture(weights[:, :1])[2] == "one input channel"


def test_vectors_become_bars_and_long_ones_cells():
    bars = charts.bars_picture(np.array([1.0, -0.5, 0.25]))
    assert bars.shape[0] == charts.BAR_HEIGHT + 1 and bars.shape[1] <= charts.PANEL_WIDTH
    cells = charts.cells_picture(np.linspace(0, 1, 1152))
    assert cells.shape[1] <= charts.PANEL_WIDTH


def test_the_map_figure_colours_by_digit_rings_mistakes_and_stars_a_drawing():
    rng = np.random.default_rng(0)
    labels = np.arange(100) % 10
    predictions = labels.copy()
    predictions[[3, 14]] = 0  # two mistakes
    xy = rng.normal(size=(100, 2)).astype(np.float32)
    figure = charts.embedding_figure(
        xy,
        labels,
        predictions,
        rng.random(100),
        np.arange(100),
        DIGITS,
        star=(0.5, 0.5),
        nearest=np.array([1, 2, 3, 4, 5]),
    )
    names = [trace.name for trace in figure.data]
    assert names[:3] == ["0", "1", "2"] and "3 (mistakes)" in names and "4 (mistakes)" in names
    assert names[-3:] == ["mistake (ring)", "nearest", "your drawing"]
    assert all(trace.type == "scattergl" for trace in figure.data)
    rings = next(trace for trace in figure.data if trace.name == "3 (mistakes)")
    assert rings.marker.symbol == "circle-open" and rings.customdata[0][0] == 3 and list(rings.text) == ["0"]
    shown = np.concatenate(
        [np.asarray(trace.customdata)[:, 0] for trace in figure.data if trace.name[0].isdigit()]
    ).astype(int)
    assert sorted(shown.tolist()) == list(range(100))  # every point once, carrying its dataset index
    star = figure.data[-1]
    assert star.marker.symbol == "star" and (star.x[0], star.y[0]) == (0.5, 0.5)


def test_the_map_names_each_colour_under_mistakes_only_and_does_not_fade_on_a_click():
    labels = np.arange(100) % 10
    predictions = (labels + 1) % 10  # every image a mistake: "Mistakes only" shows only rings
    figure = charts.embedding_figure(np.zeros((100, 2)), labels, predictions, np.ones(100), np.arange(100), DIGITS)
    in_legend = [trace.name for trace in figure.data if trace.showlegend is not False]
    assert in_legend[:10] == list(DIGITS)  # each digit's colour named by its rings
    assert all(trace.unselected.marker.opacity in (0.75, 1.0) for trace in figure.data if trace.name[0].isdigit())
    hues = charts.DIGIT_COLOURS
    assert len(set(hues)) == 10 and hues[2] != hues[7]


def test_filtering_the_map_keeps_only_the_chosen_points():
    labels = np.arange(50) % 10
    figure = charts.embedding_figure(
        np.zeros((50, 2)), labels, labels, np.ones(50), np.flatnonzero(labels == 4), DIGITS
    )
    assert [trace.name for trace in figure.data] == ["4"]  # the legend names what is shown
    assert sum(len(trace.x) for trace in figure.data) == 5


@pytest.mark.parametrize(
    "customdata",
    [[42, 0.9], {"0": 42, "1": 0.9}],  # a list, or a typed array row as the browser serialises it
    ids=["list", "typed-array"],
)
def test_a_clicked_point_is_read_back_as_its_dataset_index(customdata):
    from types import SimpleNamespace

    from ui.inside_views import clicked_index

    star = {"curve_number": 22, "point_index": 0}  # the star carries no customdata: not an image
    state = SimpleNamespace(selection=SimpleNamespace(points=[star, {"customdata": customdata}]))
    assert clicked_index(state) == 42
    assert clicked_index(SimpleNamespace(selection=SimpleNamespace(points=[star]))) is None
