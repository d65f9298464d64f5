"""MNIST (and Fashion-MNIST) as uint8 tensors, served as shuffled, normalised batches.

Files are the four original IDX files of each dataset, in torchvision's layout
(`<data folder>/MNIST/raw/`, `<data folder>/FashionMNIST/raw/`), in a data folder: the `data_dir`
argument, else the `MNIST_DATA_DIR` environment variable, else `./data`. Missing files are
downloaded from torchvision's mirrors, with progress reported to a callback; when that fails
(offline) `DatasetMissing` says which files are needed and where they go. Nothing is ever
written to a folder that already holds the files, so a read-only data folder works.

The files are read here (`_read_idx`), after `check_files` has checked their headers and sizes,
and torchvision is imported only to download: importing it costs every process that trains
about a second of CPU (it imports torch's compiler), the same again as torch itself.

Before a split is read, `check_files` checks the four IDX files (header, size, matching image
and label counts, labels 0..9 and, for full-size files, the SHA-256 of the original), so a
damaged file raises `DatasetCorrupt` naming the file and what to do rather than a raw error
or, worse, training on garbage. Each file is hashed once per process.

Each split is read from disk once per process and kept as uint8 (47 MB for the training
split). `Batches` keeps it on the training device and builds every batch there: no
per-sample PIL conversion, no worker processes, and a fresh shuffle every epoch.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import socket
import struct
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mnist_core.storage import shown_path

# Each dataset's name as torchvision spells it, which is also its folder: <data folder>/MNIST/raw/.
DATASET_NAMES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
SPLITS = ("train", "t10k")  # the prefixes of the training and test splits' files


def split_files(split: str) -> tuple[str, str]:
    """The uncompressed IDX files of a split, images then labels, as in the archives torchvision
    downloads: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte") for "train"."""
    return f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte"


FILE_NAMES = tuple(name for split in SPLITS for name in split_files(split))  # the same for both datasets
# Mean and standard deviation of the training pixels (scaled to 0..1). Training, evaluation
# and the Draw page all normalise through `normalize`, so they can never disagree.
NORMALIZATION = {"mnist": (0.1307, 0.3081), "fashion-mnist": (0.2860, 0.3530)}
DOWNLOAD_TIMEOUT_SECONDS = 30
# SHA-256 of the uncompressed originals: the files inside the .gz archives whose MD5s torchvision
# lists in `datasets.MNIST.resources` / `datasets.FashionMNIST.resources`. Those MD5s only cover
# the archives, while torchvision reads the unpacked files, so damage after unpacking (a flipped
# block, a bad copy) would otherwise go unnoticed.
ORIGINAL_SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}
# Only files of the original size are compared with the checksums above: smaller files in the
# same format (tests, subsets a user made) are legitimate and have no known checksum.
ORIGINAL_COUNTS = {"train": 60_000, "t10k": 10_000}
IMAGES_MAGIC, LABELS_MAGIC = 0x0803, 0x0801
IMAGE_SIZE = 28

# What each of the 10 classes is called: digits, or Fashion-MNIST's clothes (torchvision's names).
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "mnist": tuple(str(digit) for digit in range(10)),
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"),
}
CLASS_NOUN = {"mnist": "digit", "fashion-mnist": "class"}  # "the true digit", "the true class"

ProgressCallback = Callable[[int, int, str], None]  # (bytes done, bytes total, file name)


class DatasetMissing(FileNotFoundError):
    """The dataset's files are not in the data folder and could not be downloaded."""


class DatasetCorrupt(ValueError):
    """A dataset file is damaged: cut short, with a wrong header or labels, or not the original."""


def default_data_dir() -> Path:
    return Path(os.environ.get("MNIST_DATA_DIR") or "data")


def torchvision_dataset(dataset: str):
    """torchvision's class for the dataset, which lists its download mirrors and archives."""
    from torchvision import datasets  # only to download: see the module's docstring

    return getattr(datasets, DATASET_NAMES[dataset])


def raw_folder(dataset: str = "mnist", data_dir: str | Path | None = None) -> Path:
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    return root / DATASET_NAMES[dataset] / "raw"


