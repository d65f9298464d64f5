"""A damaged dataset file gives `DatasetCorrupt` naming the file, the fault and the fix; never garbage.

Each fault is written for real into a copy of a dataset in tmp_path, then read the way the
app reads it. The checksum tests need the real MNIST (MNIST_DATA_DIR), the only files with a
known checksum.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from mnist_core import data
from mnist_core.config import TrainConfig
from mnist_core.data import DatasetCorrupt, check_files, expected_files, load_split
from mnist_core.events import Failed
from mnist_core.train import fit
from tests.conftest import TINY_TEST, TINY_TRAIN, real_data_dir, run_command, tiny_digits, write_idx

ROOT = Path(__file__).resolve().parent.parent
needs_real_data = pytest.mark.skipif(real_data_dir() is None, reason="MNIST_DATA_DIR does not hold the real MNIST")


@pytest.fixture
def tiny_copy(tiny_data_dir, tmp_path) -> Path:
    """A copy of the tiny dataset that a test may damage; the data folder (holds MNIST/raw)."""
    root = tmp_path / "data"
    shutil.copytree(tiny_data_dir, root)
    return root


@pytest.fixture
def real_copy(tmp_path) -> Path:
    """A copy of the real MNIST's four IDX files (55 MB); the data folder (holds MNIST/raw)."""
    if real_data_dir() is None:
        pytest.skip("MNIST_DATA_DIR does not hold the real MNIST")
    raw = tmp_path / "real" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in expected_files("mnist"):
        shutil.copyfile(real_data_dir() / "MNIST" / "raw" / name, raw / name)
    return tmp_path / "real"


@pytest.fixture
def hash_calls(monkeypatch) -> list[str]:
    """The files hashed from now on (by name), through the real hashing function."""
    calls = []
    real_sha256 = data._sha256

    def counting(file):
        calls.append(Path(file.name).name)
        return real_sha256(file)

    monkeypatch.setattr(data, "_sha256", counting)
    return calls


def raw(root: Path, name: str) -> Path:
    return root / "MNIST" / "raw" / name


def corrupt_message(root: Path) -> str:
    with pytest.raises(DatasetCorrupt) as error:
        load_split("mnist", True, root, download_missing=False)
    return str(error.value)


def test_an_intact_small_dataset_passes_without_hashing(tiny_copy, hash_calls):
    assert check_files("mnist", tiny_copy) == tiny_copy / "MNIST" / "raw"
    assert hash_calls == []  # no original has 512 images: there is no checksum to compare with
    assert len(load_split("mnist", True, tiny_copy)[0]) == TINY_TRAIN


def test_a_truncated_images_file_is_named_with_its_expected_size(tiny_copy):
    path = raw(tiny_copy, "train-images-idx3-ubyte")
    with open(path, "r+b") as file:
        file.truncate(100_000)
    message = corrupt_message(tiny_copy)
    assert str(path) in message
    expected_bytes = 16 + TINY_TRAIN * 28 * 28
    assert f"is cut short: its header announces {TINY_TRAIN} images ({expected_bytes:,} bytes)" in message
    assert "but the file has 100,000 bytes" in message
    assert "Delete it so it is downloaded again" in message


def test_an_images_file_with_extra_bytes_is_caught(tiny_copy):
    path = raw(tiny_copy, "t10k-images-idx3-ubyte")
    with open(path, "ab") as file:
        file.write(b"\0" * 784)
    message = corrupt_message(tiny_copy)
    assert str(path) in message and "is longer than its header says" in message


@pytest.mark.parametrize(
    ("name", "kind"), [("train-images-idx3-ubyte", "an image file"), ("t10k-labels-idx1-ubyte", "a label file")]
)
def test_a_damaged_header_is_named(tiny_copy, name, kind):
    path = raw(tiny_copy, name)
    with open(path, "r+b") as file:
        file.write(b"\x1f\x8b\x08\x00")  # e.g. a gzip archive saved under the unpacked name
    message = corrupt_message(tiny_copy)
    assert str(path) in message
    assert f"does not start with the IDX header of {kind}" in message
    assert "should start with the bytes 00 00 08 0" in message and "but starts with 1f 8b 08 00" in message
    assert "Delete it so it is downloaded again, or replace it with the original" in message


def test_images_that_are_not_28_by_28_are_caught(tiny_copy):
    path = raw(tiny_copy, "train-images-idx3-ubyte")
    with open(path, "r+b") as file:
        file.seek(8)
        file.write(struct.pack(">I", 32))
    message = corrupt_message(tiny_copy)
    assert str(path) in message and "holds images of 32x28 pixels, not 28x28" in message


def test_a_label_out_of_range_is_caught_before_training_sees_it(tiny_copy):
    path = raw(tiny_copy, "train-labels-idx1-ubyte")
    with open(path, "r+b") as file:
        file.seek(8 + 17)
        file.write(bytes([99]))
    message = corrupt_message(tiny_copy)
    assert str(path) in message
    assert "holds the label 99 (at index 17); labels go from 0 to 9" in message

    result = fit(TrainConfig(model="fast", epochs=1, batch_size=64), data_dir=tiny_copy)
    assert isinstance(result.outcome, Failed)
    assert "holds the label 99" in result.outcome.message and "out of bounds" not in result.outcome.message
    assert result.epochs == []


