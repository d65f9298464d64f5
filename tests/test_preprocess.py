"""Preprocessing: a digit pasted anywhere on a canvas, in any ink convention, comes back as MNIST made it."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnist_core.preprocess import ImageError, _eight_bit_gray, canvas_to_mnist, ink_map, read_image, stroke_width
from tests.conftest import real_data_dir

CONVENTIONS = ("light-on-dark", "alpha-only", "dark-on-light")


def encode(ink: np.ndarray, convention: str) -> np.ndarray:
    """uint8 canvas pixels for ink (0..1): opaque RGBA white on black, RGBA with ink only in
    alpha (streamlit-drawable-canvas's default), or RGB black on white (paper)."""
    level = (ink * 255).round().astype(np.uint8)
    if convention == "light-on-dark":
        return np.dstack([level, level, level, np.full_like(level, 255)])
    if convention == "alpha-only":
        return np.dstack([np.zeros_like(level)] * 3 + [level])
    return np.dstack([255 - level] * 3)


def paste(digit: np.ndarray, scale: int, top: int, left: int, side: int = 280) -> np.ndarray:
    """A 28x28 uint8 digit enlarged `scale` times (bilinear) on an empty side x side canvas: 0..1 ink."""
    big = np.asarray(Image.fromarray(digit).resize((28 * scale, 28 * scale), Image.Resampling.BILINEAR))
    canvas = np.zeros((side, side), dtype=np.float32)
    canvas[top : top + big.shape[0], left : left + big.shape[1]] = big / 255
    return canvas


def similarity(image: np.ndarray, reference: np.ndarray) -> float:
    """Correlation of two 28x28 images, allowing a 1-pixel shift: MNIST rounded its centring to whole pixels."""
    return max(
        np.corrcoef(np.roll(image, (dy, dx), (0, 1)).ravel(), reference.ravel())[0, 1]
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    )


def synthetic_seven() -> np.ndarray:
    """An MNIST-style '7' made independently: drawn at 10x, area-averaged to 28x28, centred by mass."""
    big = Image.new("L", (280, 280), 0)
    ImageDraw.Draw(big).line([(80, 50), (200, 50), (120, 220)], fill=255, width=26, joint="curve")
    digit = np.asarray(big.resize((28, 28), Image.Resampling.BOX)).astype(np.float64)
    rows, columns = np.indices(digit.shape)
    shift = (round(14 - (rows * digit).sum() / digit.sum()), round(14 - (columns * digit).sum() / digit.sum()))
    return np.roll(digit, shift, (0, 1)).round().astype(np.uint8)


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_synthetic_digit_small_in_a_corner_comes_back(convention):
    digit = synthetic_seven()
    for scale, top, left in ((3, 4, 190), (6, 100, 2), (9, 20, 20)):
        result = canvas_to_mnist(encode(paste(digit, scale, top, left), convention))
        assert similarity(result, digit) > 0.95, (scale, top, left)


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_real_mnist_digits_small_in_a_corner_come_back(convention):
    folder = real_data_dir()
    if folder is None:
        pytest.skip("set MNIST_DATA_DIR to a folder with the real MNIST")
    from mnist_core.data import load_split

    images, _ = load_split("mnist", train=False, data_dir=folder, download_missing=False)
    scores = [
        similarity(canvas_to_mnist(encode(paste(digit, 3, 190, 4), convention)), digit / 255)
        for digit in images[:40].numpy()
    ]
    # Most come back nearly unchanged; thin-stroked ones are thickened toward MNIST's typical width.
    assert np.median(scores) > 0.95 and min(scores) > 0.75


def test_the_three_ink_conventions_give_the_same_image():
    ink = paste(synthetic_seven(), 4, 30, 150)
    light, alpha, dark = (canvas_to_mnist(encode(ink, convention)) for convention in CONVENTIONS)
    np.testing.assert_allclose(light, alpha, atol=1e-5)
    np.testing.assert_allclose(light, dark, atol=1e-5)


def test_output_is_28x28_in_0_to_1_fitting_a_20_pixel_box_centred_by_mass():
    result = canvas_to_mnist(encode(paste(synthetic_seven(), 5, 10, 100), "light-on-dark"))
    assert result.shape == (28, 28) and result.dtype == np.float32
    assert result.min() >= 0 and result.max() == pytest.approx(1)
    rows, columns = np.nonzero(result)
    assert max(np.ptp(rows), np.ptp(columns)) + 1 <= 21  # 20, plus a pixel for the centring's rounding
    center = np.array([(np.indices(result.shape)[axis] * result).sum() / result.sum() for axis in (0, 1)])
    assert np.all(np.abs(center - 14) <= 0.5)


def test_a_tall_thin_one_stays_tall_and_thin():
    canvas = np.zeros((280, 280), dtype=np.uint8)
    canvas[30:250, 130:146] = 255  # a 16-pixel-wide stroke, 220 tall
    result = canvas_to_mnist(canvas)
    rows, columns = np.nonzero(result > 0.1)
    assert np.ptp(rows) + 1 >= 19 and np.ptp(columns) + 1 <= 5


def test_thin_strokes_on_a_big_canvas_are_thickened_to_mnist_width():
    big = Image.new("L", (560, 560), 0)
    ImageDraw.Draw(big).line([(150, 60), (420, 60), (250, 500)], fill=255, width=5)  # ~0.2 px at 28x28
    result = canvas_to_mnist(np.asarray(big))
    assert 2 <= stroke_width(result > 0.5) <= 3.5
    assert result.max() == pytest.approx(1)


def test_fat_strokes_are_thinned_toward_mnist_width():
    big = Image.new("L", (280, 280), 0)
    ImageDraw.Draw(big).line([(90, 50), (200, 50), (130, 230)], fill=255, width=60)  # ~6 px at 28x28
    result = canvas_to_mnist(np.asarray(big))
    assert stroke_width(result > 0.5) <= 4.5


def test_any_scribble_of_any_size_gives_an_image_or_none():
    rng = np.random.default_rng(0)
    for _ in range(40):
        height, width = rng.integers(1, 400, size=2)
        image = (rng.random((height, width)) < rng.random() * 0.05).astype(np.uint8) * 255
        result = canvas_to_mnist(np.dstack([image] * 3 + [np.full_like(image, 255)]))
        assert result is None or (result.shape == (28, 28) and 0 <= result.min() and result.max() <= 1)


def test_grayscale_rgb_rgba_and_float_images_are_accepted():
    ink = paste(synthetic_seven(), 3, 0, 0, side=100)
    level = (ink * 255).astype(np.uint8)
    expected = canvas_to_mnist(level)
    for image in (level[..., None], np.dstack([level] * 3), encode(ink, "alpha-only"), ink.astype(np.float64)):
        np.testing.assert_allclose(canvas_to_mnist(image), expected, atol=0.02)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((280, 280, 4), dtype=np.uint8),  # the empty transparent canvas
        np.dstack([np.zeros((280, 280), np.uint8)] * 3 + [np.full((280, 280), 255, np.uint8)]),  # empty black
        np.full((280, 280, 3), 255, dtype=np.uint8),  # blank paper
        np.full((50, 50), 128, dtype=np.uint8),  # one flat grey
        np.random.default_rng(0).integers(100, 120, (280, 280)).astype(np.uint8),  # faint noise only
    ],
)
def test_empty_images_give_none(image):
    assert canvas_to_mnist(image) is None


