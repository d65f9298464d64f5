"""How a step runs: eagerly, or as the CUDA graph's step code (train_steps), and what they share.

On the CPU the graph path's step code runs as it is, without recording: these tests check it
against the eager loop (the same weights from the same seed), with schedules that move the
learning rate, weight decay, batch norm, dropout, augmentation and a smaller last batch. The `gpu` tests record and replay real CUDA graphs; elsewhere they are skipped and
say so.
"""

from __future__ import annotations

import math

import pytest
import torch

from mnist_core import train
from mnist_core.config import PRESETS, TrainConfig
from mnist_core.data import Batches, load_split
from mnist_core.events import GRAPH_METHOD, Compiled, Finished, Progress
from mnist_core.progress_windows import ProgressWindows
from mnist_core.train_steps import learning_rates, make_optimizer, make_scheduler, use_cuda_graphs

# 512 tiny images in batches of 48: 10 full batches and a last one of 32, each epoch.
CASES = {
    "case study (Adam, constant lr)": TrainConfig(model="seed", epochs=2, batch_size=48, lr=0.01),
    "one-cycle, AdamW, label smoothing": TrainConfig(
        model="fast", epochs=2, batch_size=48, lr=0.01, optimizer="adamw", schedule="onecycle", cycle_momentum=False,
        weight_decay=0.01, label_smoothing=0.1),
    "batch norm, dropout, augmentation": TrainConfig(
        model="modern", epochs=1, batch_size=48, lr=0.006, optimizer="adamw", schedule="cosine", augment=True),
}


def graph_path_on_the_cpu(monkeypatch):
    monkeypatch.setattr(train, "use_cuda_graphs", lambda config, device: True)


def initial_weights(config: TrainConfig) -> dict[str, torch.Tensor]:
    torch.manual_seed(config.seed)  # what fit does before it builds the model
    return {key: value.clone() for key, value in train.build_model(config.model).state_dict().items()}


def assert_trained_alike(graph: torch.nn.Module, eager: torch.nn.Module, start: dict, share: float) -> float:
    """Each weight tensor of `graph` within `share` of how far eager training moved it.

    Not element by element: Adam divides each update by the root of its squared-gradient
    average, so a weight whose gradients are all but zero moves by a sizeable step on float
    rounding alone (one linear weight of the fast model, 1e-7 apart after 3 steps, was 0.013 apart
    after 22, while every loss agreed to 1e-4). The tensor as a whole stays put. Returns the
    largest share seen."""
    largest = 0.0
    for key, value in eager.state_dict().items():
        if not value.is_floating_point():
            assert torch.equal(graph.state_dict()[key], value), key  # batch norm's count of batches
            continue
        moved = (value.cpu() - start[key]).norm()
        apart = (graph.state_dict()[key].cpu() - value.cpu()).norm()
        assert apart <= share * moved + 1e-6, f"{key}: graph and eager {apart:.3g} apart; training moved it {moved:.3g}"
        largest = max(largest, float(apart / moved)) if moved > 0 else largest
    return largest


@pytest.mark.parametrize("name", list(CASES))
def test_the_graph_step_trains_like_the_eager_loop(name, tiny_data_dir, monkeypatch):
    config = CASES[name]
    eager = train.fit(config, data_dir=tiny_data_dir)
    graph_path_on_the_cpu(monkeypatch)
    events = []
    graph = train.fit(config, on_event=events.append, data_dir=tiny_data_dir)
    assert isinstance(graph.outcome, Finished) and isinstance(eager.outcome, Finished)
    compiled = [event for event in events if isinstance(event, Compiled)]
    assert [event.method for event in compiled] == [GRAPH_METHOD]  # the graph path did run
    assert_trained_alike(graph.model, eager.model, initial_weights(config), share=0.01)
    for mine, theirs in zip(graph.epochs, eager.epochs, strict=True):
        assert mine.train_loss == pytest.approx(theirs.train_loss, rel=1e-3)
        assert mine.val_loss == pytest.approx(theirs.val_loss, rel=1e-3)


def test_the_graph_path_reports_each_epochs_last_step_and_stops_between_steps(tiny_data_dir, monkeypatch):
    graph_path_on_the_cpu(monkeypatch)
    events = []
    config = CASES["case study (Adam, constant lr)"]
    train.fit(config, on_event=events.append, data_dir=tiny_data_dir)
    progress = [event for event in events if isinstance(event, Progress)]
    assert [p.step for p in progress if p.step == p.steps_per_epoch] == [11, 11]  # each epoch's last step
    assert all(math.isfinite(p.loss) for p in progress)
    asked = []
    result = train.fit(config, should_stop=lambda: asked.append(1) or len(asked) > 3, data_dir=tiny_data_dir)
    assert result.outcome == train.Cancelled(epochs_completed=0) and len(asked) == 4


@pytest.mark.parametrize("schedule", ["onecycle", "cosine"])
def test_the_learning_rate_table_holds_what_the_eager_scheduler_sets_step_by_step(schedule):
    config = TrainConfig(model="fast", epochs=1, lr=0.01, schedule=schedule, cycle_momentum=False)
    optimizer = make_optimizer(config, torch.nn.Linear(1, 1))
    scheduler = make_scheduler(config, optimizer, total_steps=20)
    seen = []
    for _ in range(20):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    rates = learning_rates(config, 20)
    assert rates == pytest.approx(seen) and len(set(rates)) == 20
    assert learning_rates(TrainConfig(), 7) == [0.01] * 7