def test_images_and_labels_with_different_counts_name_both_files(tiny_copy):
    images, labels = tiny_digits(TINY_TEST, seed=2)
    folder = tiny_copy / "MNIST" / "raw"
    write_idx(folder, "t10k", images, labels[:150])
    message = corrupt_message(tiny_copy)
    assert str(folder / "t10k-images-idx3-ubyte") in message and str(folder / "t10k-labels-idx1-ubyte") in message
    assert f"holds {TINY_TEST} images but" in message and "holds 150 labels" in message
    assert "Delete both files so they are downloaded again" in message


def test_downloaded_files_are_checked_too(tiny_data_dir, tmp_path, monkeypatch):
    # A mirror whose archives match their MD5s but hold a label 99: only the check after unpacking sees it.
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    resources = []
    for name in expected_files("mnist"):
        content = bytearray(raw(tiny_data_dir, name).read_bytes())
        if name == "t10k-labels-idx1-ubyte":
            content[8] = 99
        (mirror / f"{name}.gz").write_bytes(gzip.compress(bytes(content)))
        resources.append((f"{name}.gz", hashlib.md5((mirror / f"{name}.gz").read_bytes()).hexdigest()))
    monkeypatch.setattr(data.torchvision_dataset("mnist"), "mirrors", [f"file://{mirror}/"])
    monkeypatch.setattr(data.torchvision_dataset("mnist"), "resources", resources)
    target = tmp_path / "downloaded"
    with pytest.raises(DatasetCorrupt, match="holds the label 99") as error:
        load_split("mnist", False, target)
    assert str(raw(target, "t10k-labels-idx1-ubyte")) in str(error.value)


@needs_real_data
def test_flipped_bytes_in_the_real_training_images_are_caught_by_the_checksum(real_copy):
    path = raw(real_copy, "train-images-idx3-ubyte")
    flip_middle(path, 100_000)
    message = corrupt_message(real_copy)
    assert str(path) in message
    assert "differs from the original MNIST file (its SHA-256 checksum does not match): it is damaged" in message
    assert "Delete it so it is downloaded again" in message


@needs_real_data
def test_the_real_files_pass_and_each_is_hashed_once_until_it_changes(real_copy, hash_calls):
    check_files("mnist", real_copy)
    assert sorted(hash_calls) == sorted(expected_files("mnist"))
    check_files("mnist", real_copy)
    images, labels = load_split("mnist", True, real_copy)
    assert images.shape == (60_000, 28, 28) and int(labels.max()) == 9
    assert len(hash_calls) == 4  # nothing hashed a second time

    path = raw(real_copy, "train-images-idx3-ubyte")
    original = path.read_bytes()
    flip_middle(path, 100_000)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))  # a new mtime even on a coarse-clock file system
    with pytest.raises(DatasetCorrupt, match="checksum"):
        check_files("mnist", real_copy)
    assert hash_calls[4:] == ["train-images-idx3-ubyte"]

    path.write_bytes(original[:-784])  # a new size: cut short, found without hashing
    with pytest.raises(DatasetCorrupt, match="is cut short"):
        check_files("mnist", real_copy)
    path.write_bytes(original)  # the original back: hashed again, and passes
    check_files("mnist", real_copy)
    assert hash_calls[4:] == ["train-images-idx3-ubyte", "train-images-idx3-ubyte"]


def flip_middle(path: Path, count: int) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as file:
        file.seek(size // 2)
        block = file.read(count)
        file.seek(size // 2)
        file.write(bytes(byte ^ 0xFF for byte in block))


def test_evaluate_on_the_command_line_prints_the_message_without_a_traceback(tiny_copy):
    path = raw(tiny_copy, "t10k-images-idx3-ubyte")
    with open(path, "r+b") as file:
        file.truncate(1_000)
    process = run_command("evaluate", "default", "--data-dir", tiny_copy)
    assert process.returncode == 1
    assert "Traceback" not in process.stderr
    assert process.stderr.startswith(f"error: {path} is cut short: its header announces {TINY_TEST} images")
    assert process.stdout == ""


def test_the_mistakes_page_shows_the_message(tiny_copy, tmp_path, monkeypatch):
    if not (ROOT / "models" / "default.pt").is_file():
        pytest.skip("no shipped default model to evaluate")
    path = raw(tiny_copy, "t10k-labels-idx1-ubyte")
    with open(path, "r+b") as file:
        file.seek(8)
        file.write(bytes([42]))
    monkeypatch.setenv("MNIST_DATA_DIR", str(tiny_copy))
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path / "no-runs"))
    app = AppTest.from_file(str(ROOT / "pages" / "mistakes.py"), default_timeout=30).run()
    assert not app.exception, app.exception
    assert app.error[0].value.startswith(f"{path} holds the label 42")
