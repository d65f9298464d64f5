"""Heatmaps as plain images: a 0..1 grid through a colour map, enlarged without blurring.

One PIL image per layer (or per filter bank) draws far faster than a Plotly heatmap per
channel, and a page of them stays light. NaN cells (the gaps `inside.tile` leaves between
maps) are drawn white.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# Viridis at 8 stops (perceptually even, readable in grey), interpolated to 256 levels.
_STOPS = np.array([[68, 1, 84], [70, 50, 126], [54, 92, 141], [39, 127, 142], [31, 161, 135], [74, 193, 109],
                   [160, 218, 57], [253, 231, 37]], dtype=np.float32)
COLOURS = np.stack([np.interp(np.linspace(0, 7, 256), np.arange(8), _STOPS[:, channel]) for channel in range(3)],
                   axis=1).astype(np.uint8)


def heat_image(grid: np.ndarray, cell: int = 4) -> Image.Image:
    """`grid` (values 0..1, NaN for blank) as an RGB image, each value a `cell`-pixel square."""
    values = np.asarray(grid, dtype=np.float32)
    blank = np.isnan(values)
    levels = (np.nan_to_num(values, nan=0.0).clip(0, 1) * 255).astype(np.uint8)
    rgb = COLOURS[levels]
    rgb[blank] = 255
    image = Image.fromarray(rgb, "RGB")
    return image.resize((image.width * cell, image.height * cell), Image.NEAREST)