def expected_files(dataset: str = "mnist") -> list[str]:
    """The four uncompressed IDX files, e.g. 'train-images-idx3-ubyte' (the same for both datasets)."""
    return list(FILE_NAMES)


def is_present(dataset: str = "mnist", data_dir: str | Path | None = None) -> bool:
    folder = raw_folder(dataset, data_dir)
    return all((folder / name).is_file() for name in expected_files(dataset))


def missing_message(dataset: str, data_dir: str | Path | None, reason: str = "") -> str:
    folder = raw_folder(dataset, data_dir)
    files = ", ".join(expected_files(dataset))
    why = f" The download failed: {reason}." if reason else ""
    return (
        f"{DATASET_NAMES[dataset]} is not in {shown_path(folder)}.{why} Put the four files "
        f"{files} (or their .gz versions, unpacked) in that folder, or point MNIST_DATA_DIR "
        f"(or --data-dir) at a folder that holds {DATASET_NAMES[dataset]}/raw/."
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
    cls = torchvision_dataset(dataset)
    folder = raw_folder(dataset, data_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DatasetMissing(missing_message(dataset, data_dir, f"cannot create the folder ({error})")) from error
    for file_name, md5 in cls.resources:
        target = folder / file_name.removesuffix(".gz")
        if target.is_file():
            continue
        reasons: list[str] = []
        for mirror in cls.mirrors:
            try:
                _fetch_and_unpack(mirror + file_name, md5, target, on_progress)
                break
            except Exception as error:  # noqa: BLE001 - any failure means: try the next mirror
                reasons.append(download_failure_reason(error))
        else:
            # One reason per distinct cause: offline, every mirror fails the same way.
            summary = "; ".join(dict.fromkeys(reasons))
            raise DatasetMissing(missing_message(dataset, data_dir, f"{summary} ({len(reasons)} mirrors tried)"))
    check_files(dataset, data_dir)  # the archives' MD5s say nothing about a file that was already there
    return folder


def download_failure_reason(error: BaseException) -> str:
    """Why one mirror failed, in words rather than urllib's "<urlopen error [Errno -3] …>"."""
    if isinstance(error, urllib.error.HTTPError):
        return f"the server answered {error.code} {error.reason}"
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, socket.gaierror):
        return "no network connection (the download server's name could not be looked up)"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"the download server did not answer within {DOWNLOAD_TIMEOUT_SECONDS} s"
    if isinstance(reason, ConnectionRefusedError):
        return "the download server refused the connection"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason) or type(reason).__name__


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


def check_files(dataset: str = "mnist", data_dir: str | Path | None = None) -> Path:
    """Check the dataset's four IDX files before anyone reads them; raise `DatasetCorrupt` if one is damaged.

    Per split: each file's header (IDX magic number, 28x28 images), its size against the count
    in its header, the same count in the images and labels files, labels 0..9, and for files of
    the original size the SHA-256 of the original. Returns the folder that holds the files.
    """
    folder = raw_folder(dataset, data_dir)
    if not is_present(dataset, data_dir):
        raise DatasetMissing(missing_message(dataset, data_dir))
    for split in SPLITS:
        images, labels = (folder / name for name in split_files(split))
        image_count = _check_idx_file(images, IMAGES_MAGIC, dataset)
        label_count = _check_idx_file(labels, LABELS_MAGIC, dataset)
        if image_count != label_count:
            raise DatasetCorrupt(
                f"{images} holds {image_count:,} images but {labels} holds {label_count:,} labels: the images "
                f"and labels of a split must match one to one, so one of the two files is damaged or they come "
                f"from different copies. {_what_to_do(dataset, images, labels)}"
            )
        _check_label_values(labels, dataset)
        if image_count == ORIGINAL_COUNTS[split]:
            for path in (images, labels):
                if _sha256_cached(path) != ORIGINAL_SHA256[dataset][path.name]:
                    raise DatasetCorrupt(
                        f"{shown_path(path)} differs from the original {DATASET_NAMES[dataset]} file (its SHA-256 "
                        f"checksum does not match): it is damaged. {_what_to_do(dataset, path)}"
                    )
    return folder


