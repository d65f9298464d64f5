"""Inside the network: one image's path through a model's layers, the learned filters, and the
embedding map of the test images, as views the Inside and Draw pages share.

The work is done in mnist_core (`inside.layer_outputs`, `inside.conv_filters`, `embedding.*`)
and the pictures are made in ui.inside_charts; this module lays them out. The strip and the
map are fragments, so a click inside one (the filters toggle, a point on the map, a filter)
redraws that view alone, not the page (or the canvas) around it.

A map is built once per checkpoint (t-SNE, a minute or two on a small CPU) in a background
process that `embedding.start_build` starts. Until it is there the view shows a progress bar,
polled once a second, and a PCA preview of the same points as soon as a thread has made it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import streamlit as st
import torch
from torch import nn

from mnist_core import embedding
from mnist_core.config import TrainConfig
from mnist_core.data import CLASS_NAMES, CLASS_NOUN, DatasetCorrupt, DatasetMissing, load_split
from mnist_core.device import one_thread
from mnist_core.embedding import EmbeddingMap
from mnist_core.inference import file_key, load_model, resolve_checkpoint
from mnist_core.inside import LayerOutput, conv_filters, layer_outputs
from mnist_core.job import ACTIVE_STATES, MAP
from mnist_core.policy import QuotaExceeded
from mnist_core.storage import CacheDamaged, plain_error
from ui import inside_charts as charts
from ui.glossary import explain
from ui.hosted import visitor
from ui.mistakes_charts import thumbnail
from ui.state import runner

NEAREST_SCALE = 3  # 84-pixel thumbnails: five fit beside the map on a laptop, in a row on a phone
DETAIL_SCALE = 6  # the clicked image, 168 pixels


def as_tensor(image28: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A 28x28 image as the models' helpers take it: uint8 stays uint8, anything else is 0..1 float."""
    array = np.asarray(image28)
    return torch.from_numpy(array.copy() if array.dtype == np.uint8 else array.astype(np.float32)).reshape(28, 28)


def as_uint8(image28: np.ndarray | torch.Tensor) -> np.ndarray:
    array = np.asarray(image28)
    return array if array.dtype == np.uint8 else (np.clip(array, 0, 1) * 255).round().astype(np.uint8)


def show_picture(picture: np.ndarray, caption: str | None = None) -> None:
    """At its own pixel width (never stretched, so sharp pixels stay sharp)."""
    st.image(picture, caption=caption, output_format="PNG", width=int(picture.shape[1]))


# ---------------------------------------------------------------- the layers, left to right


@st.fragment
def activations_strip(
    model: nn.Module, config: TrainConfig, image28: np.ndarray | torch.Tensor, key: str = "inside"
) -> None:
    """Every layer's output for one image, in the order the layers run, or (toggle) the filters."""
    if st.toggle(
        "Show learned filters",
        key=f"{key}_filters",
        help="The convolutions' weights instead of what they make of this image.",
    ):
        filters_row(model)
    else:
        layers_row(model, config, image28, key)


def layers_row(model: nn.Module, config: TrainConfig, image28: np.ndarray | torch.Tensor, key: str) -> None:
    with one_thread():  # one small image: a second thread only waits (see device.one_thread)
        layers = layer_outputs(model, as_tensor(image28), config.dataset)
    st.caption(
        "Each layer's output for this image, in the order the layers run. Feature maps: one tile per "
        "channel, each scaled to its own range, dark purple low to yellow high. Vectors: indigo bars up "
        "for positive values, red bars down for negative ones.",
        help=explain("Layer types", 2),  # what Conv2d, ReLU, MaxPool2d, ... and "params" mean
    )
    with st.container(horizontal=True, gap="small"):
        for layer in layers:
            with st.container(width=charts.PANEL_WIDTH, gap="xsmall"):
                layer_panel(layer, CLASS_NAMES[config.dataset], key)


