"""The dataset's state where training starts: ready, or what to do when it is missing.

A start that cannot begin never creates a run folder: while the files are missing the page
says so above the Start button, with the folder they belong in and a button that downloads
them here, with a progress bar.
"""

from __future__ import annotations

import streamlit as st

from mnist_core.data import DATASET_NAMES, DatasetCorrupt, DatasetMissing, download, is_present, missing_message
from mnist_core.storage import plain_error


def dataset_ready(dataset: str) -> bool:
    """True when the dataset's files are on disk; otherwise show how to get them and return False."""
    if is_present(dataset):
        return True
    name = DATASET_NAMES[dataset]
    st.warning(f"**{name} is not on this machine yet**, so training cannot start. {missing_message(dataset, None)}",
               icon=":material/cloud_off:")
    if st.button(f"Download {name} now", icon=":material/download:", width="stretch", key=f"download_{dataset}"):
        bar = st.progress(0.0, text=f"Connecting to the {name} mirrors…")

        def show(done: int, total: int, file_name: str) -> None:
            fraction = min(done / total, 1.0) if total else 0.0
            bar.progress(fraction, text=f"Downloading {file_name}: {done / 1e6:.1f} of {total / 1e6:.1f} MB")

        try:
            download(dataset, on_progress=show)
        except (DatasetMissing, DatasetCorrupt) as error:  # offline, or a download that arrived damaged
            bar.empty()
            st.error(plain_error(error), icon=":material/error:")
            return False
        st.rerun()  # the files are there: draw the page again with Start enabled
    return False