def _what_to_do(dataset: str, *paths: Path) -> str:
    name = DATASET_NAMES[dataset]
    if len(paths) == 1:
        return (
            f"Delete it so it is downloaded again, or replace it with the original {paths[0].name} "
            f"(the unpacked {paths[0].name}.gz of {name}) in {paths[0].parent}."
        )
    return (
        f"Delete both files so they are downloaded again, or replace them with the originals "
        f"(the unpacked .gz files of {name}) in {paths[0].parent}."
    )


def _check_idx_file(path: Path, magic: int, dataset: str) -> int:
    """Check an IDX file's header and size; return the number of images or labels it announces."""
    kind, a_file = ("image", "an image file") if magic == IMAGES_MAGIC else ("label", "a label file")
    header_size = 16 if magic == IMAGES_MAGIC else 8
    with open(path, "rb") as file:
        header = file.read(header_size)
        size = os.fstat(file.fileno()).st_size
    if header[:4] != struct.pack(">I", magic):
        found = f"starts with {header[:4].hex(' ')}" if header else "is empty"
        raise DatasetCorrupt(
            f"{shown_path(path)} does not start with the IDX header of {a_file}: it should start with the bytes "
            f"{struct.pack('>I', magic).hex(' ')} but {found}. {_what_to_do(dataset, path)}"
        )
    if len(header) < header_size:
        raise DatasetCorrupt(
            f"{shown_path(path)} is cut short: it has {size:,} bytes, fewer than the {header_size} bytes of an IDX {kind} "
            f"file's header. {_what_to_do(dataset, path)}"
        )
    count = struct.unpack(">I", header[4:8])[0]
    if magic == IMAGES_MAGIC:
        rows, columns = struct.unpack(">II", header[8:16])
        if (rows, columns) != (IMAGE_SIZE, IMAGE_SIZE):
            raise DatasetCorrupt(
                f"{shown_path(path)} holds images of {rows}x{columns} pixels, not {IMAGE_SIZE}x{IMAGE_SIZE}: its header is "
                f"damaged or it does not hold {DATASET_NAMES[dataset]} images. {_what_to_do(dataset, path)}"
            )
    expected = header_size + count * (IMAGE_SIZE * IMAGE_SIZE if magic == IMAGES_MAGIC else 1)
    if size != expected:
        problem = "is cut short" if size < expected else "is longer than its header says"
        raise DatasetCorrupt(
            f"{shown_path(path)} {problem}: its header announces {count:,} {kind}s ({expected:,} bytes) but the file has "
            f"{size:,} bytes. {_what_to_do(dataset, path)}"
        )
    return count


def _check_label_values(path: Path, dataset: str) -> None:
    labels = path.read_bytes()[8:]  # at most 60,000 bytes
    if labels and max(labels) > 9:
        wrong = [position for position, label in enumerate(labels) if label > 9]
        others = {1: "", 2: ", and 1 more label is out of range"}.get(
            len(wrong), f", and {len(wrong) - 1:,} more labels are out of range"
        )
        raise DatasetCorrupt(
            f"{shown_path(path)} holds the label {labels[wrong[0]]} (at index {wrong[0]:,}{others}); labels go from 0 to 9. "
            f"{_what_to_do(dataset, path)}"
        )


def _sha256(file) -> str:
    digest = hashlib.sha256()
    while chunk := file.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


# Hashing a 47 MB file takes 0.1-0.2 s, so each file's checksum is kept for the process. The key
# holds size and mtime so a file that is replaced (deleted and downloaded again, or copied over)
# is hashed again. One lock for all: two threads asking at once hash the file once.
_checksums: dict[tuple[str, int, int], str] = {}
_checksums_lock = threading.Lock()


def _sha256_cached(path: Path) -> str:
    with _checksums_lock, open(path, "rb") as file:
        # stat the open file, not the path, so the key describes the very bytes that are hashed
        stat = os.fstat(file.fileno())
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in _checksums:
            _checksums[key] = _sha256(file)
        return _checksums[key]


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
                download(dataset, root, on_progress)  # checks the files it leaves
            else:
                check_files(dataset, root)
            folder = raw_folder(dataset, root)
            images, labels = split_files(SPLITS[0] if train else SPLITS[1])
            _cache[key] = _read_idx(folder / images, folder / labels)
        return _cache[key]


