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


def test_clearing_streamlit_caches_keeps_the_one_runner_and_its_one_standby(runs_dir, tiny_data_dir, monkeypatch):
    """Any client can ask Streamlit to clear its caches: the runner (a queue, a watcher thread, a
    standby worker process) is not in them, so no second one (and no second standby) appears."""
    import streamlit as st

    from tests.conftest import wait_for
    from ui.state import runner

    monkeypatch.setenv("MNIST_RUNS_DIR", str(runs_dir))
    monkeypatch.setenv("MNIST_DATA_DIR", str(tiny_data_dir))
    monkeypatch.setenv("MNIST_STANDBY_WORKER", "1")
    first = runner()
    try:
        assert wait_for(lambda: first._standby is not None and first._standby.process.poll() is None, timeout=30)
        standby = first._standby.process
        st.cache_resource.clear()
        st.cache_data.clear()
        assert runner() is first
        first._poll()
        assert first._standby is not None and first._standby.process is standby and standby.poll() is None
        monkeypatch.setenv("MNIST_RUNS_DIR", str(runs_dir / "elsewhere"))  # other settings: another runner...
        second = runner()
        assert second is not first
        assert wait_for(lambda: standby.poll() is not None, timeout=30)  # ...and the old one's standby is gone
    finally:
        runner().close()
