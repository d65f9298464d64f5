"""Mistakes: the validation images a model gets wrong, a clickable confusion matrix and saliency maps.

The 10,000 MNIST test images are the project's validation set. Evaluating a checkpoint happens
once per checkpoint version (mnist_core.evaluate caches it), so every click here is cheap.
A second tab, "Suspected label errors" (ui.label_audit), ranks the images whose given label is
probably wrong and records a verdict on each.
"""

from __future__ import annotations

import numpy as np
import streamlit as st
from streamlit.errors import StreamlitPageNotFoundError

from mnist_core.checkpoint import CheckpointError
from mnist_core.data import CLASS_NAMES, CLASS_NOUN, DatasetCorrupt, DatasetMissing, load_split
from mnist_core.evaluate import Evaluation, evaluate
from mnist_core.inference import load_model
from mnist_core.links import read_image, read_model
from mnist_core.saliency import integrated_gradients
from mnist_core.storage import plain_error
from ui import links
from ui import mistakes_charts as charts
from ui.compare_view import BASELINE, compare_tab
from ui.glossary import explain
from ui.inside_views import activations_strip
from ui.label_audit import label_audit_view
from ui.phone_scroll import scroll_into_view_on_phone
from ui.shell import require_app_shell
from ui.state import checkpoint_path, model_picker, runner, select_model, selected_model

require_app_shell()

TRUE, PREDICTED, PAGE = "mistakes_true", "mistakes_predicted", "mistakes_page"
LINKED_IMAGE, SHOWN_IMAGE = "mistakes_linked_image", "mistakes_shown_image"  # an image a link asked for; the one shown
TAB, COMPARE = "mistakes_tab", "Compare with a baseline"
INSPECTED, CONFUSION, LEAST_FIRST = "mistakes_inspected", "mistakes_confusion", "mistakes_least_first"
TAPS, DETAIL = "mistakes_taps", "mistakes_detail"  # how many tiles were tapped; the enlargement's container
TILE_WIDTH = 104  # a thumbnail (84 px) and its label; 24 to a page


def go_to_page(page: int) -> None:
    st.session_state[PAGE] = page


def inspect(index: int) -> None:
    """A tile's label was clicked or tapped: enlarge that image (and, on a phone, scroll to it)."""
    st.session_state.update({INSPECTED: index, LINKED_IMAGE: False, TAPS: st.session_state.get(TAPS, 0) + 1})


def set_filters(true_class: int | None, predicted_class: int | None) -> None:
    st.session_state.update({TRUE: true_class, PREDICTED: predicted_class, PAGE: 0})


def on_confusion_click() -> None:
    cell = charts.clicked_cell(st.session_state[CONFUSION].selection.points)
    if cell:
        set_filters(*cell)


def link_to_train() -> None:
    try:
        st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")
    except StreamlitPageNotFoundError:  # this page was started on its own (tests, `streamlit run pages/mistakes.py`)
        st.markdown("Open the **Train** page to train one.")


def filters_ui(names: tuple[str, ...], noun: str) -> tuple[int | None, int | None]:
    any_or_name = lambda c: "any" if c is None else names[c]  # noqa: E731
    true_col, predicted_col, order_col, clear_col = st.columns([1, 1, 1.6, 1], vertical_alignment="bottom")
    options = [None, *range(10)]
    true_class = true_col.selectbox(f"True {noun}", options, key=TRUE, format_func=any_or_name,
                                    on_change=go_to_page, args=(0,))
    predicted_class = predicted_col.selectbox(f"Predicted {noun}", options, key=PREDICTED, format_func=any_or_name,
                                              on_change=go_to_page, args=(0,))
    order_col.radio("Order", [False, True], key=LEAST_FIRST, horizontal=True,
                    format_func=lambda least: "least confident first" if least else "most confident first",
                    on_change=go_to_page, args=(0,))
    clear_col.button("Clear filter", icon=":material/filter_alt_off:", key="mistakes_clear", on_click=set_filters,
                     args=(None, None), disabled=true_class is None and predicted_class is None)
    return true_class, predicted_class