def test_a_stray_speck_is_nearly_empty():
    canvas = np.zeros((280, 280, 4), dtype=np.uint8)
    canvas[100:102, 100:102, 3] = 255
    assert canvas_to_mnist(canvas) is None


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((28, 28, 2), np.uint8), "shape"),
        (np.zeros(784, np.uint8), "shape"),
        (np.zeros((0, 28), np.uint8), "sides"),
        (np.zeros((5000, 10), np.uint8), "sides"),
        (np.zeros((28, 28), np.int64), "dtype"),
        (np.full((28, 28), 2.0), "0 to 1"),
        (np.full((28, 28), np.nan), "0 to 1"),
        ([[0, 1], [1, 0]], "numpy array"),
    ],
)
def test_wrong_images_raise_a_clear_value_error(image, message):
    with pytest.raises(ValueError, match=message):
        canvas_to_mnist(image)


def test_ink_map_finds_ink_in_each_convention():
    ink = paste(synthetic_seven(), 2, 5, 5, side=80)
    for convention in CONVENTIONS:
        found = ink_map(encode(ink, convention))
        assert found.shape == (80, 80) and found.max() == pytest.approx(1)
        assert np.corrcoef(found.ravel(), ink.ravel())[0, 1] > 0.99


def png_bytes(image: Image.Image, file_format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, file_format)
    return buffer.getvalue()


def test_read_image_decodes_png_and_jpeg():
    paper = Image.new("RGB", (120, 90), "white")
    ImageDraw.Draw(paper).line([(40, 10), (60, 80)], fill="black", width=8)
    for file_format in ("PNG", "JPEG"):
        pixels = read_image(png_bytes(paper, file_format))
        assert pixels.shape == (90, 120, 3) and pixels.dtype == np.uint8
        assert canvas_to_mnist(pixels) is not None
    transparent = Image.new("RGBA", (50, 50), (0, 0, 0, 0))
    assert read_image(png_bytes(transparent)).shape == (50, 50, 4)


