"""The glossary (docs/glossary.md) in the app: one-line help for a control, and the whole list.

docs/glossary.md is the one place a term is explained: each `## Term` heading, then a paragraph
whose first sentence is the help shown beside the control (`explain`). The sidebar's Glossary
lists every entry (`glossary_popover`).
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import streamlit as st

GLOSSARY_FILE = Path(__file__).resolve().parent.parent / "docs" / "glossary.md"


@lru_cache(maxsize=1)
def entries() -> dict[str, str]:
    """Term -> its paragraph, in the file's order ({} if the file is missing: help is then plain)."""
    try:
        text = GLOSSARY_FILE.read_text(encoding="utf-8")
    except OSError:
        return {}
    found = {}
    for block in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        term, _, body = block.partition("\n")
        found[term.strip()] = " ".join(body.split())
    return found


def explain(term: str, sentences: int = 1) -> str:
    """The first sentence(s) of the term's entry, for a control's help, pointing to the glossary."""
    body = entries().get(term)
    if body is None:
        raise KeyError(f"{term!r} is not in {GLOSSARY_FILE.name}")
    first = " ".join(re.split(r"(?<=[.!?])\s", body)[:sentences])
    return f"{first} (More in the Glossary, in the sidebar.)"


def glossary_popover() -> None:
    with st.popover("Glossary", icon=":material/menu_book:", width="stretch"):
        st.caption("The words this app uses, in plain terms.")
        for term, body in entries().items():
            st.markdown(f"**{term}.** {body}")
