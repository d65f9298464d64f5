"""The embedding map: where a model puts each of the 10,000 test digits, laid out in 2-D.

What the classifier sees of an image is its penultimate-layer features (`inside.penultimate_
features`, through a hook on the real model). They are reduced to 50 dimensions by PCA (the
usual first step: t-SNE on 50 components keeps the neighbourhoods and runs faster), then laid
out in 2-D by t-SNE with openTSNE.

Why openTSNE: measured on this 2-core machine on the shipped model's 10,000 test digits (the
same 50 PCA components), openTSNE built the map in 45 s in all (features included) with a
leave-one-out 10-NN accuracy of 99.55 % in 2-D; umap-learn took 14 s just to import (numba)
and 51 s to fit (its kernels compile on first use in every new process), for 99.6 %. The maps
are equally good, openTSNE is faster from a cold process, which is how the app builds maps, it
is BSD-licensed, and it needs only numpy, scipy and scikit-learn, where umap-learn adds numba
and llvmlite. bench/embedding.py measures openTSNE's figures again (the README lists them).

A new image (a drawing) is placed without re-running t-SNE: its features, projected onto the
same 50 components, find their nearest test images, and the point goes to the mean position of
its 10 nearest (`place`). The 5 nearest are shown beside it.

The map is cached per checkpoint, next to it (`<checkpoint>.map-test.npz`), or, where that
folder cannot be written, under `runs/embeddings/`. It records the checkpoint's size and
modification time and is rebuilt when the checkpoint changes. A damaged one (cut off,
corrupted) is moved aside to `<map>.damaged`, said once (`CacheDamaged`), and built again.
A build is a job like any other (`MapBuild`, in mnist_core.map_job; see `mnist_core.job`): its
status and progress are in `<map>.building.json`; `start_build` runs it in a child process
(`python -m mnist_core embed`), which holds a training slot while it works, so the page shows a
PCA preview and a progress bar meanwhile.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mnist_core.data import load_split
from mnist_core.inference import load_model, resolve_checkpoint
from mnist_core.inside import penultimate_features
from mnist_core.job import ACTIVE_STATES, new_status, python_module, start_process
from mnist_core.map_job import MapBuild
from mnist_core.runs import EMBEDDINGS_FOLDER, default_runs_dir
from mnist_core.storage import CacheDamaged, atomic_write_bytes, read_npz
from mnist_core.train import logits_in_batches

COMPONENTS = 50
PLACE_NEIGHBOURS = 10
SHOW_NEIGHBOURS = 5
TSNE_ITERATIONS = 750  # openTSNE's defaults: 250 early-exaggeration + 500 normal iterations
MapProgress = Callable[[float, str], None]
# A build's t-SNE threads sleep while they wait for each other, instead of spinning (OpenMP's
# default): niced beside a busy server, a spinning thread burns the time its partner needs. Measured
# on the 2-core machine, 2,000 digits' t-SNE beside two busy processes: 116 s and 22 CPU-seconds
# spinning, 42 s and 6 sleeping; alone 3.1 s and 3.6 s, 6 CPU-seconds either way.
PASSIVE_THREADS = {"OMP_WAIT_POLICY": "PASSIVE"}


@dataclass
class EmbeddingMap:
    xy: np.ndarray  # [N, 2] float32, the t-SNE layout
    labels: np.ndarray  # [N] true digits
    predictions: np.ndarray  # [N] the model's answers
    confidences: np.ndarray  # [N] the probability of its answer
    reduced: np.ndarray  # [N, 50] PCA-reduced features, for placing new images
    mean: np.ndarray  # [features] PCA centre
    components: np.ndarray  # [features, 50] PCA directions
    path: Path

    @property
    def mistakes(self) -> np.ndarray:
        return self.predictions != self.labels

    def knn_accuracy(self, k: int = 10) -> float:
        """Leave-one-out k-nearest-neighbour accuracy in 2-D: how well the map separates the digits."""
        from sklearn.neighbors import KNeighborsClassifier

        neighbours = KNeighborsClassifier(n_neighbors=k + 1).fit(self.xy, self.labels)
        indices = neighbours.kneighbors(self.xy, return_distance=False)[:, 1:]  # without the point itself
        votes = self.labels[indices]
        guesses = np.array([np.bincount(row, minlength=10).argmax() for row in votes])
        return float((guesses == self.labels).mean() * 100)


def map_path(checkpoint: str | Path | None, split: str = "test") -> Path:
    """Where the map of this checkpoint lives: beside it when that folder is writable."""
    source = resolve_checkpoint(checkpoint)
    beside = source.with_name(f"{source.name}.map-{split}.npz")
    if os.access(source.parent, os.W_OK):
        return beside
    digest = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:16]
    return default_runs_dir() / EMBEDDINGS_FOLDER / f"{digest}.map-{split}.npz"


def _checkpoint_key(checkpoint: str | Path | None) -> list[int]:
    stat = resolve_checkpoint(checkpoint).stat()
    return [stat.st_size, stat.st_mtime_ns]


def load_cached(checkpoint: str | Path | None, split: str = "test",
                data_dir: str | Path | None = None) -> EmbeddingMap | None:
    """The stored map of this checkpoint, or None when there is none, the checkpoint changed since,
    or it was built on other images than the data folder's (another MNIST copy, a test's tiny one).

    A damaged map raises CacheDamaged once, after moving it aside (`damaged_note` says it in words):
    from then on there is no map, and the page or `embed` builds it again."""
    return _load(map_path(checkpoint, split), checkpoint, split, data_dir)


def _load(path: Path, checkpoint, split: str, data_dir) -> EmbeddingMap | None:
    """The map (or preview) stored at `path`, or None. A damaged file is set aside and CacheDamaged
    raised, so the caller can say so once; the next look finds no map and builds it again."""
    try:
        stored = read_npz(path, required=_STORED)
        found = EmbeddingMap(*(stored[name] for name in _STORED[:-1]), path)
        if not _fits(found) or stored["checkpoint_key"].shape != (2,):
            raise CacheDamaged(path.name, "its arrays do not fit together")
    except FileNotFoundError:
        return None
    except CacheDamaged:
        _set_aside(path)
        raise
    try:
        if stored["checkpoint_key"].tolist() != _checkpoint_key(checkpoint):
            return None
    except OSError:  # the checkpoint itself is gone
        return None
    try:
        _, config = load_model(checkpoint)
        _, labels = load_split(config.dataset, split == "train", data_dir, download_missing=False)
    except (OSError, ValueError):  # no data here to compare with: the map is still worth showing
        return found
    return found if np.array_equal(found.labels, labels.numpy()) else None


_STORED = ("xy", "labels", "predictions", "confidences", "reduced", "mean", "components", "checkpoint_key")


def _fits(found: EmbeddingMap) -> bool:
    """One 2-D point, label, answer, confidence and PCA row per image; PCA's centre and directions that match."""
    n = len(found.labels)
    return (found.labels.shape == found.predictions.shape == found.confidences.shape == (n,)
            and found.xy.shape == (n, 2) and found.reduced.ndim == 2 and len(found.reduced) == n
            and found.components.ndim == 2 and found.mean.shape == found.components.shape[:1]
            and found.components.shape[1] == found.reduced.shape[1])


