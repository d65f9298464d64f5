"""Sweep specs, their folders and their limits: everything about sweeps that needs no Ray."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys

import pytest

from mnist_core.config import ConfigError, TrainConfig
from mnist_core.policy import JobPolicy, QuotaExceeded
from mnist_core.runs import create_run, list_runs
from mnist_core.sweep import (
    MAX_TRIALS,
    Range,
    Sweep,
    SweepSpec,
    best_trial,
    create_sweep,
    describe,
    list_sweeps,
    parse_grid,
    parse_sample,
)


def test_a_grid_times_trials_makes_every_combination_in_order():
    spec = SweepSpec.from_preset("fast", grid={"lr": (0.01, 0.003), "batch_size": (64, 256)}, trials=2)
    configs = spec.configs()
    assert spec.count() == len(configs) == 8
    assert [(c.lr, c.batch_size) for c in configs[:4]] == [(0.01, 64), (0.01, 256), (0.003, 64), (0.003, 256)]
    assert configs[4:] == configs[:4]  # nothing sampled: the repeats are the same settings
    fast = TrainConfig.preset("fast")
    assert all(c.replace(lr=fast.lr, batch_size=fast.batch_size) == fast for c in configs)  # the rest is the preset


def test_samples_stay_in_their_range_spread_on_a_log_scale_and_repeat_with_the_seed():
    spec = SweepSpec.from_preset("fast", sample={"lr": Range(1e-4, 1e-1, log=True), "label_smoothing": Range(0, 0.2)},
                                 trials=200, seed=3)
    configs = spec.configs()
    rates = [c.lr for c in configs]
    assert all(1e-4 <= lr <= 1e-1 for lr in rates) and all(0 <= c.label_smoothing <= 0.2 for c in configs)
    # On a log scale each decade gets about a third of the samples; uniformly, 1e-4..1e-3 would get 1 %.
    assert sum(lr < 1e-3 for lr in rates) > 40
    assert SweepSpec.from_dict(spec.to_dict()).configs() == configs
    assert dataclasses.replace(spec, seed=4).configs() != configs


def test_integer_fields_are_sampled_as_whole_numbers():
    configs = SweepSpec.from_preset("fast", sample={"batch_size": Range(32, 512)}, trials=20).configs()
    assert all(isinstance(c.batch_size, int) and 32 <= c.batch_size <= 512 for c in configs)
    assert len({c.batch_size for c in configs}) > 5


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        (SweepSpec(grid={"dataset": ("mnist",)}), "dataset", "cannot be varied"),
        (SweepSpec(grid={"lr": (0.1, 50.0)}), "lr", "at most 10"),
        (SweepSpec(grid={"lr": ()}), "lr", "at least one value"),
        (SweepSpec(grid={"lr": (0.1,)}, sample={"lr": Range(0.1, 1)}), "lr", "both"),
        (SweepSpec(sample={"lr": Range(0, 1, log=True)}), "lr", "above 0"),
        (SweepSpec(sample={"lr": Range(1, 0.1)}), "lr", "empty"),
        (SweepSpec(sample={"optimizer": Range(1, 2)}), "optimizer", "choice"),
        (SweepSpec(grid={"seed": tuple(range(MAX_TRIALS + 1))}), "trials", f"at most {MAX_TRIALS}"),
        (SweepSpec(trials=0), "trials", "at least 1"),
        (SweepSpec(max_concurrent=0), "max_concurrent", "at least 1"),
    ],
)
def test_a_bad_spec_names_the_field_and_says_why(spec, field, words):
    with pytest.raises(ConfigError) as raised:
        spec.validate()
    assert raised.value.field == field and words in str(raised.value)


def test_command_line_grids_and_ranges_are_parsed_or_explained():
    assert parse_grid("lr=0.1,0.01") == ("lr", (0.1, 0.01))
    assert parse_grid("batch-size=64,128") == ("batch_size", (64, 128))
    assert parse_grid("optimizer=adam,sgd") == ("optimizer", ("adam", "sgd"))
    assert parse_sample("lr=1e-4:1e-1:log") == ("lr", Range(1e-4, 1e-1, log=True))
    assert parse_sample("label_smoothing=0:0.2") == ("label_smoothing", Range(0.0, 0.2))
    for bad in ("lr", "lr=", "epochs=two"):
        with pytest.raises(ConfigError):
            parse_grid(bad)
    for bad in ("lr=0.1", "lr=0.1:1:ln", "lr=a:b"):
        with pytest.raises(ConfigError):
            parse_sample(bad)
    assert describe(TrainConfig(lr=0.003, optimizer="sgd"), ["lr", "optimizer"]) == "lr=0.003, optimizer=sgd"


def test_a_sweep_folder_lists_apart_from_runs_and_its_trials_carry_its_id(runs_dir):
    spec = SweepSpec.from_preset("fast", grid={"lr": (0.01, 0.003)})
    sweep = create_sweep(spec, runs_dir, owner="me")
    assert list_sweeps(runs_dir) == [sweep] and sweep.spec == spec
    assert list_runs(runs_dir) == []  # runs/sweeps/ is not a (damaged) run
    trial = create_run(spec.configs()[0], runs_dir, extra_status={"sweep": sweep.id, "trial": 1})
    sweep.update_status(trials=[trial.id])
    assert list_runs(runs_dir) == [trial] and sweep.trial_runs() == [trial]
    assert [summary.sweep for summary in sweep.summaries()] == [sweep.id]
    assert not list(runs_dir.glob("sweeps/.*"))  # no staging folder left


def test_a_sweep_whose_driver_died_reads_as_interrupted(runs_dir):
    sweep = create_sweep(SweepSpec(), runs_dir)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    sweep.update_status(state="running", pid=gone.pid)
    assert sweep.current_status()["state"] == "interrupted" and not sweep.active
    assert Sweep(sweep.path).status()["state"] == "interrupted"  # recorded


def test_best_trial_is_the_finished_one_with_the_highest_test_accuracy(runs_dir):
    from mnist_core.events import EpochEnd, Finished
    from mnist_core.runs import summarize

    summaries = []
    for accuracy, state in ((97.0, "finished"), (99.5, "failed"), (98.0, "finished")):
        run = create_run(TrainConfig(), runs_dir)
        run.append_event(EpochEnd(1, 0.1, 0.1, accuracy, 1.0))
        if state == "finished":
            run.append_event(Finished(accuracy, 1.0, 100.0, 1))
        run.update_status(state=state)
        summaries.append(summarize(run))
    assert best_trial(summaries).test_accuracy == 98.0
    assert best_trial([]) is None


def test_the_hosted_policy_caps_sweeps_and_a_setting_turns_them_off():
    assert "turned off" in JobPolicy.hosted().sweep_problem(SweepSpec())  # off unless a setting turns them on
    hosted = JobPolicy.hosted(sweeps=True)
    four = SweepSpec.from_preset("fast", grid={"lr": (0.1, 0.01, 0.003, 0.001)})
    assert hosted.sweep_problem(four) is None
    five = SweepSpec.from_preset("fast", grid={"lr": (0.1, 0.01, 0.003, 0.001, 0.0003)})
    assert "at most 4 trials" in hosted.sweep_problem(five)
    assert "at a time" in hosted.sweep_problem(SweepSpec.from_preset("fast", max_concurrent=2))
    assert "epochs" in hosted.sweep_problem(SweepSpec.from_preset("fast", grid={"epochs": (1, 6)}))
    assert "turned off" in JobPolicy.hosted(sweeps=False).sweep_problem(four)
    assert JobPolicy().sweep_problem(five) is None
    with pytest.raises(QuotaExceeded, match="one job per visitor"):  # a sweep counts as the visitor's job
        hosted.check_sweep(four, "me", [("run", "me")])


def test_importing_mnist_core_or_the_sweep_module_does_not_import_ray():
    code = ("import sys, mnist_core.sweep, mnist_core.jobs, mnist_core.policy, mnist_core.__main__\n"
            "print('ray' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert done.stdout.strip() == "False"


def test_a_log_range_draws_within_bounds_at_the_edges():
    span = Range(1e-3, 1e-3, log=True)
    import random

    assert math.isclose(span.draw(random.Random(0), float), 1e-3)
