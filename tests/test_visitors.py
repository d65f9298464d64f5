"""The hosted demo's rules in the core: signed visitor identities, and who may change whose work."""

import os
import stat

import pytest

from mnist_core.config import TrainConfig
from mnist_core.jobs import JobRunner
from mnist_core.marks import HOSTED_MAX_MARKS, load_marks, marks_path, set_mark
from mnist_core.policy import JobPolicy
from mnist_core.runs import create_run, delete_run, list_runs, settings_to_reuse
from mnist_core.sweep import SweepSpec, create_sweep
from mnist_core.visitors import TOKEN_DAYS, NotYours, Visitor, new_id, server_secret, sign, verify
from tests.conftest import wait_for

SECRET = b"k" * 32
SLOW = TrainConfig(model="fast", epochs=100, batch_size=1, lr=0.001)  # would take minutes
A, B = new_id(), new_id()


def test_a_token_verifies_only_with_its_own_secret_and_untouched():
    token = sign(A, SECRET)
    assert verify(token, SECRET)[0] == A
    assert verify(token, b"another secret " * 2) is None
    visitor_id, issued, signature = token.split(".")
    assert verify(f"{B}.{issued}.{signature}", SECRET) is None  # someone else's id with A's signature
    assert verify(f"{visitor_id}.{int(issued) + 1}.{signature}", SECRET) is None
    assert verify(f"{visitor_id}.{issued}.{'0' * len(signature)}", SECRET) is None
    for junk in (None, "", "x", "a.b", "a.b.c.d", f"{A.upper()}.{issued}.{signature}", f"../../{A}.1.2"):
        assert verify(junk, SECRET) is None


def test_a_token_lasts_its_days_and_not_longer():
    issued = 1_700_000_000
    token = sign(A, SECRET, issued=issued)
    assert verify(token, SECRET, now=issued + TOKEN_DAYS * 24 * 3600 - 1) == (A, issued)
    assert verify(token, SECRET, now=issued + TOKEN_DAYS * 24 * 3600 + 1) is None
    assert verify(token, SECRET, now=issued - 3600) is None  # issued in the future: not ours


def test_the_server_secret_is_made_once_private_and_kept(tmp_path, monkeypatch):
    monkeypatch.delenv("MNIST_VISITOR_SECRET", raising=False)
    first = server_secret(tmp_path)
    key_file = next((tmp_path / ".secrets").iterdir())
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert server_secret(tmp_path) == first and len(first) == 32
    assert [p.name for p in (tmp_path / ".secrets").iterdir()] == ["visitor-key"]  # no staging file left
    key_file.write_text("not hex")  # damaged: a new key, not a crash
    renewed = server_secret(tmp_path)
    assert renewed != first and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    monkeypatch.setenv("MNIST_VISITOR_SECRET", "shared by several servers")
    assert server_secret(tmp_path) == b"shared by several servers"


def test_a_private_install_has_no_owners_and_a_hosted_visitor_changes_only_their_own():
    Visitor.local().require(A, "stop this job")  # no error
    Visitor(A, hosted=True).require(A, "stop this job")
    with pytest.raises(NotYours, match="You cannot stop this job: another visitor started it"):
        Visitor(B, hosted=True).require(A, "stop this job")
    with pytest.raises(NotYours):  # work with no owner (the CLI's) is nobody's on a hosted demo
        Visitor(B, hosted=True).require("", "delete run x")
    with pytest.raises(NotYours):  # a visitor without an id owns nothing, not even ownerless work
        Visitor("", hosted=True).require("", "delete run x")
    assert not issubclass(NotYours, OSError)  # never mistaken for a full disk


def test_the_runner_refuses_another_visitors_stop_and_cancel(tiny_data_dir, runs_dir):
    runner = JobRunner(runs_dir, tiny_data_dir, max_running=1, standby=False, policy=JobPolicy.hosted())
    a, b = Visitor(A, hosted=True), Visitor(B, hosted=True)
    running = runner.submit(SLOW.replace(epochs=5), owner=A)
    queued = runner.submit(SLOW.replace(epochs=5), owner=B)
    assert wait_for(lambda: running.status()["state"] == "running")
    with pytest.raises(NotYours):
        runner.cancel(running, by=b)
    with pytest.raises(NotYours):
        runner.cancel(queued, by=a)
    assert not running.stop_requested() and runner.queue_position(queued) == 1  # nothing happened to either
    runner.cancel(queued, by=b)
    runner.cancel(running, by=a)
    assert wait_for(lambda: running.status()["state"] == "cancelled", timeout=30)
    assert queued.status()["state"] == "cancelled"


