"""Draw-page accuracy: MNIST test digits redrawn the way people draw on a 280x280 canvas.

Each digit is cropped to its ink, enlarged to a random height between a third and 90 % of
the canvas, thresholded into solid ink and redrawn with a round pen of a random width (6 to 32 canvas
pixels, at most a fifth of the digit's height, i.e. 4 MNIST pixels: nobody draws a small
digit with a pen that fills its holes), anti-aliased, and put at a random place. The same drawing is then
encoded in each of three conventions and sent through `predict` (the Draw page's path):

    light-on-dark   RGBA, white strokes on an opaque black background (the Draw page's canvas)
    alpha-only      RGBA, RGB all 0, the strokes only in the alpha channel (the canvas's default)
    dark-on-light   RGB, black strokes on white (a scan or a photo of paper)

Next to it, a naive baseline: the same ink resized as a whole canvas to 28x28.

    MNIST_DATA_DIR=/path/to/data python bench/draw_accuracy.py [--model default] [--count 2000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mnist_core.data import load_split  # noqa: E402
from mnist_core.device import device_label  # noqa: E402
from mnist_core.inference import predict, resolve_model  # noqa: E402
from mnist_core.preprocess import ink_map, stroke_width  # noqa: E402
from mnist_core.train import logits_in_batches  # noqa: E402

CANVAS = 280
CONVENTIONS = ("light-on-dark", "alpha-only", "dark-on-light")


def draw_like_a_person(
    digit: np.ndarray,
    rng: np.random.Generator,
    canvas: int = CANVAS,
    height: float | None = None,
    pen_width: float | None = None,
) -> np.ndarray:
    """Float [canvas, canvas] ink (0..1) of one uint8 28x28 MNIST digit, redrawn with a round pen.

    The enlarged digit is thresholded into solid ink. A pen wider than its strokes widens them
    all (dilation). A thinner pen retraces the digit's centre line (skeleton) with strokes of
    exactly the pen's width, and keeps what is left of filled areas (a filled loop stays filled)
    after shrinking them by the width difference. Work is done at half the canvas resolution;
    the result is enlarged with soft edges.
    """
    rows, columns = np.flatnonzero(digit.max(1) > 0), np.flatnonzero(digit.max(0) > 0)
    crop = torch.from_numpy(digit[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]).float()[None, None] / 255
    height = height or rng.uniform(canvas / 3, canvas * 0.9)
    pen = (pen_width or min(rng.uniform(6, 32), height / 5)) / 2  # at half resolution; at most 4 MNIST pixels
    scale = height / crop.shape[2] / 2
    size = (round(crop.shape[2] * scale), max(1, round(crop.shape[3] * scale)))
    ink = (F.interpolate(crop, size=size, mode="bilinear", align_corners=False) > 0.5).float()
    ink = F.pad(ink, (int(pen) + 1,) * 4)  # room for the pen to grow the digit
    own_width = stroke_width(ink[0, 0].numpy() > 0)
    if pen >= own_width:
        ink = _dilate(ink, (pen - own_width) / 2)
    else:
        centre_line = torch.from_numpy(skeleton(ink[0, 0].numpy() > 0).astype(np.float32))[None, None]
        core = _erode(ink, (own_width - pen) / 2)
        ink = torch.maximum(_dilate(centre_line, pen / 2), core)
    strokes = F.interpolate(ink, scale_factor=2, mode="bilinear", align_corners=False)[0, 0].numpy()
    rows, columns = np.flatnonzero(strokes.max(1) > 0), np.flatnonzero(strokes.max(0) > 0)
    strokes = strokes[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1][:canvas, :canvas]
    top = rng.integers(0, canvas - strokes.shape[0] + 1)
    left = rng.integers(0, canvas - strokes.shape[1] + 1)
    drawing = np.zeros((canvas, canvas), dtype=np.float32)
    drawing[top : top + strokes.shape[0], left : left + strokes.shape[1]] = strokes
    return drawing


def _dilate(ink: torch.Tensor, radius: float) -> torch.Tensor:
    """Grow [1, 1, H, W] ink by about `radius` pixels in every direction (an octagon: 4- and
    8-neighbour steps in turn, which is much faster than a convolution with a disk)."""
    for step in range(round(radius)):
        if step % 2:
            ink = F.max_pool2d(ink, 3, stride=1, padding=1)
        else:
            ink = torch.maximum(
                F.max_pool2d(ink, (1, 3), stride=1, padding=(0, 1)), F.max_pool2d(ink, (3, 1), stride=1, padding=(1, 0))
            )
    return ink


def _erode(ink: torch.Tensor, radius: float) -> torch.Tensor:
    return -_dilate(-ink, radius)


def skeleton(mask: np.ndarray) -> np.ndarray:
    """One-pixel-wide centre lines of a boolean mask (Zhang-Suen thinning)."""
    image = np.pad(mask, 1).astype(np.uint8)
    changed = True
    while changed:
        changed = False
        for first_pass in (True, False):
            p = image
            north, north_east, east, south_east = p[:-2, 1:-1], p[:-2, 2:], p[1:-1, 2:], p[2:, 2:]
            south, south_west, west, north_west = p[2:, 1:-1], p[2:, :-2], p[1:-1, :-2], p[:-2, :-2]
            ring = [north, north_east, east, south_east, south, south_west, west, north_west, north]
            neighbours = sum(ring[:8])
            transitions = sum((ring[i] == 0) & (ring[i + 1] == 1) for i in range(8))
            if first_pass:
                keep_shape = (north * east * south == 0) & (east * south * west == 0)
            else:
                keep_shape = (north * east * west == 0) & (north * south * west == 0)
            remove = (p[1:-1, 1:-1] == 1) & (neighbours >= 2) & (neighbours <= 6) & (transitions == 1) & keep_shape
            if remove.any():
                image[1:-1, 1:-1][remove] = 0
                changed = True
    return image[1:-1, 1:-1].astype(bool)


def encode(ink: np.ndarray, convention: str) -> np.ndarray:
    level = (ink * 255).round().astype(np.uint8)
    if convention == "light-on-dark":
        return np.dstack([level, level, level, np.full_like(level, 255)])
    if convention == "alpha-only":
        zeros = np.zeros_like(level)
        return np.dstack([zeros, zeros, zeros, level])
    return np.dstack([255 - level] * 3)


def naive(image: np.ndarray) -> np.ndarray:
    """The whole canvas's ink resized to 28x28, no cropping or centring."""
    ink = Image.fromarray(ink_map(image))
    return np.asarray(ink.resize((28, 28), Image.Resampling.BOX))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help='"default", a run folder or a checkpoint file')
    parser.add_argument("--count", type=int, default=2000, help="test digits to draw (each in all 3 conventions)")
    parser.add_argument("--data-dir")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    model, dataset = resolve_model(args.model)
    images, labels = load_split(dataset, train=False, data_dir=args.data_dir, download_missing=False)
    rng = np.random.default_rng(args.seed)
    chosen = rng.choice(len(labels), size=min(args.count, len(labels)), replace=False)
    device = next(model.parameters()).device
    print(
        f"device: {device_label(device)}; model: {args.model}; {len(chosen)} test digits x {len(CONVENTIONS)} conventions"
    )

    correct = {convention: 0 for convention in CONVENTIONS}
    naive_images, empty = [], 0
    started = time.perf_counter()
    for index in chosen:
        ink = draw_like_a_person(images[index].numpy(), rng)
        for convention in CONVENTIONS:
            canvas = encode(ink, convention)
            probabilities = predict(canvas, model)
            empty += probabilities is None
            correct[convention] += probabilities is not None and int(probabilities.argmax()) == int(labels[index])
        naive_images.append(naive(encode(ink, "light-on-dark")))
    seconds = time.perf_counter() - started

    naive_batch = torch.from_numpy(np.stack(naive_images))
    naive_correct = (logits_in_batches(model, naive_batch, dataset=dataset).argmax(1) == labels[chosen]).sum().item()
    total = len(chosen)
    print(f"{'convention':<16}{'predict (Draw page)':>22}{'naive resize':>16}")
    for convention in CONVENTIONS:
        print(f"{convention:<16}{correct[convention] / total:>21.2%}{naive_correct / total:>16.2%}")
    overall = sum(correct.values()) / (total * len(CONVENTIONS))
    print(f"{'overall':<16}{overall:>21.2%}{naive_correct / total:>16.2%}")
    print(f"plain MNIST test accuracy of these digits: {_plain_accuracy(model, images, labels, chosen, dataset):.2%}")
    print(
        f"{empty} drawings judged empty; {seconds / (total * len(CONVENTIONS)) * 1000:.1f} ms per drawing incl. rendering"
    )


def _plain_accuracy(model, images, labels, chosen, dataset) -> float:
    predictions = logits_in_batches(model, images[chosen], dataset=dataset).argmax(1)
    return (predictions == labels[chosen]).float().mean().item()


if __name__ == "__main__":
    main()
