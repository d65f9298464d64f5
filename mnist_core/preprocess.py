"""Turn a drawing or a photo of a digit into a 28x28 image made the way MNIST was made.

MNIST's digits were cropped to their ink, scaled to fit a 20x20 box keeping their aspect
ratio (anti-aliased), and placed in a 28x28 field with their centre of mass at the centre.
`canvas_to_mnist` does the same to any image, so a small digit in a corner of a big canvas
looks to the model like a big centred one. It returns 0..1 pixels (1 = ink); the model's
normalisation is `data.normalize`, shared with training.

Two things differ from MNIST's scanned forms and are corrected here:
- Where the ink is. A canvas may draw light ink on a dark background, dark ink on a light
  one, or (streamlit-drawable-canvas's default) strokes that live only in the alpha channel
  of an otherwise transparent image.
- How thick the strokes are. A 6-pixel brush on a 280-pixel canvas becomes a faint
  half-pixel line at 28x28, and a fat brush on a small digit fills its holes. Strokes far
  from MNIST's typical width (about 2.7 pixels) are brought toward it before the final downscale.

`read_image` decodes an uploaded PNG or JPEG safely (size limits, clear errors).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

FIELD = 28  # MNIST's image side
DIGIT_BOX = 20  # the digit is scaled to fit this box, as in MNIST
WORK_SCALE = 4  # strokes are thickened or thinned at 4x the final resolution, in quarter-pixel steps
# Stroke widths in final pixels, as measured on the 4x work image. Thickening thin strokes to
# 2.2 there gives a median width of 2.7 on the final 28x28 (anti-aliasing widens them), which is
# MNIST's median. Fat strokes fill a digit's holes; thinning them to 3 helps most (bench/draw_accuracy.py).
THIN_STROKE, THICKEN_TO = 1.8, 2.2
THICK_STROKE, THIN_TO = 3.5, 3.0
MIN_CONTRAST = 0.15  # ink must differ from the background by this much (0..1) to count
NOISE_FLOOR = 0.1  # fainter ink (paper texture, JPEG ripples) is background
MIN_INK_FRACTION = 0.0002  # fewer ink pixels than this share of the image (or 4) = empty
MAX_SIDE = 4096  # larger images are refused, not processed slowly
MAX_UPLOAD_BYTES = 2 * 1024 * 1024
UPLOAD_FORMATS = ("PNG", "JPEG")
UPLOAD_WORK_SIDE = 1024  # uploads are shrunk to this before preprocessing (plenty for one digit)


class ImageError(ValueError):
    """An uploaded file is not an image this app can use; the message says why."""


def canvas_to_mnist(image: np.ndarray) -> np.ndarray | None:
    """A float32 [28, 28] image in 0..1 (1 = ink), MNIST-style; None when there is no ink.

    `image` is H x W x 4 (RGBA), H x W x 3 (RGB) or H x W (grayscale), uint8, uint16 or float 0..1,
    of any size up to 4096 pixels a side, with light ink on dark, dark ink on light, or ink
    only in the alpha channel.
    """
    ink = ink_map(image)
    if np.count_nonzero(ink > 0.5) < max(4, MIN_INK_FRACTION * ink.size):
        return None
    crop = _trim(ink)
    work = _resize_to_fit(crop, DIGIT_BOX * WORK_SCALE)
    work_stroke = stroke_width(crop > 0.5) * max(work.shape) / max(crop.shape)
    if work_stroke < 1:  # a stroke narrower than a work pixel came out faint: give it back full ink
        work = np.minimum(work / max(work_stroke, 0.2), 1)
        work_stroke = 1.0
    adjusted = _adjust_strokes(work, work_stroke)
    if adjusted.max() > 0:  # thinning never erases a whole drawing, but be sure
        work = adjusted
    digit = _resize_to_fit(_trim(work), DIGIT_BOX)
    return _center_by_mass(digit / digit.max())


def ink_map(image: np.ndarray) -> np.ndarray:
    """Float32 [H, W] in 0..1 where 1 is full ink and 0 is background (all 0 if no ink)."""
    pixels = _validated(image)
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        alpha = pixels[..., 3]
        if np.mean(alpha < 0.5) > 0.5:  # transparent background: the strokes are the opaque part
            return _normalized_ink(alpha, background=0.0)
        gray = _luminance(pixels[..., :3])
        if alpha.min() < 1:  # some transparency on an opaque picture: show the picture's own background
            behind = float(np.median(gray[alpha >= 0.5]))
            gray = gray * alpha + behind * (1 - alpha)
    elif pixels.ndim == 3:
        gray = _luminance(pixels)
    else:
        gray = pixels
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return _normalized_ink(gray, background=float(np.median(border)))


def stroke_width(mask: np.ndarray) -> float:
    """Typical stroke width in pixels of a boolean ink mask: 2 x area / boundary length.

    A stroke of width w and length L has area w*L and about 2*L boundary pixels.
    """
    padded = np.pad(mask, 1)
    interior = mask & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    area = np.count_nonzero(mask)
    return 2 * area / max(area - np.count_nonzero(interior), 1)


def read_image(data: bytes) -> np.ndarray:
    """Decode an uploaded PNG or JPEG into a uint8 array for `canvas_to_mnist`.

    Raises ImageError with a message fit for the user when the file is too large, is not a
    PNG or JPEG, or cannot be decoded. Big photos are shrunk to 1024 pixels a side; 16-bit
    grayscale PNGs are scaled to 0..255 by their 0..65535 range.
    """
    if len(data) > MAX_UPLOAD_BYTES:
        raise ImageError(f"The file is {len(data) / 1e6:.1f} MB; the limit is {MAX_UPLOAD_BYTES / 1e6:.0f} MB.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            picture = Image.open(io.BytesIO(data))
            if picture.format not in UPLOAD_FORMATS:
                raise ImageError(f"Only PNG and JPEG images are supported, not {picture.format or 'this file'}.")
            if max(picture.size) > MAX_SIDE:
                raise ImageError(f"The image is {picture.width}x{picture.height}; at most {MAX_SIDE} pixels a side.")
            picture.load()
    except ImageError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageError("The image's dimensions are far too large.") from error
    except Exception as error:  # noqa: BLE001 - any decoding failure means: not a usable image
        raise ImageError("This file is not a readable PNG or JPEG image.") from error
    picture = ImageOps.exif_transpose(picture)  # phone photos store their rotation separately
    if picture.mode.startswith("I"):  # a 16-bit grayscale PNG: "I;16", or "I" in some Pillow versions
        picture = _eight_bit_gray(picture)
    has_alpha = picture.mode in ("RGBA", "LA", "PA") or "transparency" in picture.info
    picture = picture.convert("RGBA" if has_alpha else "RGB")
    picture.thumbnail((UPLOAD_WORK_SIDE, UPLOAD_WORK_SIDE), Image.Resampling.BOX)
    return np.asarray(picture)


def _eight_bit_gray(picture: Image.Image) -> Image.Image:
    """An "L" (or "LA") image from a 16- or 32-bit integer grayscale one, scaled by its value range.

    Pillow's own convert() clips such values at 255 instead of scaling them: grey ink (say
    20000 of 65535) on a light background (60000) both become white, and no digit is found.
    """
    values = np.asarray(picture)
    high = 65535.0  # 16-bit PNG samples; Pillow reads some as 32-bit "I" with the same values
    low = min(float(values.min()), 0.0)
    if picture.mode == "I" and values.max() > high:  # genuine 32-bit values: the image's own range
        high = float(values.max())
    scaled = values.astype(np.float32)  # in place from here: a 4096 x 4096 upload is 64 MB as float32
    scaled -= low
    scaled *= 255 / (high - low)
    gray = Image.fromarray(np.round(scaled, out=scaled).astype(np.uint8))
    transparent = picture.info.get("transparency")  # a PNG's one transparent grey level (tRNS)
    if isinstance(transparent, int):
        alpha = np.where(values == transparent, 0, 255).astype(np.uint8)
        return Image.merge("LA", (gray, Image.fromarray(alpha)))
    return gray


def _validated(image: np.ndarray) -> np.ndarray:
    """The image as float32 0..1, after checking its type, shape and values."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected a numpy array, got {type(image).__name__}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise ValueError(f"expected an H x W, H x W x 3 or H x W x 4 image, got shape {image.shape}")
    if min(image.shape[:2]) < 1 or max(image.shape[:2]) > MAX_SIDE:
        raise ValueError(f"image sides must be 1 to {MAX_SIDE} pixels, got {image.shape[1]}x{image.shape[0]}")
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255
    if image.dtype == np.uint16:  # 16-bit images (np.asarray of a 16-bit PNG): scaled, not clipped
        return image.astype(np.float32) / 65535
    if np.issubdtype(image.dtype, np.floating):
        pixels = image.astype(np.float32)
        if not np.all((pixels >= 0) & (pixels <= 1)):  # also catches NaN
            raise ValueError("a float image must hold values from 0 to 1")
        return pixels
    raise ValueError(f"expected a uint8 (0..255), uint16 (0..65535) or float (0..1) image, got dtype {image.dtype}")


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _normalized_ink(gray: np.ndarray, background: float) -> np.ndarray:
    """Distance from the background level, scaled so the strongest ink is 1, minus faint noise."""
    ink = gray - background if background < 0.5 else background - gray
    peak = float(ink.max())
    if peak < MIN_CONTRAST:
        return np.zeros_like(gray)
    return np.clip((ink / peak - NOISE_FLOOR) / (1 - NOISE_FLOOR), 0, 1)