def _set_aside(path: Path) -> None:
    """Move a damaged cache out of the way (kept as `<name>.damaged` for a look), or delete it."""
    try:
        os.replace(path, path.with_name(path.name + ".damaged"))
    except OSError:
        try:
            path.unlink()
        except OSError:
            pass  # not ours to move: the rebuild's atomic write replaces it all the same


def model_name(checkpoint: str | Path | None) -> str:
    """How messages name a checkpoint without the server's folders: default.pt, or <run id>/checkpoint.pt
    (every run's checkpoint has that name, so its folder's name tells them apart)."""
    source = resolve_checkpoint(checkpoint)
    return f"{source.parent.name}/{source.name}" if source.name == "checkpoint.pt" else source.name


def damaged_note(checkpoint: str | Path | None, error: CacheDamaged) -> str:
    """A damaged map in words, e.g. 'The stored map for default.pt was damaged (it ends early)';
    the caller adds what happens next."""
    return f"The stored map for {model_name(checkpoint)} was damaged ({error.reason})"


def build_map(checkpoint: str | Path | None, data_dir: str | Path | None = None, split: str = "test",
              on_progress: MapProgress = lambda fraction, text: None) -> EmbeddingMap:
    """Compute the map (features, PCA, t-SNE) and store it; raises OSError/ValueError on failure."""
    from openTSNE import TSNE

    model, config = load_model(checkpoint)
    images, labels = load_split(config.dataset, split == "train", data_dir, download_missing=False)
    on_progress(0.02, "reading the features")
    features = penultimate_features(model, images, config.dataset)
    probabilities = torch.softmax(logits_in_batches(model, images, dataset=config.dataset).float(), 1)
    confidences, predictions = probabilities.max(1)
    mean, components, reduced = _pca(features, COMPONENTS)
    # The PCA layout is the page's stand-in while t-SNE runs: saved now, `preview` reads it for free.
    stand_in = EmbeddingMap(reduced[:, :2].copy(), labels.numpy().astype(np.int64), predictions.numpy().astype(np.int64),
                            confidences.numpy().astype(np.float32), reduced, mean, components,
                            _preview_path(map_path(checkpoint, split)))
    _save(stand_in, _checkpoint_key(checkpoint))
    on_progress(0.08, "finding each digit's neighbours")

    def report(iteration: int, error: float, embedding) -> None:
        on_progress(0.15 + 0.85 * min(iteration / TSNE_ITERATIONS, 1.0), f"t-SNE, iteration {iteration}")

    tsne = TSNE(n_jobs=os.cpu_count() or 1, random_state=0, callbacks=_Counted(report), callbacks_every_iters=25,
                verbose=False)
    xy = np.asarray(tsne.fit(reduced), dtype=np.float32)
    result = EmbeddingMap(xy, labels.numpy().astype(np.int64), predictions.numpy().astype(np.int64),
                          confidences.numpy().astype(np.float32), reduced, mean, components, map_path(checkpoint, split))
    _save(result, _checkpoint_key(checkpoint))
    on_progress(1.0, "done")
    return result


