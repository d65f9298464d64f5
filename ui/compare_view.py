"""Mistakes → Compare with a baseline: the chosen model (B) against another (A), image by image.

`mnist_core.compare` does the work; this lays it out: the two accuracies, how many images B fixes
and breaks, each digit's accuracy under both, the change in the confusion matrix, and the fixed
and broken images themselves.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from mnist_core.checkpoint import CheckpointError
from mnist_core.compare import CompareError, Comparison, compare
from mnist_core.data import CLASS_NAMES, CLASS_NOUN, DatasetCorrupt, DatasetMissing, load_split
from mnist_core.inference import load_model
from mnist_core.storage import plain_error
from ui import compare_charts
from ui.mistakes_charts import thumbnail
from ui.state import DEFAULT, checkpoint_path, model_choices, model_label, selected_model

BASELINE = "mistakes_baseline"
SHOWN, COLUMNS = 18, 6  # images per gallery, in 3 rows


def compare_tab() -> None:
    chosen = selected_model()
    others = [choice for choice in model_choices() if choice != chosen]
    if chosen is None or not others:
        st.info("Comparing needs two models: the shipped one and a finished run, or two runs. Train another run "
                "first.", icon=":material/compare_arrows:")
        return
    if st.session_state.get(BASELINE) not in others:
        st.session_state[BASELINE] = DEFAULT if DEFAULT in others else others[0]
    st.caption(f"**B** is the model chosen on the Mistakes tab: {model_label(chosen)}. Pick **A**, the baseline "
               "it is judged against: what does B get right that A got wrong (fixed), and the reverse (broken)?")
    st.selectbox("Baseline (A)", others, key=BASELINE, format_func=model_label)
    try:
        with st.spinner("Judging both models on the 10,000 validation images…"):
            comparison = compare(checkpoint_path(st.session_state[BASELINE]), checkpoint_path(chosen))
            dataset = load_model(checkpoint_path(chosen))[1].dataset
            images, _ = load_split(dataset, train=False)
    except CompareError as error:
        st.warning(f"These two cannot be compared: {error}.", icon=":material/compare_arrows:")
        return
    except (DatasetMissing, DatasetCorrupt) as error:
        st.error(plain_error(error), icon=":material/cloud_off:")
        return
    except (CheckpointError, FileNotFoundError) as error:
        st.error(f"A checkpoint could not be loaded. {plain_error(error)}", icon=":material/error:")
        return
    _summary(comparison)
    names, noun = CLASS_NAMES[dataset], CLASS_NOUN[dataset]
    digits, cells = st.columns(2, gap="large")
    digits.plotly_chart(compare_charts.per_digit_figure(comparison.a.per_class_accuracy,
                                                        comparison.b.per_class_accuracy, names, noun),
                        config={"displayModeBar": False}, key="compare_per_digit")
    with cells:
        st.markdown("**What changed in the confusion matrix** · B's counts minus A's",
                    help="Rows: the true digit; columns: what the model said. Off the diagonal, a red +3 means B "
                    "makes that mistake 3 more times than A; a blue −3, 3 fewer. On the diagonal (right answers), "
                    "blue is more right.")
        st.plotly_chart(compare_charts.confusion_change_figure(comparison.confusion_change, names, noun),
                        config={"displayModeBar": False}, key="compare_confusion")
    fixed, broken = st.columns(2, gap="large")
    with fixed:
        _gallery("Fixed by B", "A got these wrong, B gets them right.", comparison.fixed, comparison, images, names)
    with broken:
        _gallery("Broken by B", "A got these right, B gets them wrong.", comparison.broken, comparison, images, names)


def _summary(comparison: Comparison) -> None:
    a, b = comparison.a.accuracy, comparison.b.accuracy
    first, second, third, fourth = st.columns(4)
    first.metric("A (baseline)", f"{a:.2f} %")
    second.metric("B", f"{b:.2f} %", f"{b - a:+.2f} points", delta_arrow="off" if b == a else "auto")
    third.metric("Fixed by B", f"{len(comparison.fixed):,}")
    fourth.metric("Broken by B", f"{len(comparison.broken):,}")
    st.caption(f"The change adds up: ({len(comparison.fixed):,} fixed − {len(comparison.broken):,} broken) ÷ "
               f"{comparison.images:,} images = {b - a:+.2f} points.")


def _gallery(title: str, what: str, indices: np.ndarray, comparison: Comparison, images, names) -> None:
    st.markdown(f"**{title}** ({len(indices):,})")
    if not len(indices):
        st.caption("None.")
        return
    st.caption(what + (f" The {SHOWN} B is surest of are shown." if len(indices) > SHOWN else ""))
    for row in range(0, min(len(indices), SHOWN), COLUMNS):  # a row at a time: a phone keeps the order
        for column, index in zip(st.columns(COLUMNS), indices[row:row + COLUMNS]):
            true_class = names[comparison.a.labels[index]]
            a_said, b_said = names[comparison.a.predictions[index]], names[comparison.b.predictions[index]]
            column.image(thumbnail(images[index].numpy(), scale=2), output_format="PNG",
                         caption=f"#{index}: {true_class} · A {a_said} · B {b_said}")
