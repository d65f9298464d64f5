"""The training engine on tiny data: events, learning, determinism, cancellation, NaN, failures."""

import math

import pytest
import torch

from mnist_core.config import TrainConfig
from mnist_core.events import Cancelled, EpochEnd, Failed, Finished, Progress, Started
from mnist_core.train import fit
from tests.conftest import auto_device

TINY = TrainConfig(model="fast", epochs=2, batch_size=32, lr=0.003)


def test_fit_reports_typed_events_in_order_and_learns(tiny_data_dir):
    events = []
    result = fit(TINY, on_event=events.append, data_dir=tiny_data_dir)
    kinds = [type(event) for event in events]
    assert kinds[0] is Started and kinds[-1] is Finished
    assert kinds.count(EpochEnd) == 2 and Progress in kinds
    started = events[0]
    assert started.device == auto_device() and started.model == "fast" and started.parameters > 0
    assert started.steps_per_epoch == 16  # 512 / 32
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress[-1].step == progress[-1].steps_per_epoch  # the last step of each epoch is reported
    assert all(math.isfinite(e.loss) and e.images_per_second > 0 for e in progress)
    finished = events[-1]
    assert finished.test_accuracy > 90  # the tiny digits are easy
    assert finished.train_seconds > 0 and finished.images_per_second > 0
    assert result.outcome == finished and len(result.epochs) == 2


def test_same_seed_same_result_on_cpu(tiny_data_dir):
    first = fit(TINY.replace(epochs=1), data_dir=tiny_data_dir)
    second = fit(TINY.replace(epochs=1), data_dir=tiny_data_dir)
    other = fit(TINY.replace(epochs=1, seed=1), data_dir=tiny_data_dir)
    weights = [dict(r.model.state_dict()) for r in (first, second, other)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])
    assert first.epochs[0].val_loss == second.epochs[0].val_loss


def test_should_stop_cancels_within_one_step(tiny_data_dir):
    steps = []

    def stop_after_three_steps():
        steps.append(1)
        return len(steps) > 3

    events = []
    result = fit(TINY, on_event=events.append, should_stop=stop_after_three_steps, data_dir=tiny_data_dir)
    assert result.outcome == Cancelled(epochs_completed=0)
    assert events[-1] == result.outcome
    assert len(steps) == 4  # asked before each step; stopped at the first "yes"


def test_a_nan_loss_fails_the_run_with_a_message(tiny_data_dir, monkeypatch):
    from mnist_core import train

    class NanAfterFiveSteps(torch.nn.CrossEntropyLoss):
        calls = 0

        def forward(self, logits, labels):
            NanAfterFiveSteps.calls += 1
            loss = super().forward(logits, labels)
            return loss * float("nan") if NanAfterFiveSteps.calls > 5 else loss

    monkeypatch.setattr(train.nn, "CrossEntropyLoss", NanAfterFiveSteps)
    result = fit(TINY, data_dir=tiny_data_dir)
    assert isinstance(result.outcome, Failed)
    assert "diverged" in result.outcome.message and "learning rate" in result.outcome.message


