"""In-memory caches are bounded, and Draw's model is never evicted by other pages' models."""

from __future__ import annotations

from mnist_core import inference, job
from mnist_core.checkpoint import make_checkpoint, save_checkpoint
from mnist_core.config import TrainConfig
from mnist_core.events import Progress
from mnist_core.models import build_model
from mnist_core.runs import create_run


def _checkpoints(folder, count):
    config = TrainConfig(model="fast", epochs=1)
    paths = []
    for number in range(count):
        path = folder / f"model-{number}.pt"
        save_checkpoint(path, make_checkpoint(build_model(config.model), config, 1, {"val_accuracy": 50.0}))
        paths.append(path)
    return paths


def test_the_model_cache_is_bounded_and_keeps_draws_model(tmp_path):
    draw, *others = _checkpoints(tmp_path, inference.MAX_MODELS + 4)
    drawn, _ = inference.load_model(draw, keep_for="draw")
    for path in others:  # the live panel, Mistakes and Inside load other models meanwhile
        inference.load_model(path)
    assert len(inference._models) <= inference.MAX_MODELS + 1
    assert inference.load_model(draw, keep_for="draw")[0] is drawn  # the same object: never reloaded
    first_other = inference.file_key(others[0])
    assert first_other not in inference._models  # the least recently used ordinary model went


def test_the_events_cache_is_bounded(runs_dir):
    runs = [create_run(TrainConfig(), runs_dir) for _ in range(job._EventsCache.MAX_FILES + 5)]
    for run in runs:
        run.append_event(Progress(1, 1, 10, 0.5, 100.0, 0.1))
        assert len(run.events()) == 1
    assert len(job._events._files) == job._EventsCache.MAX_FILES
    assert runs[0].events() == [Progress(1, 1, 10, 0.5, 100.0, 0.1)]  # an evicted file is simply read again


def test_the_status_cache_sees_every_rewrite(runs_dir):
    run = create_run(TrainConfig(), runs_dir)
    for state in ("running", "finished"):
        run.update_status(state=state)
        assert run.status()["state"] == state
    job.write_status(run.status_path, message="x" * 10)  # same size as before? a new inode all the same
    assert run.status()["message"] == "x" * 10