def test_graphs_are_used_on_a_gpu_with_native_bf16_and_adam_and_a_beta1_that_stays_put(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    cuda = torch.device("cuda")
    assert use_cuda_graphs(TrainConfig(), cuda)
    assert use_cuda_graphs(PRESETS["fast"].config, cuda) and use_cuda_graphs(PRESETS["best"].config, cuda)
    assert use_cuda_graphs(TrainConfig(schedule="onecycle", cycle_momentum=False, optimizer="adamw"), cuda)
    # The scheduler writes beta1 into Adam as a plain number, which a graph could not change step by step.
    cycling = TrainConfig(schedule="onecycle", cycle_momentum=True)
    assert not use_cuda_graphs(cycling, cuda)
    assert not use_cuda_graphs(TrainConfig(optimizer="sgd"), torch.device("cuda"))
    assert not use_cuda_graphs(TrainConfig(compile_model=True), torch.device("cuda"))
    assert not use_cuda_graphs(TrainConfig(), torch.device("cpu"))
    # Emulated bf16 (a V100, a T4) does not count: those train eagerly, in fp16 with a loss scaler.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert not use_cuda_graphs(TrainConfig(), cuda)


def test_a_batch_from_a_tensor_of_positions_is_the_batch_from_the_slice(tiny_data_dir):
    images, labels = load_split("mnist", True, tiny_data_dir)
    batches = Batches(images, labels, 48, torch.device("cpu"), augment=True, generator=torch.Generator().manual_seed(3))
    plan = batches.plan()
    assert batches.batch_sizes() == [48] * 10 + [32]
    by_slice = batches.batch(plan, slice(96, 144))
    by_tensor = batches.batch(plan, torch.arange(48) + 96)
    assert all(torch.equal(a, b) for a, b in zip(by_slice, by_tensor, strict=True))


def test_progress_windows_on_the_cpu_give_each_windows_figures_at_once(monkeypatch):
    from mnist_core import progress_windows

    clock = iter([100.0, 100.5, 102.0])  # the epoch starts, then each window ends
    monkeypatch.setattr(progress_windows.time, "perf_counter", lambda: next(clock))
    windows = ProgressWindows(torch.device("cpu"))
    windows.begin_epoch(seconds_before=10.0)
    losses = torch.tensor([1.0, 3.0, 5.0, 7.0])
    windows.ask(losses, 0, 2, images=128, info="first")
    windows.ask(losses, 2, 4, images=96, info="second")
    first, second = windows.ready()
    assert (first.mean_loss, first.images_per_second, first.elapsed, first.info) == (2.0, 256.0, 10.5, "first")
    assert (second.mean_loss, second.images_per_second, second.elapsed, second.info) == (6.0, 64.0, 12.0, "second")
    assert windows.ready(wait=True) == []


@pytest.mark.gpu
@pytest.mark.parametrize("preset", ["case-study", "fast"])
def test_graph_replayed_epochs_give_the_eager_epochs_weights(preset, monkeypatch):
    # The real MNIST, two epochs of 40 steps of 64 and a last one of 40 (its own graph): the case
    # study's settings, and the fast preset's (one-cycle schedule, label smoothing). Both run in
    # bf16 with the same fused Adam: on an H200 every weight tensor ended less than 0.01 % of its
    # movement in training away from the eager one (with PyTorch's foreach Adam in the graph, up to
    # 4.5 %: a high learning rate grows rounding differences). A wrong batch or learning rate would put them about as far apart
    # as training moved them.
    from mnist_core import train_steps

    config = PRESETS[preset].config.replace(device="cuda", epochs=2, batch_size=64, train_subset=64 * 40 + 40)
    monkeypatch.setattr(train_steps, "CUDA_GRAPHS", False)
    eager = train.fit(config)
    monkeypatch.setattr(train_steps, "CUDA_GRAPHS", True)
    events = []
    graph = train.fit(config, on_event=events.append)
    assert [e.method for e in events if isinstance(e, Compiled)] == [GRAPH_METHOD]
    assert isinstance(graph.outcome, Finished) and isinstance(eager.outcome, Finished)
    largest = assert_trained_alike(graph.model, eager.model, initial_weights(config), share=0.01)
    print(f"{preset}: graph and eager weights at most {largest:.2%} of their movement apart")
    for mine, theirs in zip(graph.epochs, eager.epochs, strict=True):
        assert mine.train_loss == pytest.approx(theirs.train_loss, rel=0.02)
    assert graph.outcome.test_accuracy == pytest.approx(eager.outcome.test_accuracy, abs=1.0)


@pytest.mark.gpu
def test_the_graph_path_on_a_gpu_reports_every_epochs_last_step_and_can_be_stopped():
    config = TrainConfig(model="seed", epochs=2, device="cuda", train_subset=64 * 100 + 10)
    events = []
    result = train.fit(config, on_event=events.append)
    assert [e.method for e in events if isinstance(e, Compiled)] == [GRAPH_METHOD]
    progress = [e for e in events if isinstance(e, Progress)]
    # Timed by the GPU's events: a speed no H200 reaches for this model would be the host's queueing.
    assert all(0 < p.images_per_second < 5_000_000 for p in progress)
    assert [p.elapsed for p in progress] == sorted(p.elapsed for p in progress)
    assert [p.epoch for p in progress if p.step == p.steps_per_epoch] == [1, 2]
    assert all(math.isfinite(p.loss) for p in progress) and isinstance(result.outcome, Finished)
    asked = []
    stopped = train.fit(config, should_stop=lambda: asked.append(1) or len(asked) > 30)
    assert stopped.outcome == train.Cancelled(epochs_completed=0)
