"""`runs`: every run and job as one table, for the CLI and the Train page's CSV download."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

from mnist_core.config import TrainConfig
from mnist_core.jobs import execute_run
from mnist_core.map_job import MapBuild
from mnist_core.run_table import COLUMNS, rows_csv, run_rows
from mnist_core.runs import create_run, summarize

ROOT = Path(__file__).resolve().parent.parent


def test_each_run_is_a_row_with_its_settings_and_results(tiny_data_dir, runs_dir):
    finished = create_run(TrainConfig(model="fast", epochs=1, batch_size=32, lr=0.003, train_subset=64), runs_dir)
    execute_run(finished, tiny_data_dir)
    queued = create_run(TrainConfig(model="seed", epochs=2, exclude=(3, 7)), runs_dir)
    queued.update_status(message="=HYPERLINK(\"http://example.com\")")  # text a spreadsheet would run
    rows = run_rows(runs_dir)
    assert [row["id"] for row in rows] == [queued.id, finished.id]  # newest first
    assert all(list(row) == list(COLUMNS) for row in rows)
    done = rows[1]
    assert (done["kind"], done["state"], done["model"], done["lr"], done["epochs"]) == ("run", "finished", "fast", 0.003, 1)
    assert done["test_accuracy"] == round(summarize(finished).test_accuracy, 4) and done["train_seconds"] > 0
    assert rows[0]["left_out"] == 2 and rows[0]["test_accuracy"] is None

    table = list(csv.DictReader(io.StringIO(rows_csv(rows))))
    assert [row["id"] for row in table] == [queued.id, finished.id]
    assert table[0]["message"].startswith("'=")  # shown as text, never run as a formula
    assert table[0]["test_accuracy"] == ""


def test_the_command_prints_the_same_rows(tiny_data_dir, runs_dir):
    run = create_run(TrainConfig(model="fast", epochs=1, train_subset=32), runs_dir)
    execute_run(run, tiny_data_dir)

    def command(*options):
        done = subprocess.run([sys.executable, "-m", "mnist_core", "runs", *options, "--runs-dir", str(runs_dir)],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert command("--csv") == rows_csv(run_rows(runs_dir))
    (line,) = command("--json").splitlines()
    assert json.loads(line)["id"] == run.id
    assert run.id in command() and "fast" in command()


def test_listing_runs_and_jobs_imports_no_torch(runs_dir):
    """`python -m mnist_core runs` and `jobs` answer in a tenth of a second: reading the runs'
    settings and every kind of job (a map build included) needs no torch (1.5 s to import)."""
    run = create_run(TrainConfig(model="fast", epochs=1, device="cpu"), runs_dir)
    MapBuild(run.path / "checkpoint.pt.map-test.npz").update_status(state="queued")  # a map build's status file
    for command in ("runs", "jobs"):
        listing = ("import runpy, sys\n"
                   f"sys.argv = ['mnist_core', {command!r}, '--json', '--runs-dir', {str(runs_dir)!r}]\n"
                   "try:\n"
                   "    runpy.run_module('mnist_core', run_name='__main__')\n"
                   "finally:\n"
                   "    print('torch imported:', 'torch' in sys.modules, file=sys.stderr)\n")
        done = subprocess.run([sys.executable, "-c", listing], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stderr.strip() == "torch imported: False", (command, done.stderr)
        kinds = [json.loads(line)["kind"] for line in done.stdout.splitlines()]
        assert sorted(kinds) == ["map", "run"], (command, done.stdout)
