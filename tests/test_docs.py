"""The README and docs/: every relative link (and the heading it points at) exists.

A link is `[text](target)` or `![alt](target)` outside code. A target with a scheme (https:,
mailto:) is left alone; any other names a file or folder relative to the Markdown file, and its
`#anchor`, if any, must be one of that file's headings as GitHub spells them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "models" / "MODEL_CARD.md"]

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def prose(text: str) -> str:
    """The Markdown without its code blocks and inline code, where brackets are not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def anchors(markdown: Path) -> set[str]:
    """The anchors GitHub makes for a file's headings: lower case, punctuation dropped, spaces to -."""
    found = set()
    for line in FENCE.sub("", markdown.read_text(encoding="utf-8")).splitlines():
        heading = re.match(r"#{1,6}\s+(.*)", line)
        if heading:
            text = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower())
            found.add(text.replace(" ", "-"))
    return found


def relative_links(markdown: Path) -> list[str]:
    return [target for target in LINK.findall(prose(markdown.read_text(encoding="utf-8")))
            if not re.match(r"[a-z][a-z0-9+.-]*:", target)]


def test_the_documents_exist_and_have_links():
    assert all(path.exists() for path in DOCUMENTS)
    assert len(relative_links(ROOT / "README.md")) >= 10  # the README points into docs/


@pytest.mark.parametrize("markdown", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_resolves(markdown: Path):
    broken = []
    for target in relative_links(markdown):
        path_part, _, anchor = target.partition("#")
        destination = (markdown.parent / path_part).resolve() if path_part else markdown
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: no heading #{anchor} in {destination.name}")
    assert not broken, f"{markdown.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_checker_sees_a_broken_link(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text("# Top\n\n[ok](#top) [gone](missing.md) [bad](#nowhere) `[code](ignored.md)`\n")
    links = relative_links(page)
    assert links == ["#top", "missing.md", "#nowhere"]
    assert "top" in anchors(page) and "nowhere" not in anchors(page)