def test_read_image_shrinks_big_photos():
    assert max(read_image(png_bytes(Image.new("L", (3000, 1500), 255))).shape) == 1024


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"this is not an image", "not a readable PNG or JPEG"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "not a readable PNG or JPEG"),
        (b"x" * (2 * 1024 * 1024 + 1), "limit is 2 MB"),
    ],
)
def test_read_image_refuses_what_is_not_a_usable_image(data, message):
    with pytest.raises(ImageError, match=message):
        read_image(data)


def test_read_image_refuses_huge_dimensions_and_other_formats():
    with pytest.raises(ImageError, match="at most 4096 pixels"):
        read_image(png_bytes(Image.new("L", (5000, 8))))
    with pytest.raises(ImageError, match="Only PNG and JPEG"):
        read_image(png_bytes(Image.new("L", (20, 20)), "GIF"))


def stroke_on(background: int, ink: int, dtype=np.uint16) -> tuple[np.ndarray, np.ndarray]:
    """A 120 x 90 image of one background level with an L-shaped stroke of another; and where the stroke is."""
    where = np.zeros((120, 90), dtype=bool)
    where[20:100, 30:40] = True
    where[90:100, 30:70] = True
    return np.where(where, ink, background).astype(dtype), where


def assert_ink_on_the_stroke(pixels: np.ndarray, where: np.ndarray) -> None:
    found = ink_map(pixels)
    assert found[where].mean() > 0.9 and found[~where].max() < 0.1
    assert canvas_to_mnist(pixels) is not None


@pytest.mark.parametrize(("background", "ink"), [(0, 30000), (60000, 20000), (65535, 40000), (2000, 16000)])
def test_a_16_bit_png_with_grey_ink_is_scaled_not_clipped(background, ink):
    values, where = stroke_on(background, ink)
    picture = Image.fromarray(values)
    assert picture.mode == "I;16"  # what Pillow makes of a 16-bit grayscale PNG, too
    pixels = read_image(png_bytes(picture))
    assert pixels.dtype == np.uint8 and pixels.shape == (120, 90, 3)
    assert abs(int(pixels[0, 0, 0]) - round(background / 257)) <= 1 and abs(int(pixels[where][0, 0]) - round(ink / 257)) <= 1
    assert_ink_on_the_stroke(pixels, where)
    # The same image as 8 bits, or as a uint16 array handed straight to canvas_to_mnist, gives the same digit.
    eight_bit = np.round(values / 257).astype(np.uint8)
    np.testing.assert_allclose(canvas_to_mnist(pixels), canvas_to_mnist(eight_bit), atol=0.02)
    np.testing.assert_allclose(canvas_to_mnist(values), canvas_to_mnist(eight_bit), atol=0.02)


def test_a_16_bit_png_with_a_transparent_level_keeps_its_transparency():
    values, where = stroke_on(0, 30000)
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, "PNG", transparency=0)
    pixels = read_image(buffer.getvalue())
    assert pixels.shape == (120, 90, 4) and pixels[..., 3][~where].max() == 0 and pixels[..., 3][where].min() == 255
    assert_ink_on_the_stroke(pixels, where)


def test_32_bit_grayscale_is_scaled_by_16_bits_or_by_its_own_maximum():
    values, where = stroke_on(60000, 20000, np.int32)
    gray = np.asarray(_eight_bit_gray(Image.fromarray(values)))  # mode "I", as older Pillows read 16-bit PNGs
    assert gray[0, 0] == round(60000 / 257) and gray[where].max() == round(20000 / 257)
    values, where = stroke_on(0, 1_000_000, np.int32)
    gray = np.asarray(_eight_bit_gray(Image.fromarray(values)))
    assert gray[0, 0] == 0 and gray[where].min() == 255


def png_48_bit_rgb(values: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG, written by hand: Pillow reads such files but cannot write them."""
    height, width = values.shape[:2]
    rows = b"".join(b"\x00" + values[row].astype(">u2").tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)  # 16 bits, colour type 2 = RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_a_48_bit_rgb_png_with_grey_ink_is_read_by_its_range():
    values, where = stroke_on(60000, 20000)
    pixels = read_image(png_48_bit_rgb(np.dstack([values] * 3)))  # Pillow gives 8-bit RGB, scaled
    assert pixels.dtype == np.uint8 and pixels.shape == (120, 90, 3)
    assert_ink_on_the_stroke(pixels, where)
