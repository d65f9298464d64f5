"""Draw-page latency: `predict` on a 280x280 RGBA canvas, as after every stroke.

Times the whole call (preprocessing + model) and each half, after a warm-up, and prints the
median and 95th percentile in milliseconds with the device and thread count. The budget is
10 ms median on a 2-core CPU, so the prediction keeps up with drawing.

    python bench/predict_latency.py [--model default] [--repeats 500] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mnist_core.device import device_label  # noqa: E402
from mnist_core.inference import predict, probabilities, resolve_model  # noqa: E402
from mnist_core.preprocess import canvas_to_mnist  # noqa: E402


def drawn_canvas(size: int = 280, pen: int = 18) -> np.ndarray:
    """A '4' drawn with white strokes on black, as the Draw page's canvas returns it (RGBA)."""
    canvas = Image.new("RGBA", (size, size), (0, 0, 0, 255))
    draw = ImageDraw.Draw(canvas)
    scale = size / 280
    for stroke in ([(150, 40), (70, 170), (200, 170)], [(165, 90), (160, 250)]):
        draw.line([(x * scale, y * scale) for x, y in stroke], fill=(255, 255, 255, 255), width=pen, joint="curve")
    return np.asarray(canvas)


def timings_ms(function, repeats: int) -> np.ndarray:
    for _ in range(20):  # warm-up: first calls allocate and pick kernels
        function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return np.array(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help='"default", a run folder or a checkpoint file')
    parser.add_argument("--repeats", type=int, default=500)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model, dataset = resolve_model(args.model)
    canvas = drawn_canvas()
    pixels = canvas_to_mnist(canvas)
    probabilities_now = predict(canvas, model)
    device = next(model.parameters()).device
    print(
        f"device: {device_label(device)}; torch threads: {torch.get_num_threads()}; model: {args.model}; "
        f"canvas {canvas.shape}; predicted {int(probabilities_now.argmax())}"
    )
    for name, function in (
        ("predict (whole call)", lambda: predict(canvas, model)),
        ("  preprocessing only", lambda: canvas_to_mnist(canvas)),
        ("  model only", lambda: probabilities(model, pixels, dataset)),
    ):
        times = timings_ms(function, args.repeats)
        print(f"{name:<22} median {np.median(times):6.2f} ms   p95 {np.percentile(times, 95):6.2f} ms")


if __name__ == "__main__":
    main()
