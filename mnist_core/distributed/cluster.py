"""Training on Ray: the same `fit`, run on any node of a Ray cluster, with its results brought home.

Import this module only when Ray is wanted (a sweep, or `MNIST_JOB_BACKEND=ray`): it imports
Ray, which the rest of mnist_core never does. `connect()` joins the cluster named by
`RAY_ADDRESS` (e.g. `ray://head:10001`, or `auto` on a cluster node), or starts an embedded
local Ray with this machine's CPUs and GPUs when none is named.

A worker node need not share the server's disk. The training function (`train_remotely`)
writes nothing on the node it runs on: it sends its `fit` events, batched every
`FLUSH_SECONDS` and at once at each epoch's end, to a small `Channel` actor, and each epoch's
checkpoint as bytes (which Ray carries through its object store). On the server, a
`Homecoming` drains the channel and writes the events, status and checkpoints into the ordinary run folders, so
every page reads a Ray run as it reads a local one. Stopping goes the other way: the
homecoming passes a run's STOP file (or a whole sweep's) to the channel, and the trial, which
learns it in the answer to its next send, stops within a step of that.
"""

from __future__ import annotations

import io
import logging
import os
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import ray

from mnist_core.distributed import address as ray_address
from mnist_core.distributed import private_network
from mnist_core.distributed.address import ClusterUnreachable, ConnectStopped  # noqa: F401 - connect's callers catch them here
from mnist_core.events import Cancelled, EpochEnd, Progress, from_dict, to_dict
from mnist_core.job import interrupted
from mnist_core.runs import ENDED_STATES, Run
from mnist_core.storage import StorageError, atomic_write_bytes, explain_write_error

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.25  # how often a trial sends its progress home, and so how soon it hears "stop"
PUMP_SECONDS = 0.2
PACKAGE_DIR = Path(__file__).resolve().parent.parent  # mnist_core itself, shipped whole to a ray:// cluster


_own_session: Path | None = None  # the session folder of the local Ray that connect() started, for shutdown()
_token_dir: Path | None = None  # the folder of that Ray's token, for shutdown()


def connect(num_cpus: int | None = None, should_stop: Callable[[], bool] = lambda: False) -> str:
    """Join the cluster named by RAY_ADDRESS, or start a local Ray; returns a description.

    A remote cluster gets this package's code shipped with the job (`py_modules`), so its
    nodes need only Python, PyTorch and torchvision installed. A named cluster that does not
    answer raises ClusterUnreachable within `address.CONNECT_GIVE_UP_SECONDS` (a port that
    answers but is not Ray: about 41 s more); `should_stop` turning true meanwhile raises
    ConnectStopped, and Ctrl-C interrupts the wait."""
    global _own_session
    address = os.environ.get("RAY_ADDRESS", "").strip()
    if ray.is_initialized():
        return f"Ray cluster at {address}" if address else "local Ray"
    quiet = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address:
        ray_address.wait_until_reachable(address, should_stop)
        ray_address.check_stop(should_stop)
        runtime_env = {"py_modules": [str(PACKAGE_DIR)]} if address.startswith("ray://") else None
        try:
            with ray_address.one_gcs_attempt():
                ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
        except ConnectionError as error:  # no Ray answered there (or, for `auto`, none was found)
            raise ClusterUnreachable(
                f"Could not join the Ray cluster at {address}: {last_error_line(error).rstrip('.')}. Check RAY_ADDRESS "
                f"(and, for a cluster that requires a token, RAY_AUTH_MODE=token and RAY_AUTH_TOKEN), or unset it "
                f"to train on this machine.") from error
        return f"Ray cluster at {address}"
    # An embedded Ray asks every caller for a token that only this user can read, and, when the
    # process that owns it moved into a network of its own (`private_network.isolate_for_ray`,
    # done by the sweep's and the job's entry points), listens on loopback only there
    # (docs/ray-security.md). `address="local"`: a Ray of its own even when another was started on
    # this machine (`ray start --head`, a test's `Cluster`), whose address Ray keeps in
    # <temp>/ray/ray_current_cluster; with no address, `ray.init` would join that one (and refuse
    # `num_cpus`).
    use_private_token()
    ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, **quiet,
             **({"_node_ip_address": private_network.LOOPBACK_ADDRESS} if private_network.isolated() else {}))
    try:
        context = ray.get_runtime_context()
        _own_session = ray_address.own_session_dir(context.get_temp_dir(), context.get_session_name())
    except Exception as error:  # noqa: BLE001 - only tidying depends on it
        log.warning("could not tell Ray's session folder: %s", error)
    return "local Ray"


