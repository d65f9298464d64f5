"""Inside: what a model does with one image, layer by layer, and where it puts that image among
the 10,000 test images (the embedding map).

The image is a test image (by number, a random one of a digit, or any random one) or the last
digit drawn on the Draw page, which that page leaves in `st.session_state["drawn_digit"]`.
The views themselves are in ui.inside_views; Draw shows the same ones under its prediction.
"""


import numpy as np
import streamlit as st

from mnist_core.data import CLASS_NAMES, CLASS_NOUN, DatasetCorrupt, DatasetMissing, default_data_dir, load_split
from mnist_core.inference import load_model
from mnist_core.links import read_image, read_model
from mnist_core.storage import plain_error
from ui import links
from ui.glossary import explain
from ui.inside_views import activations_strip, as_uint8, embedding_map, show_picture
from ui.mistakes_charts import thumbnail
from ui.shell import point_to_train, require_app_shell
from ui.state import DEFAULT, checkpoint_path, model_picker, runner, select_model

require_app_shell()

DRAWN = "drawn_digit"  # a 28x28 0..1 float array, set by the Draw page
INDEX, CLASS, SOURCE = "inside_index", "inside_class", "inside_source"
PENDING = "inside_pending_index"  # a test image the map's "Look inside" chose, applied before the picker exists
TEST_IMAGE, DRAWING = "Test image", "Your drawing"
IMAGE_SCALE = 5  # 140 pixels


def pick_random(labels: np.ndarray) -> None:
    """A random test image of the chosen class (of any class when none is chosen)."""
    chosen = st.session_state.get(CLASS)
    candidates = np.arange(len(labels)) if chosen is None else np.flatnonzero(labels == chosen)
    st.session_state[INDEX] = int(np.random.default_rng().choice(candidates))


def inspect_later(index: int) -> None:
    st.session_state[PENDING] = index


def test_image_picker(labels: np.ndarray, names: tuple[str, ...], noun: str) -> int:
    with st.container(horizontal=True, vertical_alignment="bottom"):
        index = st.number_input(f"Test image (0–{len(labels) - 1:,})", 0, len(labels) - 1, key=INDEX, step=1, width=180)
        st.selectbox(
            f"A random {noun} of",
            [None, *range(len(names))],
            key=CLASS,
            width=180,
            format_func=lambda c: f"any {noun}" if c is None else names[c],
            on_change=pick_random,
            args=(labels,),
            help=f"Choosing one shows a random test image of that {noun}.",
        )
        st.button("Random", icon=":material/casino:", on_click=pick_random, args=(labels,))
    return int(index)


st.title("Inside")
st.caption(
    "What the model does with one image, layer by layer, and where it puts that image among the 10,000 test images."
)
link_slot = st.container()  # "Copy link", once the page knows what it shows
link = links.incoming("inside")  # /inside?image=N[&run=ID] (mnist_core.links)
chosen_by_link = read_model(link.get("run"), runner().runs_dir)
links.say_problems(chosen_by_link)
if chosen_by_link.value is not None:
    select_model(chosen_by_link.value)
choice = model_picker(key="inside_model")
if choice is None:
    point_to_train("There is no model to look inside yet. Train one on the **Train** page, then come back here.")
    st.stop()
try:
    path = checkpoint_path(choice)
    model, config = load_model(path)
except Exception as error:  # noqa: BLE001 - a missing or broken checkpoint is a message, not a traceback
    st.error(f"This model could not be loaded: {plain_error(error)}")
    st.stop()
names, noun = CLASS_NAMES[config.dataset], CLASS_NOUN[config.dataset]
try:
    images, labels = load_split(config.dataset, train=False, data_dir=default_data_dir(), download_missing=False)
except (DatasetMissing, DatasetCorrupt) as error:
    images = labels = None
    if DRAWN not in st.session_state:
        st.info(
            f"This page needs the test images, or a digit drawn on the Draw page. {plain_error(error)}", icon=":material/cloud_off:"
        )
        st.stop()

if link.get("image"):
    linked = read_image(link["image"], len(labels) if labels is not None else 0)
    links.say_problems(linked)
    if linked.value is not None:
        inspect_later(linked.value)
if PENDING in st.session_state:  # before the widgets exist: their values may only be set then
    st.session_state.update({INDEX: st.session_state.pop(PENDING), SOURCE: TEST_IMAGE})
elif INDEX in st.session_state:  # kept while the drawing is shown instead (Streamlit forgets unshown widgets)
    st.session_state[INDEX] = st.session_state[INDEX]
sources = ([TEST_IMAGE] if images is not None else []) + ([DRAWING] if DRAWN in st.session_state else [])
if st.session_state.get(SOURCE) not in sources:
    st.session_state[SOURCE] = sources[0]
picture, controls = st.columns([1, 4], gap="medium")  # the image beside its picker; stacked on a phone
with controls:
    source = st.segmented_control("Image", sources, key=SOURCE, required=True) if len(sources) > 1 else sources[0]
    if source == TEST_IMAGE:
        index = test_image_picker(labels.numpy(), names, noun)
        image, highlight, star_name = images[index].numpy(), index, f"image {index}"
        caption = f"Test image {index}: a {names[int(labels[index])]}"
    else:
        image, highlight, star_name = st.session_state[DRAWN], None, "your drawing"
        caption = "Your drawing from the Draw page, as the model sees it"
with picture:
    show_picture(thumbnail(as_uint8(image), IMAGE_SCALE), caption)
shown = {"image": highlight, "run": None if choice == DEFAULT else choice}
links.follow("inside", **shown)
with link_slot:
    links.copy_link("inside_copy_link", **shown)

st.subheader("Layer by layer", help=explain("Feature map"))
activations_strip(model, config, image, key="inside")
st.subheader("Embedding map", help=explain("Embedding map", 2))
embedding_map(
    path,
    default_data_dir(),
    image,
    highlight=highlight,
    key="inside_map",
    star_name=star_name,
    on_inspect=inspect_later,
)
