"""Run folders: creation, status, events, listing, interrupted detection, deletion, summaries."""

import json

import pytest

from mnist_core.config import TrainConfig
from mnist_core.events import EpochEnd, Finished, Progress
from mnist_core.runs import DeleteError, create_run, delete_run, get_run, list_runs, summarize
from tests.conftest import dead_pid


def test_a_new_run_is_a_complete_folder(runs_dir):
    run = create_run(TrainConfig(epochs=2), runs_dir, owner="tab-1")
    assert run.config == TrainConfig(epochs=2)
    status = run.status()
    assert status["state"] == "queued" and status["owner"] == "tab-1"
    assert sorted(p.name for p in run.path.iterdir()) == ["config.json", "status.json"]
    assert [r.id for r in list_runs(runs_dir)] == [run.id]
    assert get_run(run.id, runs_dir) == run


def test_events_round_trip_and_a_torn_last_line_is_skipped(runs_dir):
    run = create_run(TrainConfig(), runs_dir)
    written = [Progress(1, 5, 10, 0.5, 1000.0, 0.1), EpochEnd(1, 0.4, 0.3, 91.0, 2.0)]
    for event in written:
        run.append_event(event)
    with open(run.path / "events.jsonl", "a") as file:
        file.write('{"type": "Progress", "epo')  # a writer caught mid-line
    assert run.events() == written
    with open(run.path / "events.jsonl", "a") as file:  # the writer finishes its line
        file.write('ch": 2, "step": 1, "steps_per_epoch": 10, "loss": 0.2, "images_per_second": 9.0, "elapsed": 3.0}\n')
    run.append_event(EpochEnd(2, 0.2, 0.2, 95.0, 2.0))
    assert run.events() == [*written, Progress(2, 1, 10, 0.2, 9.0, 3.0), EpochEnd(2, 0.2, 0.2, 95.0, 2.0)]


def test_a_run_whose_process_died_reads_and_is_recorded_as_interrupted(runs_dir):
    run = create_run(TrainConfig(), runs_dir)
    run.update_status(state="running", pid=dead_pid())
    status = run.current_status()
    # The server that created it (this process) still runs: its worker was killed, nobody asked.
    assert status["state"] == "interrupted" and "process was killed" in status["message"]
    assert "request" not in status["message"]
    assert run.status()["state"] == "interrupted"  # recorded, since the folder is writable
    assert summarize(run).state == "interrupted"


def test_listing_runs_only_reads(runs_dir):
    run = create_run(TrainConfig(), runs_dir)
    run.update_status(state="running", pid=dead_pid())
    before = (run.path / "status.json").read_bytes()
    assert [r.id for r in list_runs(runs_dir)] == [run.id]
    assert (run.path / "status.json").read_bytes() == before


def test_a_live_run_is_left_alone(runs_dir):
    run = create_run(TrainConfig(), runs_dir)  # this test process is responsible for it
    assert run.current_status()["state"] == "queued" and run.status()["state"] == "queued"


def test_runs_are_listed_in_creation_order_newest_first_even_within_one_second(runs_dir):
    created = [create_run(TrainConfig(model=model), runs_dir) for model in ("seed", "fast", "modern", "seed", "fast")]
    (runs_dir / "notes.txt").write_text("not a run")
    (runs_dir / ".half-created").mkdir()
    assert [r.id for r in list_runs(runs_dir)] == [r.id for r in reversed(created)]
    # created_at agrees with the listed order, so the ids' order is the real creation order
    times = [summarize(r).created_at for r in list_runs(runs_dir)]
    assert times == sorted(times, reverse=True)