def use_private_token() -> Path:
    """Turn on Ray's token authentication for the local Ray about to start, with a new random token
    in a file only this user can read (a fresh folder of mode 700, the file 600); returns the file.

    Ray's processes read the token from the file named by RAY_AUTH_TOKEN_PATH, which they inherit,
    and refuse every gRPC call that does not carry it. The folder goes in `shutdown()`."""
    global _token_dir
    if _token_dir is None:
        _token_dir = Path(tempfile.mkdtemp(prefix="mnist-ray-token-"))  # mode 700, a new name each time
    path = _token_dir / "token"
    if not path.exists():
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_hex(32))
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(path)
    os.environ.pop("RAY_AUTH_TOKEN", None)  # it would win over the file
    _reload_token_settings()
    return path


def _reload_token_settings() -> None:
    """Make Ray read its token settings from the environment again: it reads them once, perhaps
    already at import, and a process may start (and stop) more than one Ray."""
    try:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
    except (ImportError, AttributeError) as error:  # a Ray before 2.52 has no token: requirements ask for one
        log.warning("this Ray cannot use a token (%s); install ray>=2.52", error)


def shutdown() -> None:
    """Leave Ray, and remove the session folder (/tmp/ray/session_...) and the token of the local Ray
    connect() started."""
    global _own_session, _token_dir
    if ray.is_initialized():
        ray.shutdown()
    if _own_session is not None:
        session, _own_session = _own_session, None
        ray_address.remove_session_dir(session)
    if _token_dir is not None:  # only once Ray is down: its threads may read the token until then
        token_dir, _token_dir = _token_dir, None
        shutil.rmtree(token_dir, ignore_errors=True)
        for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH"):
            os.environ.pop(name, None)
        _reload_token_settings()  # a cluster joined later by this process asks for no token of ours


