"""Links that open a state: what a page's URL query parameters may say, and what each one means.

- `/train?run=ID`: that run's curves;
- `/mistakes?run=ID&image=N`: that run's mistakes, with image N in the detail;
- `/mistakes?run=B&baseline=A`: run B compared with A, image by image;
- `/inside?image=N`: test image N inside the shipped or chosen model.

`run` and `baseline` name a run of the runs folder by its id, or `default` (the shipped model);
`image` is an index into the 10,000 test images. Reading a parameter never raises: a value that
names nothing gives a message that says what was wrong, for the page to show, and is ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from mnist_core.runs import default_runs_dir

DEFAULT = "default"
TEST_IMAGES = 10_000
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # a folder name in the runs folder, nothing more


@dataclass(frozen=True)
class Read:
    """A parameter as read: its value (None when absent or wrong), and the message when wrong."""

    value: str | int | None = None
    problem: str | None = None


def read_model(value: str | None, runs_dir: str | Path | None = None, name: str = "run",
               need_model: bool = True) -> Read:
    """A model named in a link: `default` or the id of a run in the runs folder with a checkpoint
    (any run, `default` excluded, when `need_model` is False: the Train page shows curves)."""
    if value is None or value == "":
        return Read()
    instead = "Showing the current model instead." if need_model else "Showing the latest run instead."
    if value == DEFAULT:
        return Read(DEFAULT) if need_model else Read(problem=f"The shipped model has no training curves. {instead}")
    root = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    shown = value if len(value) <= 60 else value[:57] + "..."
    if not RUN_ID.fullmatch(value) or not (root / value).is_dir():
        return Read(problem=f"The link names a {name} '{shown}' that is not here: it may have been deleted, or it "
                            f"was made on another copy of the studio. {instead}")
    if need_model and not (root / value / "checkpoint.pt").is_file():
        return Read(problem=f"The {name} '{shown}' in the link has no trained model yet (it has not finished an "
                            "epoch). Showing the current model instead.")
    return Read(value)


def read_image(value: str | None, count: int = TEST_IMAGES) -> Read:
    """An image named in a link: a whole number from 0 to count - 1."""
    if value is None or value == "":
        return Read()
    text = value.strip()
    if not text.isdigit() or int(text) >= count:
        shown = text if len(text) <= 20 else text[:17] + "..."
        return Read(problem=f"The link asks for image '{shown}', but the images are numbered 0 to {count - 1:,}. "
                            "Showing the first one instead.")
    return Read(int(text))


def query(**params: str | int | None) -> str:
    """The query string for these parameters, the empty ones left out ('' when none is left)."""
    kept = {key: str(value) for key, value in params.items() if value is not None and value != ""}
    return urlencode(kept)
