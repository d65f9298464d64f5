"""Which runs the Mistakes and Draw pages offer as models."""

from mnist_core.checkpoint import make_checkpoint, save_checkpoint
from mnist_core.config import TrainConfig
from mnist_core.models import build_model
from mnist_core.runs import create_run
from ui.state import usable_runs


def test_every_run_that_is_over_and_kept_a_checkpoint_is_offered(runs_dir, monkeypatch):
    monkeypatch.setenv("MNIST_RUNS_DIR", str(runs_dir))
    config = TrainConfig(model="fast")
    offered = {}
    for state, has_checkpoint in [("finished", True), ("failed", True), ("cancelled", True), ("failed", False),
                                  ("running", True), ("queued", False)]:
        run = create_run(config, runs_dir)
        run.update_status(state=state)
        if has_checkpoint:
            save_checkpoint(run.checkpoint_path, make_checkpoint(build_model("fast"), config, 1, {}))
        offered[run.id] = state in ("finished", "failed", "cancelled") and has_checkpoint
    assert {run.id for run in usable_runs()} == {run_id for run_id, wanted in offered.items() if wanted}
