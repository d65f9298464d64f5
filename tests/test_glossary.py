"""The glossary: docs/glossary.md is read by the app, and every term a control explains is in it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ui.glossary import entries, explain

ROOT = Path(__file__).resolve().parent.parent
TERMS_THE_ISSUE_NAMES = ("ASHA", "Confident learning", "t-SNE", "Out-of-sample", "Label smoothing", "Schedule",
                         "Channels-last")


def test_every_entry_has_words_and_the_terms_students_stumble_on_are_there():
    glossary = entries()
    assert set(TERMS_THE_ISSUE_NAMES) <= set(glossary)
    assert all(len(body.split()) >= 8 for body in glossary.values())
    assert explain("Epoch").startswith("One pass of training over all 60,000 training images.")
    assert explain("Epoch").endswith("(More in the Glossary, in the sidebar.)")
    with pytest.raises(KeyError):
        explain("Flux capacitor")


def test_every_term_a_page_explains_is_in_the_glossary():
    used = set()
    for path in [*(ROOT / "ui").glob("*.py"), *(ROOT / "pages").glob("*.py")]:
        used |= set(re.findall(r'explain\("([^"]+)"', path.read_text()))
    assert used, "no control explains a term"
    assert used <= set(entries()), f"not in docs/glossary.md: {sorted(used - set(entries()))}"


def test_every_kind_of_layer_the_strip_shows_is_explained():
    """The layer-by-layer strip titles its panels with PyTorch's names (Conv2d, MaxPool2d...): the
    help beside it (the glossary's "Layer types") names each one any model here can show."""
    import torch

    from mnist_core.inside import layer_outputs
    from mnist_core.models import MODELS, build_model

    kinds = {layer.kind for name in MODELS for layer in layer_outputs(build_model(name).eval(), torch.zeros(28, 28), "mnist")}
    assert {"Conv2d", "Linear", "Softmax"} <= kinds
    explained = entries()["Layer types"]
    assert [kind for kind in sorted(kinds) if kind not in explained] == []