def layer_panel(layer: LayerOutput, names: tuple[str, ...], key: str) -> None:
    st.caption(f"**{layer.label}**")
    values = layer.output
    if layer.name == "softmax":
        predicted = int(values.argmax())
        st.plotly_chart(charts.probability_bars_figure(values), key=f"{key}_softmax", config={"staticPlot": True})
        st.caption(f"The answer: **{names[predicted]}**, {values[predicted]:.0%} sure")
    elif layer.is_map:
        picture, shown = charts.feature_maps_picture(values)
        show_picture(picture)
        if shown < layer.shape[0]:
            st.caption(f"first {shown} of {layer.shape[0]} channels")
    elif values.size <= charts.MAX_BARS:
        show_picture(charts.bars_picture(values))
        if values.size == len(names):  # the last layer's scores, which the softmax turns into chances
            st.caption(f"One score per class: {names[0]} on the left to {names[-1]} on the right")
    else:
        show_picture(charts.cells_picture(values))
        st.caption(f"{values.size:,} values, row after row, one colour scale")


def filters_row(model: nn.Module) -> None:
    filters = conv_filters(model)
    if not filters:
        st.info("This model has no convolutions, so no filters to show.")
        return
    st.caption(
        "Each convolution's learned filters (its weights): red positive, blue negative, white zero, each "
        "filter scaled to its own largest weight."
    )
    with st.container(horizontal=True, gap="small"):
        for name, weights in filters:
            out, _, height, width = weights.shape
            picture, shown, note = charts.filters_picture(weights)
            with st.container(width=charts.PANEL_WIDTH, gap="xsmall"):
                st.caption(f"**{name} · {out} filters of {height}×{width}**, {note}")
                show_picture(picture)
                if shown < out:
                    st.caption(f"first {shown} of {out} filters")


# ---------------------------------------------------------------- the embedding map


@st.cache_resource(show_spinner=False, max_entries=4)
def stored_map(checkpoint: str, checkpoint_version: tuple, map_version: tuple,
               data_dir: str | None) -> EmbeddingMap | None:
    """A checkpoint's map, read once per version of it and of the map file (None when it was built
    on other test images). A resource, not data: the pages only read it, and copying its
    10,000 x 50 features on every rerun would cost more."""
    return embedding.load_cached(checkpoint, data_dir=data_dir)


def current_map(checkpoint: Path, data_dir: str | None) -> EmbeddingMap | None:
    target = embedding.map_path(checkpoint)
    try:
        stat = target.stat()
    except OSError:
        return None
    return stored_map(str(checkpoint), file_key(checkpoint)[1:], (stat.st_mtime_ns, stat.st_size), data_dir)


# The server's previews: one thread, and the last two previews, made once per process. Neither is
# in Streamlit's resource cache, which any client can clear: each clearing would then leave a
# thread behind, or queue the same 20-second preview again for every rerun that follows.
_PREVIEWS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="map-preview")
_PREVIEW_JOBS: OrderedDict[tuple, Future] = OrderedDict()
_PREVIEW_JOBS_KEPT = 2
_preview_jobs_lock = threading.Lock()


def preview_job(checkpoint: str, checkpoint_version: tuple, data_dir: str | None) -> Future:
    """The PCA preview, computed in a thread so that the page and its progress bar stay live: it
    runs the model over the 10,000 test images, as the build does at the same time, which takes
    about 20 s on two busy cores. One per version of the checkpoint, shared by every session."""
    key = (checkpoint, checkpoint_version, data_dir)
    with _preview_jobs_lock:
        job = _PREVIEW_JOBS.get(key)
        if job is None:
            job = _PREVIEW_JOBS[key] = _PREVIEWS.submit(one_thread_preview, checkpoint, data_dir)
            while len(_PREVIEW_JOBS) > _PREVIEW_JOBS_KEPT:
                _PREVIEW_JOBS.popitem(last=False)
        _PREVIEW_JOBS.move_to_end(key)
        return job


def one_thread_preview(checkpoint: str, data_dir: str | None) -> EmbeddingMap:
    with one_thread():  # the other core is the build's: two threads here would slow both
        return embedding.preview(checkpoint, data_dir)


@st.fragment(run_every=1.0)
def build_progress(checkpoint: str, preview: Future | None) -> None:
    """The build's progress bar, redrawn every second. The page reruns when the build is over
    (the map, or why it failed, replaces this) and when the preview it waits for is ready."""
    status = embedding.building_status(checkpoint) or {}
    if status.get("state") not in ACTIVE_STATES or (preview is not None and preview.done()):
        st.rerun()  # from a fragment this reruns the app
    st.progress(float(status.get("progress", 0.0)), text=f"Building the map: {status.get('message', 'starting')}…")


