"""A sweep that waits for a training slot waits without Ray: a queue of sweeps costs no Ray memory."""

from __future__ import annotations

import os
import subprocess

from mnist_core import slots
from mnist_core.job import python_module
from mnist_core.sweep import WAITING_FOR_A_SLOT, SweepSpec, create_sweep
from tests.conftest import wait_for


def _loaded_libraries(pid: int) -> str:
    with open(f"/proc/{pid}/maps") as maps:
        return maps.read()


def test_a_waiting_sweep_has_not_imported_ray_and_a_stop_ends_it_there(tiny_data_dir, runs_dir):
    sweep = create_sweep(SweepSpec.from_preset("fast"), runs_dir, owner="visitor-1")
    held = slots.try_acquire(runs_dir, slots.max_jobs(), holder="another job")  # the machine is busy
    assert held is not None
    process = subprocess.Popen(
        python_module("mnist_core.distributed.sweep_process", str(sweep.path), "--parent-pid", str(os.getpid()),
                      "--data-dir", str(tiny_data_dir)),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert wait_for(lambda: sweep.status().get("pid") == process.pid, timeout=60)
        status = sweep.status()
        assert status["state"] == "queued" and status["message"] == WAITING_FOR_A_SLOT
        libraries = _loaded_libraries(process.pid)
        assert "libpython" in libraries or "python" in libraries  # the maps are readable: not vacuous
        assert "_raylet" not in libraries and "/ray/" not in libraries
        sweep.request_stop()
        assert process.wait(timeout=60) == 0, process.stderr.read()
        status = sweep.status()
        assert status["state"] == "cancelled" and status["message"] == "Stopped before it started."
        assert "_raylet" not in process.stderr.read()
    finally:
        held.release()
        if process.poll() is None:
            process.kill()