def _resize_to_fit(ink: np.ndarray, side: int) -> np.ndarray:
    """Scale so the longer side is `side`, keeping the aspect ratio; area-averaged when shrinking."""
    height, width = ink.shape
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(ink.astype(np.float32)).resize(size, resample))


def _adjust_strokes(work: np.ndarray, stroke: float) -> np.ndarray:
    """Dilate thin or erode thick strokes so they end near MNIST's width after the last resize.

    Dilating by s work pixels per side widens the digit too, which shrinks it in the final
    resize: solving (stroke + 2s) * 20 / (80 + 2s) = target gives the s used here.
    """
    if stroke < THIN_STROKE * WORK_SCALE:
        target = THICKEN_TO
    elif stroke > THICK_STROKE * WORK_SCALE:
        target = THIN_TO
    else:
        return work
    steps = round((target * WORK_SCALE - stroke) / (2 * (1 - target / DIGIT_BOX)))
    if steps > 0:
        return _morph(np.pad(work, steps), steps, np.maximum)
    # Take at most a third of the typical stroke off each side, so strokes do not break up.
    return _morph(work, min(-steps, int(stroke / 3)), np.minimum)


def _morph(ink: np.ndarray, steps: int, combine: np.ufunc) -> np.ndarray:
    """Grey dilation (np.maximum) or erosion (np.minimum) by `steps` pixels with an octagon:
    alternating 4-neighbour and 8-neighbour steps grow about equally in every direction."""
    for step in range(steps):
        padded = np.pad(ink, 1)
        out = combine(ink, padded[:-2, 1:-1])
        for shifted in (padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]):
            out = combine(out, shifted)
        if step % 2:
            for shifted in (padded[:-2, :-2], padded[:-2, 2:], padded[2:, :-2], padded[2:, 2:]):
                out = combine(out, shifted)
        ink = out
    return ink


def _trim(ink: np.ndarray) -> np.ndarray:
    rows, columns = np.flatnonzero(ink.max(1) > 0), np.flatnonzero(ink.max(0) > 0)
    return ink[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]


def _center_by_mass(digit: np.ndarray) -> np.ndarray:
    """Paste into a 28x28 field with the centre of mass at pixel 14 (where MNIST has it)."""
    mass = digit.sum()
    center_row = (digit.sum(1) @ np.arange(digit.shape[0])) / mass
    center_column = (digit.sum(0) @ np.arange(digit.shape[1])) / mass
    top, left = round(FIELD / 2 - center_row), round(FIELD / 2 - center_column)
    field = np.zeros((FIELD, FIELD), dtype=np.float32)
    rows = slice(max(top, 0), min(top + digit.shape[0], FIELD))
    columns = slice(max(left, 0), min(left + digit.shape[1], FIELD))
    field[rows, columns] = digit[rows.start - top : rows.stop - top, columns.start - left : columns.stop - left]
    return field
