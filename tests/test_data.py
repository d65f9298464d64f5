"""Data: reading IDX files (as torchvision would), download with progress, batches on the device."""

import gzip
import hashlib
import shutil

import pytest
import torch

from mnist_core import data
from mnist_core.data import Batches, DatasetMissing, expected_files, load_split, normalize, random_affine
from tests.conftest import TINY_TEST, TINY_TRAIN


def test_load_split_reads_idx_files_as_uint8(tiny_data_dir):
    images, labels = load_split("mnist", True, tiny_data_dir)
    assert images.shape == (TINY_TRAIN, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (TINY_TRAIN,) and labels.dtype == torch.int64
    assert set(labels.tolist()) == set(range(10))
    test_images, _ = load_split("mnist", False, tiny_data_dir)
    assert len(test_images) == TINY_TEST


def test_the_files_read_as_torchvision_reads_them(tiny_data_dir):
    from torchvision import datasets

    for train in (True, False):
        theirs = datasets.MNIST(str(tiny_data_dir), train=train, download=False)
        images, labels = load_split("mnist", train, tiny_data_dir)
        assert torch.equal(images, theirs.data) and torch.equal(labels, theirs.targets)


def test_the_names_are_torchvisions():
    from torchvision import datasets

    for name, cls in (("mnist", datasets.MNIST), ("fashion-mnist", datasets.FashionMNIST)):
        assert data.torchvision_dataset(name) is cls and data.DATASET_NAMES[name] == cls.__name__
        assert expected_files(name) == [file.removesuffix(".gz") for file, _ in cls.resources]
    assert data.CLASS_NAMES["fashion-mnist"] == tuple(datasets.FashionMNIST.classes)


def test_training_needs_no_torchvision():
    """Importing torchvision costs a training process about a second of CPU; only a download needs it."""
    import subprocess
    import sys

    code = "import sys, mnist_core.train, mnist_core.worker, mnist_core.inference; print('torchvision' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr


def test_each_split_is_read_once(tiny_data_dir):
    assert load_split("mnist", True, tiny_data_dir)[0] is load_split("mnist", True, tiny_data_dir)[0]


def test_loading_writes_nothing_into_the_data_folder(tiny_data_dir):
    before = sorted(p.name for p in tiny_data_dir.rglob("*"))
    data._cache.clear()
    load_split("mnist", True, tiny_data_dir)
    assert sorted(p.name for p in tiny_data_dir.rglob("*")) == before


def test_missing_files_offline_give_a_message_that_says_what_to_do(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(data.urllib.request, "urlopen", offline)
    with pytest.raises(DatasetMissing) as error:
        load_split("mnist", True, tmp_path)
    message = str(error.value)
    assert str((tmp_path / "MNIST" / "raw").resolve()) in message
    for name in expected_files("mnist"):
        assert name in message
    assert "MNIST_DATA_DIR" in message and "network is unreachable" in message


def test_download_fetches_checks_and_unpacks_with_progress(tiny_data_dir, tmp_path, monkeypatch):
    # Serve gzipped copies of the tiny files from a file:// "mirror": the real download code runs.
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    resources = []
    for name in expected_files("mnist"):
        with (
            open(tiny_data_dir / "MNIST" / "raw" / name, "rb") as source,
            gzip.open(mirror / f"{name}.gz", "wb") as out,
        ):
            shutil.copyfileobj(source, out)
        resources.append((f"{name}.gz", hashlib.md5((mirror / f"{name}.gz").read_bytes()).hexdigest()))
    monkeypatch.setattr(data.torchvision_dataset("mnist"), "mirrors", ["file:///nonexistent/", f"file://{mirror}/"])
    monkeypatch.setattr(data.torchvision_dataset("mnist"), "resources", resources)
    reports = []
    target = tmp_path / "downloaded"
    images, labels = load_split("mnist", False, target, on_progress=lambda *report: reports.append(report))
    expected_images, expected_labels = load_split("mnist", False, tiny_data_dir)
    assert torch.equal(images, expected_images) and torch.equal(labels, expected_labels)
    assert {report[2] for report in reports} == set(expected_files("mnist"))
    assert all(done <= total for done, total, _ in reports)
    assert not list((target / "MNIST" / "raw").glob("*.part"))


def test_a_corrupt_download_is_rejected(tiny_data_dir, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in expected_files("mnist"):
        (mirror / f"{name}.gz").write_bytes(gzip.compress(b"not mnist"))
    monkeypatch.setattr(data.torchvision_dataset("mnist"), "mirrors", [f"file://{mirror}/"])
    with pytest.raises(DatasetMissing, match="checksum"):
        data.download("mnist", tmp_path / "target")
    assert not any((tmp_path / "target" / "MNIST" / "raw").iterdir())


def test_batches_cover_every_image_once_per_epoch_and_reshuffle(tiny_data_dir):
    images, labels = load_split("mnist", True, tiny_data_dir)
    batches = Batches(
        images, torch.arange(len(labels)), 100, torch.device("cpu"), generator=torch.Generator().manual_seed(0)
    )
    assert len(batches) == 6  # 512 = 5 * 100 + 12
    first = torch.cat([index for _, index in batches])
    second = torch.cat([index for _, index in batches])
    assert sorted(first.tolist()) == list(range(TINY_TRAIN)) == sorted(second.tolist())
    assert not torch.equal(first, second)
    shapes = [x.shape for x, _ in batches]
    assert shapes[0] == (100, 1, 28, 28) and shapes[-1] == (12, 1, 28, 28)


def test_normalize_uses_the_training_mean_and_std():
    images = torch.tensor([[[0, 255]]], dtype=torch.uint8).expand(1, 28, 2)
    mean, std = data.NORMALIZATION["mnist"]
    result = normalize(images)
    assert result.shape == (1, 1, 28, 2)
    assert torch.allclose(result[0, 0, 0], torch.tensor([-mean / std, (1 - mean) / std]))


def test_random_affine_keeps_shape_range_and_moves_ink_a_little():
    images = torch.zeros(8, 28, 28, dtype=torch.uint8)
    images[:, 10:18, 12:16] = 255
    moved = random_affine(images, torch.Generator().manual_seed(0))
    assert moved.shape == (8, 28, 28) and 0 <= moved.min() and moved.max() <= 1
    assert not torch.allclose(moved, images.float() / 255)
    # the ink stays roughly the same amount: shifts and small rotations do not erase the digit
    assert torch.allclose(moved.sum((1, 2)), images.float().sum((1, 2)) / 255, rtol=0.25)