def _read_idx(images_path: Path, labels_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 [N, 28, 28], labels int64 [N]) from a split's two IDX files, whose headers
    and sizes `check_files` has checked: big-endian counts, then one byte per pixel or label."""
    images = np.fromfile(images_path, dtype=np.uint8, offset=16).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    labels = np.fromfile(labels_path, dtype=np.uint8, offset=8)
    return torch.from_numpy(images), torch.from_numpy(labels).long()


def normalize(images: torch.Tensor, dataset: str = "mnist") -> torch.Tensor:
    """uint8 or 0..1 float images [N, 28, 28] -> normalised float [N, 1, 28, 28]."""
    mean, std = NORMALIZATION[dataset]
    if images.dtype == torch.uint8:
        images = images.float().div_(255)
    return images.unsqueeze(1).sub(mean).div_(std)


@dataclass(frozen=True)
class EpochPlan:
    """One epoch's randomness, drawn on the CPU and kept on the training device: the image each
    position of the epoch takes (`order`) and, with augmentation, each position's 4 draws in
    [-1, 1) for `affine_from_draws` (`draws`)."""

    order: torch.Tensor  # int64 [N]
    draws: torch.Tensor | None  # float [N, 4], or None without augmentation


class Batches:
    """Shuffled batches of (normalised images, labels), built on `device` from resident tensors.

    One pass over the data is one epoch; each pass reshuffles with `generator`. The last
    batch may be smaller, as with a DataLoader without drop_last. An epoch's order and
    augmentation draws are drawn at its start (`plan`), on the CPU so that a seed means the same
    order on every device, and sent to the device once; `batch` then builds any batch of it
    there, from a slice or from a tensor of positions (what a CUDA graph replays).
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

    def batch_sizes(self) -> list[int]:
        """The sizes of an epoch's batches, in order: full ones, then a smaller last one if any."""
        count, size = len(self.labels), self.batch_size
        return [min(size, count - start) for start in range(0, count, size)]

    def plan(self) -> EpochPlan:
        """Draw the next epoch's order and augmentation (advances `generator`)."""
        count = len(self.labels)
        order = torch.randperm(count, generator=self.generator) if self.shuffle else torch.arange(count)
        draws = affine_draws(count, self.generator) if self.augment else None
        return EpochPlan(order.to(self.device), None if draws is None else draws.to(self.device))

    def batch(self, plan: EpochPlan, positions: slice | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The normalised images and labels at `positions` of the epoch `plan`."""
        index = plan.order[positions]
        images = self.images[index]
        if plan.draws is not None:
            images = affine_from_draws(images, plan.draws[positions])
        return normalize(images, self.dataset), self.labels[index]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        plan = self.plan()
        for start in range(0, len(self.labels), self.batch_size):
            yield self.batch(plan, slice(start, start + self.batch_size))


def affine_draws(count: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """`count` images' random draws for `affine_from_draws`: 4 each, uniform in [-1, 1), on the CPU."""
    return torch.rand(count, 4, generator=generator) * 2 - 1


def random_affine(
    images: torch.Tensor,
    generator: torch.Generator | None = None,
    degrees: float = 10.0,
    scale: float = 0.1,
    shift_pixels: float = 2.0,
) -> torch.Tensor:
    """Randomly rotate, scale and shift each uint8 image a little (the way people write)."""
    draws = affine_draws(images.shape[0], generator).to(images.device)
    return affine_from_draws(images, draws, degrees, scale, shift_pixels)


def affine_from_draws(
    images: torch.Tensor,
    draws: torch.Tensor,
    degrees: float = 10.0,
    scale: float = 0.1,
    shift_pixels: float = 2.0,
) -> torch.Tensor:
    """Rotate, scale and shift each uint8 image by its row of `draws` ([N, 4] in [-1, 1): angle,
    zoom, x and y shift), up to `degrees`, `scale` and `shift_pixels`; float images in 0..1."""
    angle = draws[:, 0] * degrees * torch.pi / 180
    zoom = 1 + draws[:, 1] * scale
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    shift = draws[:, 2:] * shift_pixels * 2 / images.shape[-1]
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    pixels = images.float().div_(255).unsqueeze(1)
    grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)
    return F.grid_sample(pixels, grid, align_corners=False).squeeze(1)
