"""Optional torch.compile: compiled up front, timed apart, and training starts from the same state.

The tests use torch.compile's "eager" backend: the same tracing and the same warm-up code
path, without waiting for a C++ compiler (that is minutes of a CI run for no extra insight).
"""

import pytest
import torch

from mnist_core import train
from mnist_core.config import TrainConfig
from mnist_core.data import Batches, load_split
from mnist_core.events import Compiled, Failed, Finished, Progress, Started
from mnist_core.models import build_model

TINY = TrainConfig(model="fast", epochs=1, batch_size=48, lr=0.003)  # 512 images: a last batch of 32


@pytest.fixture(autouse=True)
def eager_backend(monkeypatch):
    monkeypatch.setattr(train, "COMPILE_BACKEND", "eager")


def test_compiled_run_reports_compile_time_apart_and_trains_like_the_plain_one(tiny_data_dir):
    events = []
    compiled = train.fit(TINY.replace(compile_model=True), on_event=events.append, data_dir=tiny_data_dir)
    plain = train.fit(TINY, data_dir=tiny_data_dir)
    kinds = [type(event) for event in events]
    assert kinds.index(Started) < kinds.index(Compiled) < kinds.index(Progress)
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.compile_seconds == events[kinds.index(Compiled)].seconds > 0
    assert plain.outcome.compile_seconds == 0
    # The fast model has no dropout or batch norm: the warm-up passes must leave no trace at all.
    for name, tensor in plain.model.state_dict().items():
        torch.testing.assert_close(compiled.model.state_dict()[name], tensor)


def test_warm_up_restores_batch_norm_statistics_and_drops_gradients(tiny_data_dir):
    images, labels = load_split("mnist", True, tiny_data_dir)
    batches = Batches(images, labels, 48, torch.device("cpu"))
    model = build_model("modern").train()
    before = {name: buffer.clone() for name, buffer in model.named_buffers()}
    compiled, seconds = train._compile(model, batches, torch.nn.CrossEntropyLoss(), torch.autocast("cpu", enabled=False),
                                       torch.contiguous_format)
    assert seconds > 0
    assert all(torch.equal(buffer, before[name]) for name, buffer in model.named_buffers())
    assert all(parameter.grad is None for parameter in model.parameters())
    sample = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(compiled.eval()(sample), model.eval()(sample))


def test_a_compiler_failure_is_a_clear_failed_event(tiny_data_dir, monkeypatch):
    def broken_backend(graph, example_inputs):
        raise RuntimeError("no C++ compiler found\nlong details")

    monkeypatch.setattr(train, "COMPILE_BACKEND", broken_backend)
    torch._dynamo.reset()  # forget compiled code from the other tests
    result = train.fit(TINY.replace(compile_model=True), data_dir=tiny_data_dir)
    assert isinstance(result.outcome, Failed)
    assert "torch.compile failed" in result.outcome.message and "without compiling" in result.outcome.message


def test_compile_mode_is_cuda_graphs_on_a_gpu_only(monkeypatch):
    # On a GPU a small model's step is bound by kernel launches, which CUDA graphs remove
    # (bench/gpu.py); on a CPU there are none to remove, so the default mode stays.
    assert train.compile_mode(torch.device("cuda")) == "reduce-overhead"
    assert train.compile_mode(torch.device("cpu")) is None
    monkeypatch.setattr(train, "COMPILE_MODE", "default")  # what bench/gpu.py sets to compare
    assert train.compile_mode(torch.device("cuda")) == "default"


def test_warm_up_leaves_no_gradient_behind_between_batch_shapes(tiny_data_dir, monkeypatch):
    # With CUDA graphs a gradient kept from one warm-up pass to the next would be read after the
    # next replay overwrote it; the warm-up drops them after each pass (and runs 3 passes).
    monkeypatch.setattr(train, "compile_mode", lambda device: "reduce-overhead")
    seen = []
    real_backward = torch.Tensor.backward

    def backward(self, *args, **kwargs):
        seen.append([p.grad is None for p in model.parameters() if p.requires_grad])
        return real_backward(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "backward", backward)
    images, labels = load_split("mnist", True, tiny_data_dir)
    batches = Batches(images, labels, TINY.batch_size, torch.device("cpu"))
    model = build_model("fast")
    loss = torch.nn.CrossEntropyLoss()
    train._compile(model, batches, loss, torch.autocast("cpu", enabled=False), torch.contiguous_format)
    assert len(seen) == 6  # two batch shapes (48 and the last 32), three passes each
    assert all(all(empty) for empty in seen)
    assert all(p.grad is None for p in model.parameters())
