"""MNIST (and Fashion-MNIST) as uint8 tensors, served as shuffled, normalised batches.

Files come through `torchvision.datasets` from a data folder: the `data_dir` argument, else
the `MNIST_DATA_DIR` environment variable, else `./data`. Missing files are downloaded with
progress reported to a callback; when that fails (offline) `DatasetMissing` says which files
are needed and where they go. Nothing is ever written to a folder that already holds the
files, so a read-only data folder works.

Each split is read from disk once per process and kept as uint8 (47 MB for the training
split). `Batches` keeps it on the training device and builds every batch there: no
per-sample PIL conversion, no worker processes, and a fresh shuffle every epoch.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision import datasets

DATASETS = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}
# Mean and standard deviation of the training pixels (scaled to 0..1). Training, evaluation
# and the Draw page all normalise through `normalize`, so they can never disagree.
NORMALIZATION = {"mnist": (0.1307, 0.3081), "fashion-mnist": (0.2860, 0.3530)}
DOWNLOAD_TIMEOUT_SECONDS = 30

ProgressCallback = Callable[[int, int, str], None]  # (bytes done, bytes total, file name)


class DatasetMissing(FileNotFoundError):
    """The dataset's files are not in the data folder and could not be downloaded."""


def default_data_dir() -> Path:
    return Path(os.environ.get("MNIST_DATA_DIR") or "data")


def raw_folder(dataset: str = "mnist", data_dir: str | Path | None = None) -> Path:
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    return root / DATASETS[dataset].__name__ / "raw"


def expected_files(dataset: str = "mnist") -> list[str]:
    """The four uncompressed IDX files torchvision reads, e.g. 'train-images-idx3-ubyte'."""
    return [Path(url_name).name.removesuffix(".gz") for url_name, _ in DATASETS[dataset].resources]


def is_present(dataset: str = "mnist", data_dir: str | Path | None = None) -> bool:
    folder = raw_folder(dataset, data_dir)
    return all((folder / name).is_file() for name in expected_files(dataset))


def missing_message(dataset: str, data_dir: str | Path | None, reason: str = "") -> str:
    folder = raw_folder(dataset, data_dir)
    files = ", ".join(expected_files(dataset))
    why = f" The download failed: {reason}." if reason else ""
    return (
        f"{DATASETS[dataset].__name__} is not in {folder.resolve()}.{why} Put the four files "
        f"{files} (or their .gz versions, unpacked) in that folder, or point MNIST_DATA_DIR "
        f"(or --data-dir) at a folder that holds {DATASETS[dataset].__name__}/raw/."
    )


def download(
    dataset: str = "mnist",
    data_dir: str | Path | None = None,
    on_progress: ProgressCallback | None = None,
) -> Path:
    """Download and unpack the missing files, trying each of torchvision's mirrors in turn.

    Each file is streamed to a temporary file, checked against its MD5 and only then
    renamed into place, so an interrupted download never leaves a broken file behind.
    """
    cls = DATASETS[dataset]
    folder = raw_folder(dataset, data_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DatasetMissing(missing_message(dataset, data_dir, f"cannot create the folder ({error})")) from error
    for file_name, md5 in cls.resources:
        target = folder / file_name.removesuffix(".gz")
        if target.is_file():
            continue
        errors = []
        for mirror in cls.mirrors:
            try:
                _fetch_and_unpack(mirror + file_name, md5, target, on_progress)
                break
            except Exception as error:  # noqa: BLE001 - any failure means: try the next mirror
                errors.append(f"{mirror}: {error}")
        else:
            raise DatasetMissing(missing_message(dataset, data_dir, "; ".join(errors)))
    return folder


def _fetch_and_unpack(url: str, md5: str, target: Path, on_progress: ProgressCallback | None) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "mnist-core"})
    with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response:
        total = int(response.headers.get("Content-Length") or 0)
        digest = hashlib.md5()
        compressed = tempfile.SpooledTemporaryFile(max_size=64 << 20)
        done = 0
        while chunk := response.read(1 << 16):
            compressed.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            if on_progress:
                on_progress(done, total, target.name)
    if digest.hexdigest() != md5:
        raise OSError(f"checksum mismatch for {url}")
    compressed.seek(0)
    partial = target.with_name(target.name + ".part")
    with gzip.open(compressed) as unpacked, open(partial, "wb") as out:
        shutil.copyfileobj(unpacked, out)
    os.replace(partial, target)


_cache: dict[tuple[str, str, bool], tuple[torch.Tensor, torch.Tensor]] = {}
_cache_lock = threading.Lock()


def load_split(
    dataset: str = "mnist",
    train: bool = True,
    data_dir: str | Path | None = None,
    download_missing: bool = True,
    on_progress: ProgressCallback | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 [N, 28, 28], labels int64 [N]) of one split, read from disk once per process."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    key = (dataset, str(root.resolve()), train)
    with _cache_lock:
        if key not in _cache:
            if not is_present(dataset, root):
                if not download_missing:
                    raise DatasetMissing(missing_message(dataset, root))
                download(dataset, root, on_progress)
            split = DATASETS[dataset](str(root), train=train, download=False)
            _cache[key] = (split.data.contiguous(), split.targets.long())
        return _cache[key]


def normalize(images: torch.Tensor, dataset: str = "mnist") -> torch.Tensor:
    """uint8 or 0..1 float images [N, 28, 28] -> normalised float [N, 1, 28, 28]."""
    mean, std = NORMALIZATION[dataset]
    if images.dtype == torch.uint8:
        images = images.float().div_(255)
    return images.unsqueeze(1).sub(mean).div_(std)


class Batches:
    """Shuffled batches of (normalised images, labels), built on `device` from resident tensors.

    One pass over the data is one epoch; each pass reshuffles with `generator`. The last
    batch may be smaller, as with a DataLoader without drop_last.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        device: torch.device,
        dataset: str = "mnist",
        shuffle: bool = True,
        augment: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.batch_size = batch_size
        self.device = device
        self.dataset = dataset
        self.shuffle = shuffle
        self.augment = augment
        self.generator = generator

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        count = len(self.labels)
        if self.shuffle:  # the permutation is drawn on the CPU so a seed means the same order everywhere
            order = torch.randperm(count, generator=self.generator).to(self.device)
        else:
            order = torch.arange(count, device=self.device)
        for start in range(0, count, self.batch_size):
            index = order[start : start + self.batch_size]
            images = self.images[index]
            if self.augment:
                images = random_affine(images, self.generator)
            yield normalize(images, self.dataset), self.labels[index]


def random_affine(
    images: torch.Tensor,
    generator: torch.Generator | None = None,
    degrees: float = 10.0,
    scale: float = 0.1,
    shift_pixels: float = 2.0,
) -> torch.Tensor:
    """Randomly rotate, scale and shift each uint8 image a little (the way people write)."""
    count = images.shape[0]
    draws = torch.rand(count, 4, generator=generator).to(images.device) * 2 - 1  # in [-1, 1)
    angle = draws[:, 0] * degrees * torch.pi / 180
    zoom = 1 + draws[:, 1] * scale
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    shift = draws[:, 2:] * shift_pixels * 2 / images.shape[-1]
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    pixels = images.float().div_(255).unsqueeze(1)
    grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)
    return F.grid_sample(pixels, grid, align_corners=False).squeeze(1)