def gallery_ui(result: Evaluation, images, shown: np.ndarray, inspected: int, names: tuple[str, ...]) -> None:
    """One page of thumbnails of the mistakes in `shown` (dataset indices), each with a label that inspects it."""
    start, stop, pages = charts.page_bounds(len(shown), st.session_state.get(PAGE, 0))
    if not len(shown):
        st.info("No mistakes of this kind.", icon=":material/check:")
        return
    st.caption(f"{len(shown):,} mistakes, showing {start + 1}–{stop}. Click or tap the label under an image to enlarge it: beside the gallery, or below it on a phone, where the page scrolls down to it.")
    # Tiles of a fixed width in one wrapping row: as many to a line as fit, in reading order, on a
    # phone too (columns would stack column by column there, and run thousands of pixels down).
    with st.container(horizontal=True, gap="small"):
        for index in shown[start:stop]:  # only this page's images are converted
            _tile(result, images, int(index), inspected, names)
    if pages > 1:
        page = start // charts.PER_PAGE
        back, where, forward = st.columns([1, 2, 1], vertical_alignment="center")
        back.button("Previous", icon=":material/chevron_left:", key="mistakes_previous", disabled=page == 0,
                    on_click=go_to_page, args=(page - 1,))
        where.markdown(f"<div style='text-align:center'>page {page + 1} of {pages}</div>", unsafe_allow_html=True)
        forward.button("Next", icon=":material/chevron_right:", key="mistakes_next", disabled=page == pages - 1,
                       on_click=go_to_page, args=(page + 1,))


def _tile(result: Evaluation, images, index: int, inspected: int, names: tuple[str, ...]) -> None:
    with st.container(width=TILE_WIDTH, gap=None):
        st.image(charts.thumbnail(images[index].numpy()), output_format="PNG")
        label = f"{names[result.labels[index]]} → {names[result.predictions[index]]} · {result.confidence[index]:.0%}"
        st.button(f":primary[**{label}**]" if index == inspected else label, key=f"inspect_{index}",
                  type="tertiary", on_click=inspect, args=(index,))


def detail_ui(result: Evaluation, model, dataset: str, image: np.ndarray, index: int) -> None:
    """One mistake enlarged, its saliency map (for the prediction or the truth) and all ten probabilities."""
    true_class, predicted = int(result.labels[index]), int(result.predictions[index])
    names, noun = CLASS_NAMES[dataset], CLASS_NOUN[dataset]
    read = f"read as **{names[predicted]}**" if predicted != true_class else "read right"
    st.markdown(f"**Image {index}**: a **{names[true_class]}** the model {read} ({result.confidence[index]:.0%} sure)")
    target = st.radio("Saliency map for", [predicted, true_class], horizontal=True, help=explain("Saliency map", 2),
                      format_func=lambda c: f"{names[c]} (prediction)" if c == predicted else f"{names[c]} (truth)")
    attribution = integrated_gradients(model, image, target, dataset=dataset)
    picture, saliency = st.columns(2)
    picture.image(charts.thumbnail(image, scale=8), output_format="PNG", caption="The image", width="stretch")
    saliency.image(charts.saliency_overlay(image, attribution), output_format="PNG", width="stretch",
                   caption=f"Red: for {names[target]} · blue: against")
    st.plotly_chart(charts.probabilities_figure(result.probabilities[index], true_class, predicted, names, noun),
                    config={"displayModeBar": False})


