"""A page's URL follows what the visitor picks, a pasted URL opens the same state, and "Copy link".

What each parameter means, and how a bad one is worded, is `mnist_core.links`; this module only
moves values between the URL and the session:

- `incoming(page)`: the page's query parameters when they came from outside (a pasted or followed
  link), not the ones this page itself last wrote; the page then applies them once;
- `follow(page, **params)`: the page writes its state into the URL, every run, so the address bar
  is always a link to what is on screen;
- `copy_link(**params)`: a small popover with the full link and Streamlit's own copy button.
"""

from __future__ import annotations

import streamlit as st

from mnist_core.links import Read, query

WRITTEN = "links_written_{page}"


def incoming(page: str) -> dict[str, str]:
    """The query parameters of this run when they are news to the page; {} otherwise."""
    current = {key: st.query_params[key] for key in st.query_params}
    if current and current != st.session_state.get(WRITTEN.format(page=page)):
        st.session_state[WRITTEN.format(page=page)] = current  # applied once, not on every rerun
        return current
    return {}


def say_problems(*reads: Read) -> None:
    """A warning for each part of a link that named nothing (mnist_core.links words it)."""
    for read in reads:
        if read.problem:
            st.warning(read.problem, icon=":material/link_off:")


def follow(page: str, **params: str | int | None) -> None:
    """Make the URL say `params` (empty ones left out), without a rerun."""
    wanted = {key: str(value) for key, value in params.items() if value is not None and value != ""}
    if {key: st.query_params[key] for key in st.query_params} != wanted:
        st.query_params.from_dict(wanted)
    st.session_state[WRITTEN.format(page=page)] = wanted


def copy_link(key: str, **params: str | int | None) -> None:
    """A "Copy link" popover: the link to this page with `params`, ready to copy or open."""
    base = st.context.url or ""
    link = base + ("?" + query(**params) if query(**params) else "")
    with st.popover("Copy link", icon=":material/link:", key=key):
        st.caption("A link to exactly this view: send it to a classmate or paste it in a report.")
        st.code(link, language=None, wrap_lines=True)
