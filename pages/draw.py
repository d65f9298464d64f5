"""Draw: draw a digit (or upload a picture of one) and see the prediction after every stroke.

"Show inside the network", off by default, adds the drawing's place on the embedding map and
each layer's output for it (ui.inside_views). Off, it costs nothing: a stroke reruns the
drawing's fragment, and only a switched-on toggle computes those views. The last digit read is
kept in `st.session_state["drawn_digit"]` for the Inside page.
"""


import numpy as np
import plotly.graph_objects as go
import streamlit as st

from mnist_core.data import default_data_dir
from mnist_core.inference import load_model, probabilities, saliency
from mnist_core.preprocess import ImageError, canvas_to_mnist, read_image
from mnist_core.storage import plain_error
from ui import glossary
from ui.inside_views import activations_strip, embedding_map
from ui.mistakes_charts import INDIGO, MUTED, fit_square, saliency_overlay, thumbnail
from ui.phone_scroll import STACKED_COLUMNS_WIDTH
from ui.shell import point_to_train, require_app_shell
from ui.state import checkpoint_path, model_picker

require_app_shell()

CANVAS_SIDE = 280  # pixels: fits a phone screen and leaves room for a fingertip
MODEL_VIEW_SCALE = 7  # the 28x28 the model sees, 196 pixels wide (200 framed) whether saliency is on or off
UPLOAD_PREVIEW_SIDE = 140  # the uploaded picture beside it: both fit side by side on a 390-pixel phone
ROUND = "draw_canvas_round"  # bumped by Clear; the canvas redraws itself empty when it changes
DRAWN = "drawn_digit"  # the last 28x28 digit read (0..1 floats), for the Inside page
INSIDE = "draw_inside"
# On a phone the two columns stack, and the answer (under the canvas's column) falls below the
# screen, where a finger on the canvas cannot scroll to it. One line above the canvas says it
# there; on a wider screen the answer is beside the canvas and this line is hidden.
PHONE_ANSWER = "draw_phone_answer"
PHONE_ONLY_CSS = (f"<style>@media (min-width: {STACKED_COLUMNS_WIDTH + 1}px) "
                  f"{{ .st-key-{PHONE_ANSWER} {{ display: none; }} }}</style>")


def clear_canvas() -> None:
    st.session_state[ROUND] = st.session_state.get(ROUND, 0) + 1


def drawing_ui() -> np.ndarray | None:
    """The canvas, with a pen-width slider and a Clear button under it; returns its RGBA pixels."""
    try:  # the canvas registers a Streamlit component on import, so import it only here
        from streamlit_drawable_canvas import st_canvas
    except Exception:  # noqa: BLE001 - the page still works through uploads
        st.warning("The drawing canvas is not available here; upload a picture of a digit instead.")
        return None
    # The canvas's own toolbar (undo, redo, ...) floats about 2.2rem above its top edge on hover:
    # this space keeps it clear of the Input control above. The slider and Clear sit below it.
    st.space("xsmall")
    with st.container(width=CANVAS_SIDE):
        surface = st.container()  # the canvas goes here, above its controls, once the pen width is known
        with st.container(horizontal=True, vertical_alignment="bottom"):
            pen = st.slider("Pen width", 6, 40, 18, key="draw_pen", help="In canvas pixels; thin or thick both work.")
            st.button("Clear", icon=":material/delete:", on_click=clear_canvas)
    with surface:
        canvas = st_canvas(
            stroke_width=pen,
            stroke_color="#FFFFFF",
            background_color="#000000",
            width=CANVAS_SIDE,
            height=CANVAS_SIDE,
            update_streamlit=True,
            return_image_data=True,
            # Clear empties the same canvas through a new (empty) initial drawing. A new key would
            # mount a new canvas instead, and a stroke made while it starts up would be lost.
            initial_drawing={"objects": [], "clears": st.session_state[ROUND]} if st.session_state.get(ROUND) else None,
            key="draw_canvas",
        )
    return canvas.image_data


def upload_ui() -> np.ndarray | None:
    """A file uploader for one digit; returns its pixels, or None (with a message) if unusable."""
    # No type= filter: read_image checks the content itself and explains what is wrong.
    upload = st.file_uploader(
        "A photo or scan of one digit (PNG or JPEG, up to 2 MB)",
        key="draw_upload",
        help="Any size, light or dark background, ink in any corner: it is cropped and centred like MNIST.",
    )
    if upload is None:
        return None
    try:
        return read_image(upload.getvalue())
    except ImageError as error:
        st.error(plain_error(error), icon=":material/broken_image:")
        return None


def probability_chart(chances: np.ndarray, predicted: int) -> go.Figure:
    colors = [INDIGO if digit == predicted else MUTED for digit in range(10)]
    figure = go.Figure(
        go.Bar(x=list(range(10)), y=chances, marker_color=colors, hovertemplate="%{x}: %{y:.1%}<extra></extra>")
    )
    figure.update_layout(height=240, margin=dict(l=0, r=0, t=10, b=0), yaxis=dict(range=[0, 1], tickformat=".0%"))
    figure.update_xaxes(tickmode="linear", title="digit")
    return figure