def embedding_map(
    checkpoint: str | Path,
    data_dir: str | Path | None,
    image28: np.ndarray | torch.Tensor | None = None,
    highlight: int | None = None,
    key: str = "inside_map",
    star_name: str = charts.STAR_NAME,
    on_inspect: Callable[[int], None] | None = None,
) -> None:
    """The test images laid out in 2-D as the model sees them, with filters, a clicked image's detail,
    and `image28` as a star with its nearest test images.

    `highlight`: the dataset index of `image28` when it is a test image itself; the star then sits
    on its own point and it is left out of its nearest. `on_inspect(index)`, where given, is
    offered as a button under a clicked image (the Inside page inspects it).
    """
    path = resolve_checkpoint(checkpoint)
    data_dir = None if data_dir is None else str(data_dir)
    try:
        model, config = load_model(path)
        images, labels = load_split(config.dataset, train=False, data_dir=data_dir, download_missing=False)
        try:
            shown = current_map(path, data_dir)  # None too when it was built on other test images
        except CacheDamaged as damaged:  # the core moved it aside: from here on it is a map not built yet
            st.warning(
                f"{embedding.damaged_note(path, damaged)}. It was set aside; the map has to be built again.",
                icon=":material/warning:",
            )
            shown = None
        if shown is None:
            status = embedding.building_status(path) or {}
            if status.get("state") not in ACTIVE_STATES:
                offer_build(path, data_dir, status, key)
                return
            job = preview_job(str(path), file_key(path)[1:], data_dir)
            done = job.done()  # once: the fragment must wait for the preview exactly when it is not shown
            build_progress(str(path), None if done else job)
            if not done:
                st.caption("A quick preview appears here once the model has read the 10,000 test images (up to a minute on a "
                           "2-core machine), and the map itself when it is built.")
                return
            if job.exception() is not None:  # no preview then; the build reads the same data and says why
                return
            shown = job.result()
            st.caption(
                "Meanwhile a quick stand-in: the first two principal components of the same features. "
                "The map replaces it by itself when it is ready."
            )
    except (DatasetMissing, DatasetCorrupt) as error:
        st.info(f"The map needs the test images. {plain_error(error)}", icon=":material/cloud_off:")
        return
    map_view(shown, model, config, images, image28, highlight, key, star_name, on_inspect)


def offer_build(path: Path, data_dir: str | None, status: dict, key: str) -> None:
    refused = st.session_state.pop(f"{key}_build_error", None)
    if refused:
        st.error(f"The map could not be started: {refused}", icon=":material/error:")
    elif status.get("state") == "failed":
        st.warning(f"Building the map failed: {status.get('message')}", icon=":material/error:")
    elif status.get("state") == "interrupted":  # the message says why, e.g. "Interrupted: the server stopped."
        st.warning(f"The map's last build did not finish. {status.get('message')}", icon=":material/error:")
    busy = runner().start_problem(visitor().id, MAP)  # a shared demo's limits, said before the click
    st.button(
        "Build the map (a minute or two)",
        key=f"{key}_build",
        icon=":material/scatter_plot:",
        on_click=build,
        args=(path, data_dir, key),
        disabled=busy is not None,
        help=busy,
    )
    st.caption(
        "The map places the 10,000 test images by how alike the model sees them (t-SNE on its last "
        "features). It is built once per model in the background and kept beside the checkpoint."
    )


def build(path: Path, data_dir: str | None, key: str) -> None:
    try:
        runner().submit_map(path, data_dir, owner=visitor().id)  # a job like any other: an owner, quotas, a slot
    except (OSError, QuotaExceeded) as error:  # a full or read-only disk, a busy demo: said on the next run
        st.session_state[f"{key}_build_error"] = plain_error(error)