class _Counted:
    """openTSNE restarts its iteration count after early exaggeration; this counts on across both phases."""

    def __init__(self, report: Callable[[int, float, object], None]) -> None:
        self.report = report
        self.done = 0

    def __call__(self, iteration: int, error: float, embedding) -> None:
        self.done += 25
        self.report(self.done, error, embedding)


def _preview_path(path: Path) -> Path:
    return path.with_name(path.name.replace(".npz", ".preview.npz"))


def preview(checkpoint: str | Path | None, data_dir: str | Path | None = None, split: str = "test") -> EmbeddingMap:
    """A stand-in while t-SNE runs: the first two principal components, as the build saved them
    seconds after it started, or computed here when it has not got that far."""
    try:
        saved = _load(_preview_path(map_path(checkpoint, split)), checkpoint, split, data_dir)
    except CacheDamaged:  # set aside by _load; a stand-in is quick to make again, right here
        saved = None
    if saved is not None:
        return saved
    model, config = load_model(checkpoint)
    images, labels = load_split(config.dataset, split == "train", data_dir, download_missing=False)
    features = penultimate_features(model, images, config.dataset)
    probabilities = torch.softmax(logits_in_batches(model, images, dataset=config.dataset).float(), 1)
    confidences, predictions = probabilities.max(1)
    mean, components, reduced = _pca(features, COMPONENTS)
    return EmbeddingMap(reduced[:, :2].copy(), labels.numpy().astype(np.int64), predictions.numpy().astype(np.int64),
                        confidences.numpy().astype(np.float32), reduced, mean, components, Path())


