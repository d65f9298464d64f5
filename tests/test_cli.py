"""The command line: train prints a progress bar and ends with one JSON line; Ctrl-C cancels."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import auto_device, run_command, start_command

ROOT = Path(__file__).resolve().parent.parent


def test_train_ends_with_a_json_summary_and_evaluate_agrees(tiny_data_dir, runs_dir):
    done = run_command(
        "train",
        "--preset",
        "fast",
        "--batch-size",
        "32",
        "--lr",
        "0.003",
        "--data-dir",
        str(tiny_data_dir),
        "--runs-dir",
        str(runs_dir),
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    for key in ("test_accuracy", "train_seconds", "images_per_second", "epochs", "device", "run_dir"):
        assert key in summary
    assert summary["epochs"] == 1 and summary["device"] == auto_device() and summary["test_accuracy"] > 90
    assert "epoch 1/1" in done.stderr
    evaluated = run_command("evaluate", summary["run_dir"], "--data-dir", str(tiny_data_dir))
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout.strip().splitlines()[-1])["accuracy"] == summary["test_accuracy"]


def test_invalid_options_are_explained_without_a_traceback(runs_dir):
    done = run_command("train", "--lr", "-1", "--runs-dir", runs_dir)
    assert done.returncode == 2 and "lr" in done.stderr and "Traceback" not in done.stderr
    missing = run_command("evaluate", "/no/such/run")
    assert missing.returncode == 1 and "no checkpoint" in missing.stderr and "Traceback" not in missing.stderr


def test_a_mistaken_command_is_answered_before_pytorch_is_loaded(tmp_path):
    """Importing PyTorch takes about 2 s: a mistyped option, path or run id is refused without it."""
    script = """
import sys
from mnist_core.cli import main
code = main(sys.argv[1:])
print("exit", code, "torch" in sys.modules)
"""
    runs = str(tmp_path / "runs")
    for args, code in [(["train", "--lr", "-1", "--runs-dir", runs], 2),
                       (["train", "--output", str(tmp_path / "missing" / "m.pt"), "--runs-dir", runs], 2),
                       (["export", "some-run", "--runs-dir", runs], 2),
                       (["export", "no-such-run", "--onnx", str(tmp_path / "m.onnx"), "--runs-dir", runs], 1),
                       (["compare", "no-such-run", "default", "--runs-dir", runs], 1)]:
        done = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=60)
        assert done.stdout.split() == ["exit", str(code), "False"], (args, done.stdout, done.stderr)
        assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr, (args, done.stderr)
    assert not (tmp_path / "runs").exists()  # refused before a run folder was made


def test_presets_and_models_are_listed():
    presets = run_command("presets")
    assert all(name in presets.stdout for name in ("case-study", "fast", "best"))
    assert "seed" in run_command("models").stdout


def test_ctrl_c_cancels_cleanly_and_keeps_the_last_epoch(tiny_data_dir, runs_dir):
    process = start_command("train", "--model", "fast", "--epochs", "50", "--batch-size", "4",
                            "--data-dir", tiny_data_dir, "--runs-dir", runs_dir)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not list(runs_dir.glob("*/checkpoint.pt")):
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["status"] == "cancelled" and summary["epochs"] >= 1
    assert os.path.exists(os.path.join(summary["run_dir"], "checkpoint.pt"))
    assert "Traceback" not in stderr


def test_preset_values_are_kept_unless_an_option_overrides_them():
    from mnist_core.cli import _config_from_args, build_parser

    args = build_parser().parse_args(["train", "--preset", "fast", "--compile", "--lr", "0.002"])
    config = _config_from_args(args)
    assert config.compile_model and config.lr == 0.002
    assert config.model == "fast" and config.adam_betas == (0.8, 0.9) and config.label_smoothing == 0.2
    assert not config.cycle_momentum
    assert _config_from_args(build_parser().parse_args(["train", "--preset", "fast", "--cycle-momentum"])).cycle_momentum
    assert not _config_from_args(build_parser().parse_args(["train"])).compile_model


def test_a_bad_output_path_is_refused_before_any_training(tiny_data_dir, runs_dir, tmp_path):
    for output, reason in [(tmp_path / "missing-folder" / "model.pt", "does not exist"), (tmp_path, "is a folder")]:
        done = run_command("train", "--data-dir", tiny_data_dir, "--runs-dir", runs_dir, "--output", output)
        assert done.returncode == 2 and reason in done.stderr and "Traceback" not in done.stderr
        assert not runs_dir.exists()  # refused before a run folder was made


def test_a_ctrl_c_that_aborts_a_command_ends_it_without_a_traceback():
    """A real SIGINT, raised as KeyboardInterrupt inside the command (as a second Ctrl-C, or one
    pressed while it still imports, is): one line on stderr, and the process ends by SIGINT (a
    shell says 130, and a script that ran it stops), with no traceback."""
    interrupted = (
        "import os, runpy, signal, sys, time\n"
        # Python's own Ctrl-C handler, even where the tests were started with SIGINT ignored
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "import mnist_core.cli as cli\n"
        "def main(argv=None):  # a command that is interrupted while it works\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(30)\n"
        "    return 0\n"
        "cli.main = main\n"
        "sys.argv = ['mnist_core', 'presets']\n"
        "runpy.run_module('mnist_core', run_name='__main__')\n"
    )
    process = subprocess.run([sys.executable, "-c", interrupted], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert process.returncode == -signal.SIGINT, process.stderr
    assert process.stderr.strip() == "aborted (Ctrl-C)", process.stderr