def trial_resources(max_concurrent: int) -> dict[str, float]:
    """What each trial asks the cluster for.

    With GPUs in the cluster: one CPU and `MNIST_RAY_GPUS_PER_TRIAL` of a GPU (default 1; a
    fraction such as 0.25 packs four small trials on one GPU). Without: the CPUs split evenly
    among the trials that run at once, at least one each and at most one node's worth, so a
    sweep of one trial at a time on one machine trains as fast as a single run."""
    resources = ray.cluster_resources()
    gpus = resources.get("GPU", 0)
    if gpus:
        share = float(os.environ.get("MNIST_RAY_GPUS_PER_TRIAL") or 1)
        return {"cpu": 1, "gpu": min(share, gpus)}
    cpus = int(resources.get("CPU", 1))
    # A trial runs on one node: never ask for more CPUs than the largest node has.
    largest = max((int(node["Resources"].get("CPU", 0)) for node in ray.nodes() if node.get("Alive")), default=1)
    return {"cpu": max(1, min(largest, cpus // max(1, max_concurrent)))}


@ray.remote(num_cpus=0)
class Channel:
    """Messages from trials to the server, and stop requests from the server to trials."""

    def __init__(self) -> None:
        self._inbox: list[tuple[str, dict]] = []
        self._stop: set[str] = set()
        self._stop_all = False

    def send(self, run_id: str, message: dict) -> bool:
        """Deliver a trial's message; answers whether that trial should stop."""
        self._inbox.append((run_id, message))
        return self._stop_all or run_id in self._stop

    def drain(self) -> list[tuple[str, dict]]:
        messages, self._inbox = self._inbox, []
        return messages

    def ended(self, run_id: str, error: str | None) -> None:
        """Ray Tune saw a trial end (it may run on the cluster, far from the server): pass it home."""
        self._inbox.append((run_id, {"ended": True, "error": error}))

    def stop(self, run_id: str | None = None) -> None:
        """Ask one trial (or, with None, every trial, started or not) to stop."""
        if run_id is None:
            self._stop_all = True
        else:
            self._stop.add(run_id)


def train_remotely(run_id: str, config: dict, channel, data_dir: str | None,
                   on_epoch: Callable[[EpochEnd], None] | None = None) -> dict:
    """Run `fit` here, on whatever node Ray chose, reporting everything through `channel`.

    Nothing is written on this node except the dataset, downloaded only if the node lacks it.
    The data comes from the server's data folder when this node has it (the same machine, or
    a shared disk), else from the node's own MNIST_DATA_DIR (or ./data). `on_epoch`
    is called after each epoch's checkpoint has been sent (Ray Tune reports there)."""
    import torch

    from mnist_core.config import TrainConfig
    from mnist_core.train import fit

    threads = int(ray.get_runtime_context().get_assigned_resources().get("CPU", 0) or 0)
    if threads:
        torch.set_num_threads(threads)
    pending: list[dict] = []
    stop = False
    last_flush = time.monotonic()

    def flush(extra: dict | None = None) -> None:
        nonlocal pending, stop, last_flush
        message, pending = {"events": pending, **(extra or {})}, []
        stop = ray.get(channel.send.remote(run_id, message)) or stop
        last_flush = time.monotonic()

    flush({"worker": {"node": ray.get_runtime_context().get_node_id(), "host": socket.gethostname(),
                      "pid": os.getpid()}})
    if stop:  # stopped before it started (a sweep stopped while this trial waited its turn)
        pending.append(to_dict(Cancelled(0)))
        flush()
        return to_dict(Cancelled(0))
    last_epoch: list[EpochEnd] = []

    def on_event(event) -> None:
        pending.append(to_dict(event))
        if isinstance(event, EpochEnd):
            last_epoch[:] = [event]
        if not isinstance(event, Progress) or time.monotonic() - last_flush >= FLUSH_SECONDS:
            flush()

    def on_checkpoint(checkpoint: dict) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        # The bytes themselves, not a reference: an object put here is owned by this worker and is lost
        # when Tune ends it, which can be before the server fetched it. Ray carries an argument this
        # large through its object store all the same, and the channel holds it until it is drained.
        flush({"checkpoint": buffer.getvalue()})
        if on_epoch and last_epoch:
            on_epoch(last_epoch[0])

    # The server's data folder when this node sees it too (the same machine, a shared disk), else the node's own.
    node_data = data_dir if data_dir and Path(data_dir).is_dir() else os.environ.get("MNIST_DATA_DIR") or None
    result = fit(TrainConfig.from_dict(config), on_event=on_event, should_stop=lambda: stop,
                 data_dir=node_data, on_checkpoint=on_checkpoint)
    return to_dict(result.outcome)


class Homecoming:
    """The server's end of a channel: writes what trials send into their run folders."""

    def __init__(self, channel, runs: dict[str, Run], sweep_stop: Callable[[], bool] = lambda: False,
                 interrupted_because: Callable[[], str | None] = lambda: None) -> None:
        self.channel = channel
        self.runs = runs
        self.sweep_stop = sweep_stop  # a person asked every trial to stop
        self.interrupted_because = interrupted_because  # a reason every trial must end that is nobody's request
        self._stopping: set[str] = set()
        self._stopped_all = False
        self._lock = threading.Lock()

    def pump(self) -> None:
        """Pass stop requests out, then write every message that has arrived."""
        with self._lock:
            if not self._stopped_all and (self.sweep_stop() or self.interrupted_because()):
                self._stopped_all = True
                self.channel.stop.remote(None)
            for run_id, run in self.runs.items():
                if run_id not in self._stopping and run.stop_requested():
                    self._stopping.add(run_id)
                    self.channel.stop.remote(run_id)
            for run_id, message in ray.get(self.channel.drain.remote()):
                run = self.runs.get(run_id)
                if run is None:
                    continue
                if message.get("ended"):  # after everything the trial itself sent (one inbox, in order)
                    self._settle(run, message.get("error"))
                else:
                    self._write(run, message)

    def _write(self, run: Run, message: dict) -> None:
        try:
            worker = message.get("worker")
            if worker:
                run.update_status(state="running", started_at=time.time(), node=worker["node"],
                                  host=worker["host"], worker_pid=worker["pid"], message="")
            for values in message.get("events", []):
                run.record(from_dict(values), self.interrupted_because())
            data = message.get("checkpoint")
            if data:
                atomic_write_bytes(run.checkpoint_path, lambda file: file.write(data), needed_bytes=len(data))
        except Exception as error:  # noqa: BLE001 - the server's disk, a lost object: this trial cannot go on
            reason = error if isinstance(error, StorageError) else explain_write_error(error, run.path)
            self.channel.stop.remote(run.id)
            self._stopping.add(run.id)
            try:
                run.update_status(state="failed", ended_at=time.time(), message=str(reason))
            except OSError:
                pass

    def settle(self, run_id: str, error: str | None) -> None:
        """Record how a trial ended when it could not say so itself (killed, or stopped early).

        Call after the trial's process is gone; whatever it sent before is written first."""
        self.pump()
        with self._lock:
            self._settle(self.runs[run_id], error)

    def _settle(self, run: Run, error: str | None) -> None:
        run_id = run.id
        if run.status().get("state") in ENDED_STATES:
            return
        reason = self.interrupted_because()
        if error:
            changes = {"state": "failed", "message": error}
        elif reason:
            changes = interrupted(reason, run.KEPT)
        elif self._stopped_all or run_id in self._stopping:
            changes = {"state": "cancelled", "message": "Stopped on request."}
        else:
            epochs = sum(isinstance(event, EpochEnd) for event in run.events())
            changes = {"state": "cancelled", "message": f"Stopped early by the sweep's ASHA scheduler after epoch "
                                                        f"{epochs}: its validation accuracy trailed the other trials'."}
        try:
            run.update_status(ended_at=time.time(), **changes)
        except OSError as failure:
            log.warning("could not record the end of run %s: %s", run_id, failure)


def run_job(run: Run, data_dir: str | None, should_stop: Callable[[], bool] = lambda: False,
            interrupted_because: Callable[[], str | None] = lambda: None) -> dict:
    """Train one run on the Ray cluster (`MNIST_JOB_BACKEND=ray`), recording it here; returns its outcome.

    The caller has already joined the cluster (`connect`). `should_stop` is a person asking;
    `interrupted_because` a reason to end that is not (see `jobs.execute_run`)."""
    channel = Channel.remote()
    home = Homecoming(channel, {run.id: run}, sweep_stop=should_stop, interrupted_because=interrupted_because)
    task = ray.remote(train_remotely).options(**_task_resources(trial_resources(1)), max_retries=0)
    reference = task.remote(run.id, run.config.to_dict(), channel, data_dir)
    error = None
    while True:
        done, _ = ray.wait([reference], timeout=PUMP_SECONDS)
        home.pump()
        if done:
            break
    try:
        outcome = ray.get(reference)
    except Exception as failure:  # noqa: BLE001 - the worker died or raised: say so in the run
        error = f"The training process on the Ray cluster failed: {last_error_line(failure)}"
        outcome = {"type": "Failed", "message": error}
    home.settle(run.id, error)
    ray.kill(channel)
    return outcome


def _task_resources(resources: dict[str, float]) -> dict[str, float]:
    return {"num_cpus": resources.get("cpu", 1), "num_gpus": resources.get("gpu", 0)}


def last_error_line(error: BaseException) -> str:
    """The line of a Ray error that says what went wrong: its messages carry whole remote
    tracebacks, which end with the exception's own "Type: message" line, so the last line that
    has a colon and is not a "File ..." frame (else the first line, else the error's type)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    last = next((line for line in reversed(lines) if ":" in line and not line.startswith("File ")), None)
    return last or (lines[0] if lines else type(error).__name__)


def describe_resources(resources: dict[str, float]) -> str:
    parts = [f"{resources['cpu']:g} CPU"]
    if resources.get("gpu"):
        parts.append(f"{resources['gpu']:g} GPU")
    return " + ".join(parts)