@st.fragment
def map_view(
    emap: EmbeddingMap,
    model: nn.Module,
    config: TrainConfig,
    images: torch.Tensor,
    image28: np.ndarray | torch.Tensor | None,
    highlight: int | None,
    key: str,
    star_name: str,
    on_inspect: Callable[[int], None] | None,
) -> None:
    names, noun = CLASS_NAMES[config.dataset], CLASS_NOUN[config.dataset]
    with st.container(horizontal=True, vertical_alignment="bottom", gap="medium"):
        digits = st.pills(
            "Only these " + ("digits" if noun == "digit" else "classes"),
            list(range(len(names))),
            selection_mode="multi",
            format_func=lambda c: names[c],
            key=f"{key}_classes",
            help=f"None chosen: every {noun}.",
            wrap=True,  # onto a second row on a phone, rather than scrolled out of sight
        )
        mistakes_only = st.toggle("Mistakes only", key=f"{key}_mistakes")
    shown = np.arange(len(emap.labels))
    if digits:
        shown = shown[np.isin(emap.labels, digits)]
    if mistakes_only:
        shown = shown[emap.mistakes[shown]]

    star, nearest = None, None
    if image28 is not None:
        with one_thread():
            star, nearest = embedding.place(emap, model, as_tensor(image28), config.dataset, leave_out=highlight)
        if highlight is not None:  # a test image: its own point (its neighbours are the 5 others nearest)
            star = emap.xy[highlight]
    figure = charts.embedding_figure(
        emap.xy,
        emap.labels,
        emap.predictions,
        emap.confidences,
        shown,
        names,
        star=star,
        star_name=star_name,
        nearest=nearest,
    )
    map_column, side = st.columns([3, 1], gap="medium")
    with map_column:
        state = st.plotly_chart(
            figure,
            key=f"{key}_chart",
            on_select="rerun",
            selection_mode="points",
            config={"displayModeBar": False},  # it would cover the legend; drag zooms, a double-click zooms out
        )
        st.caption(
            f"{len(shown):,} of {len(emap.labels):,} test images, coloured by true {noun}; rings: the "
            f"model's {int(emap.mistakes.sum()):,} mistakes. Click a point to see its image; drag to zoom in, "
            "double-click to zoom out."
        )
    with side:
        if nearest is not None:
            nearest_row(images, emap, nearest, names, star_name)
        clicked = clicked_index(state)
        if clicked is not None:
            detail(images, emap, clicked, names, key, on_inspect)


def clicked_index(state) -> int | None:
    """The dataset index of the clicked point (customdata[0]); None for none, or for the star."""
    for point in state.selection.points if state else []:
        custom = point.get("customdata")
        # A row of a binary-encoded 2-D customdata comes back as a typed array, which the browser
        # turns into {"0": index, "1": confidence}; a plain list where Plotly sent a list.
        if isinstance(custom, dict):
            custom = [custom[k] for k in sorted(custom, key=int)]
        if isinstance(custom, (list, tuple)) and custom:
            return int(custom[0])
    return None


def nearest_row(
    images: torch.Tensor, emap: EmbeddingMap, nearest: np.ndarray, names: tuple[str, ...], star_name: str
) -> None:
    st.markdown(f"**Nearest to {star_name}**")
    with st.container(horizontal=True, gap="xsmall"):
        for index in nearest:
            index = int(index)
            show_picture(thumbnail(images[index].numpy(), NEAREST_SCALE), f"#{index} · {names[emap.labels[index]]}")


def detail(
    images: torch.Tensor,
    emap: EmbeddingMap,
    index: int,
    names: tuple[str, ...],
    key: str,
    on_inspect: Callable[[int], None] | None,
) -> None:
    true_class, predicted = int(emap.labels[index]), int(emap.predictions[index])
    verdict = "right" if true_class == predicted else "**wrong**"
    st.markdown(f"**Image {index}**")
    show_picture(thumbnail(images[index].numpy(), DETAIL_SCALE))
    st.markdown(
        f"True: **{names[true_class]}** · read as **{names[predicted]}** ({verdict}) · "
        f"{emap.confidences[index]:.0%} sure"
    )
    if on_inspect is not None and st.button("Look inside this image", key=f"{key}_inspect", icon=":material/layers:"):
        on_inspect(index)
        st.rerun()  # the whole page: its strip shows the new image