def test_missing_data_is_a_failed_event_not_an_exception(tmp_path, monkeypatch):
    from mnist_core import data

    monkeypatch.setattr(data.urllib.request, "urlopen", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    events = []
    result = fit(TINY, on_event=events.append, data_dir=tmp_path)
    assert isinstance(result.outcome, Failed) and "train-images-idx3-ubyte" in result.outcome.message
    assert events == [result.outcome]


def test_checkpoint_callback_gets_one_checkpoint_per_epoch(tiny_data_dir):
    checkpoints = []
    fit(TINY.replace(schedule="onecycle", optimizer="adamw"), data_dir=tiny_data_dir, on_checkpoint=checkpoints.append)
    assert [c["epoch"] for c in checkpoints] == [1, 2]
    assert checkpoints[-1]["config"]["model"] == "fast"
    assert all(t.device.type == "cpu" and t.is_contiguous() for t in checkpoints[-1]["state_dict"].values())


def test_subset_augment_and_sgd_options_run(tiny_data_dir):
    events = []
    config = TINY.replace(epochs=1, train_subset=64, augment=True, optimizer="sgd", schedule="cosine")
    fit(config, on_event=events.append, data_dir=tiny_data_dir)
    assert events[0].train_images == 64 and isinstance(events[-1], Finished)


def test_the_fast_models_first_layer_comes_from_the_data_and_is_not_trained(tiny_data_dir):
    from mnist_core.data import load_split, normalize
    from mnist_core.models import PREPARE_IMAGES, build_model, set_whitening_filters

    result = fit(TINY.replace(epochs=1), data_dir=tiny_data_dir)
    expected = build_model("fast")
    set_whitening_filters(expected, normalize(load_split("mnist", True, tiny_data_dir)[0][:PREPARE_IMAGES]))
    torch.testing.assert_close(result.model[0].weight.contiguous(), expected[0].weight)
    assert torch.count_nonzero(result.model[0].bias) == 0
    assert result.model[3].weight.grad is not None  # the layers after it did train


def test_one_cycle_swings_beta1_unless_told_to_keep_the_configured_one():
    from mnist_core.models import build_model
    from mnist_core.train_steps import make_optimizer, make_scheduler

    def beta1_over_ten_steps(config):
        optimizer = make_optimizer(config, build_model(config.model))
        scheduler = make_scheduler(config, optimizer, total_steps=10)
        seen = []
        for _ in range(10):
            seen.append(optimizer.param_groups[0]["betas"][0])
            optimizer.step()
            scheduler.step()
        return seen

    swung = beta1_over_ten_steps(TINY.replace(schedule="onecycle", adam_betas=(0.8, 0.9)))
    assert max(swung) == pytest.approx(0.95) and min(swung) < 0.9  # PyTorch's 0.95 -> 0.85 -> 0.95
    kept = beta1_over_ten_steps(TINY.replace(schedule="onecycle", adam_betas=(0.8, 0.9), cycle_momentum=False))
    assert kept == [0.8] * 10


def test_a_loss_that_blows_up_without_nan_fails_as_diverged(tiny_data_dir):
    result = fit(TrainConfig(model="seed", epochs=3, batch_size=16, lr=10), data_dir=tiny_data_dir)
    assert isinstance(result.outcome, Failed)
    message = result.outcome.message
    assert "diverged" in message and "smaller learning rate than 10" in message


def test_an_epoch_left_at_chance_fails_as_diverged_and_a_short_or_learning_one_does_not():
    from mnist_core.train import chance_level_problem

    stuck = EpochEnd(1, train_loss=2.31, val_loss=2.30, val_accuracy=11.35, seconds=5.0)
    problem = chance_level_problem(stuck, steps=938, lr=0.5)
    assert "no better than guessing" in problem and "11.3 %" in problem and "smaller learning rate than 0.5" in problem
    assert chance_level_problem(stuck, steps=8, lr=0.5) is None  # a handful of steps may honestly not have learned
    learning = EpochEnd(1, train_loss=2.2, val_loss=2.1, val_accuracy=14.0, seconds=5.0)
    assert chance_level_problem(learning, steps=938, lr=0.5) is None  # its loss is below guessing's
    assert chance_level_problem(EpochEnd(1, 2.4, 2.3, 60.0, 5.0), steps=938, lr=0.5) is None


def test_a_listener_that_fails_on_the_last_event_does_not_escape(tiny_data_dir):
    def listener(event):
        if isinstance(event, Finished):
            raise OSError(28, "No space left on device")

    result = fit(TINY.replace(epochs=1), on_event=listener, data_dir=tiny_data_dir)
    assert isinstance(result.outcome, Failed) and "No space left" in result.outcome.message