def mistakes_tab() -> None:
    """The model's mistakes: metrics, per-class accuracy, the confusion matrix and the gallery."""
    choice = model_picker(key="mistakes_model")
    if choice is None:
        st.info("No model yet: there is no shipped default model and no finished run. Train one first.",
                icon=":material/school:")
        link_to_train()
        return

    try:
        with st.spinner("Evaluating on 10,000 validation images…"):  # only slow the first time per checkpoint
            path = checkpoint_path(choice)
            result = evaluate(path)
            model, config = load_model(path)
            images, _ = load_split(config.dataset, train=False)
    except DatasetMissing as error:
        st.error(plain_error(error), icon=":material/cloud_off:")
        return
    except DatasetCorrupt as error:
        st.error(plain_error(error), icon=":material/broken_image:")
        return
    except (CheckpointError, FileNotFoundError) as error:
        st.error(f"This model's checkpoint could not be loaded. {plain_error(error)}", icon=":material/error:")
        return

    names, noun = CLASS_NAMES[config.dataset], CLASS_NOUN[config.dataset]
    accuracy_col, mistakes_col, hardest_col = st.columns(3)
    accuracy_col.metric("Validation accuracy", f"{result.accuracy:.2f} %")
    mistakes_col.metric("Mistakes", f"{len(result.mistakes):,} of {len(result.labels):,}")
    hardest = int(result.per_class_accuracy.argmin())
    hardest_col.metric(f"Hardest {noun}", names[hardest], f"{result.per_class_accuracy[hardest]:.1f} % right",
                       delta_color="off", delta_arrow="off")

    true_class, predicted_class = st.session_state.get(TRUE), st.session_state.get(PREDICTED)
    per_class_col, confusion_col = st.columns(2, gap="large")
    per_class_col.plotly_chart(charts.per_class_accuracy_figure(result.per_class_accuracy, result.confusion.sum(1),
                                                               names, noun),
                               config={"displayModeBar": False})
    with confusion_col:
        st.markdown("**Confusion matrix** · click a cell to see those mistakes", help=explain("Confusion matrix", 2))
        st.plotly_chart(charts.confusion_figure(result.confusion, true_class, predicted_class, names, noun),
                        key=CONFUSION, on_select=on_confusion_click, selection_mode="points",
                        config={"displayModeBar": False})

    st.subheader("Misclassified images")
    true_class, predicted_class = filters_ui(names, noun)
    shown = result.mistakes_where(true_class, predicted_class)
    if st.session_state.get(LEAST_FIRST):
        shown = shown[::-1]
    inspected = st.session_state.get(INSPECTED)
    linked = st.session_state.get(LINKED_IMAGE) and inspected is not None and 0 <= inspected < len(images)
    if len(shown) and not linked and (inspected is None or inspected not in shown):  # the page's first
        inspected = int(shown[charts.page_bounds(len(shown), st.session_state.get(PAGE, 0))[0]])
    st.session_state[SHOWN_IMAGE] = inspected if (len(shown) or linked) else None  # for the page's URL
    gallery_col, detail_col = st.columns([3, 2], gap="large")
    with gallery_col:
        gallery_ui(result, images, shown, inspected, names)
    if len(shown) or linked:
        with detail_col:
            with st.container(border=True, key=DETAIL):
                detail_ui(result, model, config.dataset, images[inspected].numpy(), inspected)
            scroll_into_view_on_phone(DETAIL, st.session_state.get(TAPS, 0))  # below the whole gallery there
        # Off by default: the strip costs a forward pass and a dozen pictures per rerun.
        if st.toggle(f"Show inside the network for image {inspected}", key="mistakes_inside",
                     help="Every layer's output for the enlarged image, as on the Inside page."):
            activations_strip(model, config, images[inspected].numpy(), key="mistakes_inside")


def apply_link() -> str | None:
    """A pasted or followed link's state (mnist_core.links): the model, the image, the baseline.
    Returns the tab to open; a part that names nothing is said in a warning and ignored."""
    params = links.incoming("mistakes")
    if not params:
        return None
    runs_dir = runner().runs_dir
    model = read_model(params.get("run"), runs_dir)
    baseline = read_model(params.get("baseline"), runs_dir, name="baseline")
    image = read_image(params.get("image"))
    links.say_problems(model, baseline, image)
    if model.value is not None:
        select_model(model.value)
    if image.value is not None:
        st.session_state.update({INSPECTED: image.value, LINKED_IMAGE: True, TRUE: None, PREDICTED: None, PAGE: 0})
    if baseline.value is not None:
        st.session_state[BASELINE] = baseline.value
        return COMPARE
    return "Mistakes" if model.value is not None or image.value is not None else None


st.title("Mistakes")
st.caption("The validation images the model gets wrong: where it fails, how sure it was and why.")
link_slot = st.container()  # "Copy link", filled in once the page knows what it shows
opened = apply_link()
if opened:
    st.session_state[TAB] = opened  # a link opens its tab, even in a session that had another open
# The label audit's tab is a fragment, so its clicks redraw only itself; the comparison is drawn
# only while its tab is open (it evaluates a second model).
mistakes, comparison, label_errors = st.tabs(["Mistakes", COMPARE, "Suspected label errors"], key=TAB,
                                             on_change="rerun")
with mistakes:
    mistakes_tab()
with comparison:
    if comparison.open:
        compare_tab()
with label_errors:
    label_audit_view()
in_comparison = comparison.open and selected_model() != st.session_state.get(BASELINE)
state = ({"run": selected_model(), "baseline": st.session_state.get(BASELINE)} if in_comparison
         else {"run": selected_model(), "image": st.session_state.get(SHOWN_IMAGE)})
links.follow("mistakes", **state)
with link_slot:
    links.copy_link("mistakes_copy_link", **state)