def test_another_visitor_cannot_stop_a_sweep_delete_a_run_or_reuse_its_settings(runs_dir):
    a, b = Visitor(A, hosted=True), Visitor(B, hosted=True)
    sweep = create_sweep(SweepSpec.from_preset("fast"), runs_dir, owner=A)
    runner = JobRunner(runs_dir, standby=False, policy=JobPolicy.hosted())
    with pytest.raises(NotYours, match="stop this sweep"):
        runner.cancel_sweep(sweep, by=b)
    assert not sweep.stop_requested()
    runner.cancel_sweep(sweep, by=a)
    assert sweep.stop_requested()

    run = create_run(TrainConfig.preset("fast"), runs_dir, owner=A)
    run.update_status(state="finished")
    with pytest.raises(NotYours, match="reuse the settings"):
        settings_to_reuse(run, by=b)
    assert settings_to_reuse(run, by=a) == run.config
    with pytest.raises(NotYours, match="delete run"):
        delete_run(run, by=b)
    assert run.path.is_dir()
    delete_run(run, by=a)
    assert list_runs(runs_dir) == []


def test_hosted_marks_belong_to_each_visitor_and_the_shared_marks_stay_as_they_are(runs_dir):
    set_mark("mnist", "train", 7, "wrong", runs_dir, count=60_000)  # a private install's shared mark
    shared = marks_path("mnist", "train", runs_dir).read_bytes()
    a, b = Visitor(A, hosted=True), Visitor(B, hosted=True)
    set_mark("mnist", "train", 3, "wrong", runs_dir, count=60_000, by=a)
    set_mark("mnist", "train", 7, "right", runs_dir, count=60_000, by=b)
    assert load_marks("mnist", "train", runs_dir, by=a) == {3: "wrong"}
    assert load_marks("mnist", "train", runs_dir, by=b) == {7: "right"}
    assert marks_path("mnist", "train", runs_dir).read_bytes() == shared
    assert load_marks("mnist", "train", runs_dir) == {7: "wrong"}
    with pytest.raises(NotYours, match="no visitor identity"):
        set_mark("mnist", "train", 3, "wrong", runs_dir, count=60_000, by=Visitor("", hosted=True))


def test_a_hosted_visitor_cannot_fill_the_disk_with_marks(runs_dir, monkeypatch):
    monkeypatch.setattr("mnist_core.marks.HOSTED_MAX_MARKS", 3)
    a = Visitor(A, hosted=True)
    for index in range(3):
        set_mark("mnist", "train", index, "wrong", runs_dir, count=60_000, by=a)
    with pytest.raises(ValueError, match="at most 3 marks per visitor"):
        set_mark("mnist", "train", 10, "wrong", runs_dir, count=60_000, by=a)
    set_mark("mnist", "train", 1, "right", runs_dir, count=60_000, by=a)  # changing one is still fine
    set_mark("mnist", "train", 11, "wrong", runs_dir, count=60_000)  # a private install has no cap
    assert HOSTED_MAX_MARKS >= 1000


def test_the_policy_counts_every_kind_against_one_cap_whoever_asks():
    policy = JobPolicy.hosted()
    busy = [("run", f"v{n}") for n in range(7)] + [("map", "v7")]
    assert "8 jobs are queued or running" in policy.start_problem("new visitor", busy)
    assert policy.start_problem("new visitor", busy[:7]) is None
    assert "one at a time" in policy.start_problem("new visitor", busy[:6] + [("sweep", "v9")], "audit")
    assert "one job per visitor" in policy.start_problem("v3", busy[:7])
    assert JobPolicy().start_problem("v3", busy * 10, "sweep") is None  # a private install: no limits


def test_the_secret_file_is_not_listed_as_a_run(runs_dir):
    server_secret(runs_dir)
    assert list_runs(runs_dir) == [] and os.listdir(runs_dir) == [".secrets"]


def test_a_hosted_visitor_never_reads_a_server_path_in_a_message(tmp_path, monkeypatch):
    from mnist_core.data import missing_message
    from mnist_core.marks import MarksDamaged
    from mnist_core.storage import explain_write_error, plain_error

    monkeypatch.setenv("MNIST_HOSTED", "1")
    monkeypatch.chdir("/")
    runs_dir = tmp_path / "runs"
    set_mark("mnist", "train", 1, "wrong", runs_dir, count=60_000)
    marks_path("mnist", "train", runs_dir).write_text("{")
    with pytest.raises(MarksDamaged) as damaged:
        load_marks("mnist", "train", runs_dir)
    messages = [
        missing_message("mnist", tmp_path / "data"),
        explain_write_error(OSError(28, "No space left on device"), runs_dir / "x" / "checkpoint.pt"),
        explain_write_error(OSError(30, "Read-only file system"), runs_dir / "x" / "status.json"),
        plain_error(FileNotFoundError(2, "No such file or directory", str(runs_dir / "x" / "events.jsonl"))),
        plain_error(RuntimeError(f"torch failed on {runs_dir}/x/checkpoint.pt")),
        str(damaged.value),
    ]
    for message in messages:
        assert str(tmp_path) not in message, message
    assert "x/checkpoint.pt" in messages[4]  # still says which file
    monkeypatch.delenv("MNIST_HOSTED")
    assert str(tmp_path) in missing_message("mnist", tmp_path / "data")  # a private install shows it whole