def _pca(features: np.ndarray, components: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean = features.mean(0)
    centred = features - mean
    _, _, directions = np.linalg.svd(centred, full_matrices=False)
    basis = directions[: min(components, directions.shape[0])].T.astype(np.float32)
    return mean.astype(np.float32), basis, (centred @ basis).astype(np.float32)


def _save(result: EmbeddingMap, key: list[int]) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, xy=result.xy, labels=result.labels, predictions=result.predictions,
                        confidences=result.confidences, reduced=result.reduced, mean=result.mean,
                        components=result.components, checkpoint_key=np.array(key, dtype=np.int64))
    data = buffer.getvalue()
    result.path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(result.path, lambda file: file.write(data), needed_bytes=len(data))


def place(embedding: EmbeddingMap, model: torch.nn.Module, image: torch.Tensor,
          dataset: str = "mnist", leave_out: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Where a new 28x28 image lands on the map, and the indices of its 5 nearest test images;
    `leave_out`: a test image's own index, which is not its own neighbour."""
    features = penultimate_features(model, image.reshape(1, 28, 28), dataset)[0]
    reduced = (features - embedding.mean) @ embedding.components
    distances = np.linalg.norm(embedding.reduced - reduced, axis=1)
    order = np.argsort(distances)
    if leave_out is not None:
        order = order[order != leave_out]
    nearest = order[:PLACE_NEIGHBOURS]
    return embedding.xy[nearest].mean(0), nearest[:SHOW_NEIGHBOURS]


def map_build(checkpoint: str | Path | None, split: str = "test") -> MapBuild:
    return MapBuild(map_path(checkpoint, split))


class BuildStopped(Exception):
    """Someone asked the map build to stop (its stop file)."""


def building_status(checkpoint: str | Path | None, split: str = "test") -> dict | None:
    """The status of this map's latest build (read through the job model: a build whose process is
    gone reads as interrupted), or None when it was never built in the background."""
    build = map_build(checkpoint, split)
    child = _builders.get(build.status_path)
    if child is not None and child.poll() is not None:  # reaped here, or it would linger as a zombie
        del _builders[build.status_path]
        try:  # it may have ended before it could say how (killed, out of memory): its exit code says
            build.record_unexpected_end(child.returncode, "map's build", "build.log")
        except OSError:
            pass  # read below all the same: its process is gone, so it reads as interrupted
    if not build.status_path.exists():
        return None
    return build.current_status()


_builders: dict[Path, subprocess.Popen] = {}  # the builds this process started, by status file


def start_build(checkpoint: str | Path | None, data_dir: str | Path | None = None, split: str = "test",
                owner: str = "") -> MapBuild:
    """Build the map in a background job (`python -m mnist_core embed`), unless one already runs.

    It is queued first, in this process's name; the build then waits for a free training slot
    (a map build is as heavy as training on a small machine), niced like every job. Raises
    OSError (a full or read-only disk) when it cannot be recorded or started: nothing runs then."""
    build = map_build(checkpoint, split)
    status = building_status(checkpoint, split)
    if status and status.get("state") in ACTIVE_STATES:
        return build
    command = python_module("mnist_core", "embed", str(resolve_checkpoint(checkpoint)), "--split", split,
                            "--parent-pid", str(os.getpid()))
    command += ["--data-dir", str(data_dir)] if data_dir else []
    build.status_path.parent.mkdir(parents=True, exist_ok=True)
    build.stop_path.unlink(missing_ok=True)
    build.update_status(replace=True, **new_status(owner, progress=0.0, message="starting"))  # a new build
    try:
        process = start_process(command, build.log_path, append=False, env=PASSIVE_THREADS)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        build.update_status(state="failed", ended_at=time.time(), message=f"The build could not start: {reason}.")
        raise
    _builders[build.status_path] = process
    # Responsible from now on, before it has imported anything: if it dies early, it reads as gone.
    build.update_status(pid=process.pid)
    return build