def test_a_run_folder_with_a_broken_config_reads_as_damaged_and_can_be_deleted(runs_dir):
    def ended_run():
        run = create_run(TrainConfig(), runs_dir)
        run.update_status(state="finished")
        return run

    fine = create_run(TrainConfig(), runs_dir)
    not_json = ended_run()
    (not_json.path / "config.json").write_text('{"model": "seed", ')  # cut short
    unknown_key = ended_run()
    (unknown_key.path / "config.json").write_text(json.dumps({**TrainConfig().to_dict(), "colour": "red"}))
    bad_value = ended_run()
    (bad_value.path / "config.json").write_text(json.dumps({**TrainConfig().to_dict(), "dataset": "xyz"}))
    no_status = ended_run()
    (no_status.path / "status.json").unlink()

    summaries = {r.id: summarize(r) for r in list_runs(runs_dir)}
    assert summaries[fine.id].state == "queued" and not summaries[fine.id].damaged
    expected = {not_json.id: "not valid JSON", unknown_key.id: "colour", bad_value.id: "xyz",
                no_status.id: "status.json is missing"}
    for run_id, reason in expected.items():
        assert summaries[run_id].damaged and summaries[run_id].state == "damaged"
        assert (summaries[run_id].config is None) == (run_id != no_status.id)
        assert "damaged" in summaries[run_id].message and reason in summaries[run_id].message
    for run_id in expected:
        delete_run(get_run(run_id, runs_dir))
    assert [r.id for r in list_runs(runs_dir)] == [fine.id]


def test_a_delete_that_cannot_finish_says_so_and_leaves_the_run_listed(runs_dir, tiny_mount):
    run = create_run(TrainConfig(), runs_dir)
    run.update_status(state="finished")
    (run.path / "checkpoint.pt").write_bytes(b"weights")
    tiny_mount(run.path / "locked")  # a mount point inside the folder: rmdir fails with "busy", for real
    (run.path / "locked" / "file").write_text("x")
    with pytest.raises(DeleteError, match=f"Could not delete all of run {run.id}"):
        delete_run(run)
    assert [r.id for r in list_runs(runs_dir)] == [run.id]  # still listed, not hidden as .deleting
    assert not [p for p in runs_dir.iterdir() if p.name.endswith(".deleting")]


def test_delete_refuses_a_running_run_and_removes_an_ended_one(runs_dir):
    run = create_run(TrainConfig(), runs_dir)
    run.update_status(state="running")
    with pytest.raises(RuntimeError, match="stop it"):
        delete_run(run)
    run.update_status(state="finished")
    delete_run(run)
    assert list_runs(runs_dir) == [] and not run.path.exists()


def test_get_run_rejects_paths_outside_the_runs_folder(runs_dir):
    create_run(TrainConfig(), runs_dir)
    for bad in ("../etc", "nope", ".hidden"):
        with pytest.raises(FileNotFoundError):
            get_run(bad, runs_dir)


def test_summary_reads_best_accuracy_and_results(runs_dir):
    run = create_run(TrainConfig(), runs_dir)
    run.append_event(EpochEnd(1, 0.5, 0.4, 90.0, 3.0))
    run.append_event(EpochEnd(2, 0.3, 0.3, 94.5, 3.5))
    run.append_event(Finished(94.5, 6.5, 18000.0, 2))
    run.update_status(state="finished", device="CPU")
    summary = summarize(run)
    assert (summary.state, summary.best_val_accuracy, summary.test_accuracy) == ("finished", 94.5, 94.5)
    assert summary.epochs_done == 2 and summary.train_seconds == 6.5 and summary.device == "CPU"


def test_status_files_are_always_whole_json(runs_dir):
    run = create_run(TrainConfig(), runs_dir)
    for step in range(50):
        run.update_status(step=step)
    assert json.loads((run.path / "status.json").read_text())["step"] == 49
    assert not [p for p in run.path.iterdir() if p.suffix == ".tmp"]


def test_the_time_left_waits_until_the_pace_means_something(runs_dir):
    run = create_run(TrainConfig(epochs=1), runs_dir)
    run.update_status(state="running")
    run.append_event(Progress(1, 1, 100, 2.3, 500.0, 0.9))  # step 1: warming up, a wild pace
    assert summarize(run).seconds_left is None  # said as "estimating the time left…"
    run.append_event(Progress(1, 4, 100, 1.1, 5_000.0, 1.5))  # 4 % done
    assert summarize(run).seconds_left is None
    run.append_event(Progress(1, 20, 100, 0.5, 6_000.0, 4.0))  # 20 % in 4 s: 16 s to go
    assert summarize(run).seconds_left == pytest.approx(16.0)


def test_a_run_made_from_a_preset_is_known_as_that_preset():
    from mnist_core.config import PRESETS, matching_preset

    for name, preset in PRESETS.items():
        assert matching_preset(preset.config.replace(seed=7, exclude=(1, 2))) == name  # a person's choices aside
    assert matching_preset(PRESETS["fast"].config.replace(lr=0.02)) is None
