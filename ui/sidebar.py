"""The sidebar every page shows: the device, the dataset's state and the chosen model."""

from __future__ import annotations

import streamlit as st

from mnist_core.data import default_data_dir, is_present, raw_folder
from mnist_core.device import device_label
from mnist_core.storage import shown_path
from ui.glossary import glossary_popover
from ui.state import model_label, selected_model


@st.cache_data(show_spinner=False)
def _device() -> str:
    return device_label("auto")


def show_sidebar() -> None:
    with st.sidebar:
        st.caption("**Device**")
        st.write(f":material/memory: {_device()}")
        st.caption("**Dataset**")
        if is_present("mnist", default_data_dir()):
            st.write(":material/check_circle: MNIST ready")
        else:
            st.write(":material/cloud_download: MNIST not downloaded yet")
            st.caption(
                f"The Train page can download it (about 11 MB). Offline? Put the four MNIST files "
                f"in `{shown_path(raw_folder('mnist'))}` or set `MNIST_DATA_DIR`."
            )
        st.caption("**Model for Mistakes and Draw**")
        chosen = selected_model()
        st.write(model_label(chosen) if chosen else "None yet: train one on the Train page")
        glossary_popover()