def prediction_ui(model, dataset: str, pixels: np.ndarray, uploaded: np.ndarray | None) -> tuple[int, float]:
    """The answer, its probabilities and what the model sees; returns (the digit, how sure)."""
    chances = probabilities(model, pixels, dataset)
    digit = int(chances.argmax())
    st.markdown(f"<div class='predicted-digit' style='font-size:6rem;font-weight:700;line-height:1'>{digit}</div>",
                unsafe_allow_html=True)
    unsure = "  ·  unsure: try drawing it bigger or clearer" if chances[digit] < 0.5 else ""
    st.caption(f"{chances[digit]:.1%} sure{unsure}")
    st.plotly_chart(probability_chart(chances, digit), key="draw_chart", config={"displayModeBar": False})
    image = (pixels * 255).round().astype(np.uint8)  # drawn like the Mistakes page: dark ink on white
    explain = st.toggle("Show which pixels drove the prediction", key="draw_saliency",
                        help=glossary.explain("Saliency map", 2))
    if explain:
        picture = saliency_overlay(image, saliency(model, pixels, digit, dataset), scale=MODEL_VIEW_SCALE)
        caption = "Red pushed toward the prediction, blue away"
    else:
        picture = thumbnail(image, MODEL_VIEW_SCALE)
        caption = "What the model sees (28×28)"
    with st.container(horizontal=True, gap="xsmall"):
        if uploaded is not None:
            upload_preview(uploaded)
        show_picture(picture, caption)
    return digit, float(chances[digit])


def inside_ui(path, model, config, pixels: np.ndarray) -> None:
    """Where the drawing lands among the test images, and its path through the model's layers."""
    st.subheader("Inside the network")
    # The map first: where the drawing lands and its nearest test digits read at a glance, while the
    # strip below is long (14 panels for the shipped model, one a row on a phone).
    embedding_map(path, default_data_dir(), pixels, key="draw_map")
    st.markdown("**Layer by layer**")
    activations_strip(model, config, pixels, key="draw_layers")


def upload_preview(uploaded: np.ndarray) -> None:
    show_picture(fit_square(uploaded, UPLOAD_PREVIEW_SIDE), "Your picture")


def show_picture(picture: np.ndarray, caption: str) -> None:
    """A framed picture at its own pixel width: a long caption wraps instead of stretching it."""
    picture = framed(picture)
    st.image(picture, output_format="PNG", caption=caption, width=picture.shape[1])


def framed(picture: np.ndarray) -> np.ndarray:
    """A thin grey frame, so the edges of the 28x28 field show on the white page."""
    return np.pad(picture, [(2, 2), (2, 2)] + [(0, 0)] * (picture.ndim - 2), constant_values=200)


@st.fragment
def draw_and_predict(choice: str) -> None:
    """Everything a stroke changes. A fragment: a stroke, the pen slider or a toggle reruns only
    this, not the page's title, model picker and sidebar (bench/draw_latency.py, bench/load_test.py).
    The model is looked up on every run (cached by file version): a run deleted from another tab
    is a message here, not a traceback."""
    try:
        path = checkpoint_path(choice)
        model, config = load_model(path, keep_for="draw")  # never evicted by other pages
    except Exception as error:  # noqa: BLE001 - a missing or broken checkpoint is a message, not a traceback
        st.error(f"This model could not be loaded: {plain_error(error)}")
        return
    dataset = config.dataset
    if dataset != "mnist":
        st.warning("This model was trained on Fashion-MNIST, not on digits: its answers are clothing classes 0-9.")
    if INSIDE in st.session_state:  # kept while no digit (and so no toggle) is on screen, e.g. after Clear
        st.session_state[INSIDE] = st.session_state[INSIDE]
    left, right = st.columns(2, gap="medium")  # stacked on a phone: a large gap would look like the end
    with left:
        source = st.segmented_control("Input", ["Draw", "Upload"], default="Draw", key="draw_source", required=True)
        # Never empty, so the canvas below does not move when the first answer arrives under a finger.
        phone_answer = st.container(key=PHONE_ANSWER).empty()
        phone_answer.markdown(f"{'Draw a digit' if source == 'Draw' else 'Upload a picture of one'} below: the answer "
                              "shows here, and in full further down.")
        image = upload_ui() if source == "Upload" else drawing_ui()
    with right:
        pixels = None if image is None else canvas_to_mnist(image)
        uploaded = image if source == "Upload" else None
        if pixels is not None:
            st.session_state[DRAWN] = pixels
            digit, sure = prediction_ui(model, dataset, pixels, uploaded)
            phone_answer.markdown(f"Reads as **{digit}** · {sure:.0%} sure · the chart is further down")
            inside = st.toggle("Show inside the network", key=INSIDE,
                               help="Each layer's output for this digit, and where it lands among the 10,000 test images.")
        elif uploaded is not None:
            st.warning("No digit found in this picture: it looks blank or has too little contrast.")
            upload_preview(uploaded)
        else:
            hint = "Draw a digit on the canvas" if source == "Draw" else "Upload a picture of one digit"
            icon = ":material/draw:" if source == "Draw" else ":material/upload:"
            st.info(f"{hint}: the prediction appears here.", icon=icon)
    if pixels is not None and inside:
        inside_ui(path, model, config, pixels)


st.title("Draw")
st.html(PHONE_ONLY_CSS)  # once per page run, not with every stroke's fragment run
st.caption("Draw a digit with the mouse or a finger: it is cropped, scaled and centred like MNIST, then classified.")
choice = model_picker(key="draw_model")
if choice is None:
    point_to_train("There is no model to draw for yet. Train one on the **Train** page (the *fast* preset takes "
                   "a few seconds on a CPU), then come back here.")
    st.stop()
draw_and_predict(choice)
