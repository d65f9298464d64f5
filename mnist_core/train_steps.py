"""How one training step runs: eagerly (`EagerSteps`), or replayed from a CUDA graph (`GraphSteps`).

Both work an epoch at a time: `begin_epoch(plan)` takes the epoch's order and augmentation draws
(`data.EpochPlan`), `run(i)` runs its step i (from 0), and each step's loss lands in `losses[i]`
on the device. The training loop reads the losses when the GPU has them (`progress_windows`),
so no step waits for the one before it to finish.

Why graphs: a small model's step on a GPU is bound by the host. Each of its dozens of small
kernels is launched from Python, and the GPU waits for them. Recorded once as a CUDA graph, the
whole step is one launch: picking the batch, augmenting it, forward, loss, backward, and the
optimizer with its schedule. What changes from step to step lives on the device:
- a step counter picks the batch's positions in the epoch's order;
- under a schedule, the learning rate comes from a table of every step's value, worked out
  before training by PyTorch's own scheduler (`learning_rates`), into Adam's learning rate, a
  device tensor;
- Adam is PyTorch's fused, capturable one (one kernel for every parameter), whose step count
  also stays on the device.
A schedule that moves Adam's beta1 (one-cycle with cycle_momentum) trains eagerly: the scheduler
writes beta1 into Adam as a plain number, which a recorded graph would keep at its first value,
and the fused Adam (like the multi-tensor one) takes beta1 only as a number, so a device tensor
would be read back to the host, which a recording forbids. SGD, torch.compile, and GPUs without
native bf16 (whose fp16 needs a loss scaler that reads the host every step) train eagerly too.
An epoch's smaller last batch has a graph of its own. The graphs are recorded after a few
warm-up steps on a side stream, as PyTorch's CUDA-graph notes ask; the warm-up's changes to the
weights, the optimizer and the random state are then undone, so training starts where eager
training would.

On the CPU there is nothing to record: `GraphSteps` runs the same step code as it is, which is
how the CPU tests check it against `EagerSteps`. `use_cuda_graphs` says when training takes the
graph path.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
from torch import nn

from mnist_core.config import TrainConfig
from mnist_core.data import Batches, EpochPlan

CUDA_GRAPHS = True  # bench/gpu.py turns this off to measure the eager loop beside the graphs
WARM_UP_STEPS = 3  # eager steps per batch size before recording (PyTorch's notes use 3)
# With torch.compile's CUDA graphs ("reduce-overhead") each step's outputs live in memory the next
# replay reuses; marking where a step begins tells PyTorch the previous step's outputs are done with.
mark_compiled_step = torch.compiler.cudagraph_mark_step_begin


def use_cuda_graphs(config: TrainConfig, device: torch.device) -> bool:
    """Whether `config` trains by replaying CUDA graphs on `device`: on CUDA, with Adam or AdamW
    and a beta1 that stays put, in bf16 (fp16's loss scaling needs the host every step), unless
    torch.compile is asked for."""
    moves_beta1 = config.schedule == "onecycle" and config.cycle_momentum
    return (CUDA_GRAPHS and device.type == "cuda" and not config.compile_model and not moves_beta1
            and config.optimizer in ("adam", "adamw") and native_bf16())


def native_bf16() -> bool:
    """Whether the CUDA GPU computes in bf16 itself. PyTorch's default also counts emulated bf16,
    and a V100 or T4 is quicker in fp16 (with a loss scaler, so it trains eagerly)."""
    return torch.cuda.is_bf16_supported(including_emulation=False)


class EagerSteps:
    """Each step run as Python: the CPU's way, and the GPU's when graphs are not used."""

    def __init__(self, batches: Batches, train_model: nn.Module, optimizer: torch.optim.Optimizer, scheduler,
                 scaler: torch.amp.GradScaler, autocast, loss_function: nn.Module, memory_format: torch.memory_format,
                 compiled: bool = False) -> None:
        self.batches, self.train_model, self.optimizer, self.scheduler = batches, train_model, optimizer, scheduler
        self.scaler, self.autocast, self.loss_function = scaler, autocast, loss_function
        self.memory_format, self.compiled = memory_format, compiled
        self.losses = torch.zeros(len(batches), device=batches.device)
        self.plan: EpochPlan | None = None

    def begin_epoch(self, plan: EpochPlan) -> None:
        self.plan = plan

    def run(self, index: int) -> None:
        size = self.batches.batch_size
        images, labels = self.batches.batch(self.plan, slice(index * size, (index + 1) * size))
        images = images.contiguous(memory_format=self.memory_format)
        self.optimizer.zero_grad(set_to_none=True)
        if self.compiled:
            mark_compiled_step()
        with self.autocast:
            loss = self.loss_function(self.train_model(images), labels)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler:
            self.scheduler.step()
        self.losses[index] = loss.detach()


class GraphSteps:
    """The whole step recorded as a CUDA graph and replayed (see the module's docstring)."""

    def __init__(self, config: TrainConfig, model: nn.Module, loss_function: nn.Module, batches: Batches,
                 memory_format: torch.memory_format, total_steps: int) -> None:
        device = batches.device
        self.model, self.loss_function, self.batches, self.memory_format = model, loss_function, batches, memory_format
        self.sizes = batches.batch_sizes()
        count = len(batches.labels)
        # The graphs read these tensors, so each epoch's plan is copied into them, never swapped in.
        self.plan = EpochPlan(torch.arange(count, device=device),
                              torch.zeros(count, 4, device=device) if batches.augment else None)
        self.step = torch.zeros((), dtype=torch.long, device=device)  # the step within the epoch
        self.done = torch.zeros((), dtype=torch.long, device=device)  # steps since training began
        self.losses = torch.zeros(len(self.sizes), device=device)
        self.offsets = {size: torch.arange(size, device=device) for size in set(self.sizes)}
        rates = learning_rates(config, total_steps)
        # A constant rate needs no table: two kernels fewer in each step.
        self.lr_table = torch.tensor(rates, device=device) if len(set(rates)) > 1 else None
        self.optimizer = graph_optimizer(config, model, device)
        # Autocast's cache of cast weights must be off inside a graph (PyTorch's CUDA-graph notes).
        self.autocast = (torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False) if device.type == "cuda"
                         else contextlib.nullcontext())
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        if device.type == "cuda":
            self._record()

    def begin_epoch(self, plan: EpochPlan) -> None:
        self.plan.order.copy_(plan.order)
        if plan.draws is not None:
            self.plan.draws.copy_(plan.draws)
        self.step.zero_()

    def run(self, index: int) -> None:
        size = self.sizes[index]
        if self.graphs:
            self.graphs[size].replay()  # the graph's own counter picks step `index`
        else:
            self._step(size)

    def _step(self, size: int) -> None:
        """One step, as recorded: only device tensors, no value read back to the host."""
        positions = self.offsets[size] + self.step * self.batches.batch_size
        images, labels = self.batches.batch(self.plan, positions)
        images = images.contiguous(memory_format=self.memory_format)
        if self.lr_table is not None:
            for group in self.optimizer.param_groups:
                group["lr"].copy_(self.lr_table.index_select(0, self.done.view(1)).squeeze(0))
        self.optimizer.zero_grad(set_to_none=True)  # inside a recording, backward then makes the graph's own
        with self.autocast:
            loss = self.loss_function(self.model(images), labels)
        loss.backward()
        self.optimizer.step()
        self.losses.index_copy_(0, self.step.view(1), loss.detach().float().view(1))
        self.step.add_(1)
        self.done.add_(1)

    def _record(self) -> None:
        device = self.batches.device
        saved = {name: value.clone() for name, value in self.model.state_dict().items()}
        random_state = torch.cuda.get_rng_state(device)
        sizes = sorted(set(self.sizes), reverse=True)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        try:
            # warnings: capturable Adam's "step() is running without CUDA graph capture", true of a warm-up
            with torch.cuda.stream(side), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for size in sizes:
                    for _ in range(WARM_UP_STEPS):
                        self.step.zero_()  # both counters at 0: the positions and the schedule's index stay
                        self.done.zero_()  # in range (an index out of range is a device-side assert)
                        self._step(size)
        finally:
            torch.cuda.current_stream(device).wait_stream(side)
            self._undo_warm_up(saved)
            torch.cuda.set_rng_state(random_state, device)
        for size in sizes:  # recording runs nothing: the state stays as the warm-up left it, undone
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                self._step(size)
            self.graphs[size] = graph

    @torch.no_grad()
    def _undo_warm_up(self, saved: dict[str, torch.Tensor]) -> None:
        for name, value in self.model.state_dict().items():
            value.copy_(saved[name])
        for state in self.optimizer.state.values():  # Adam's moments and step count all start at zero
            for value in state.values():
                if torch.is_tensor(value):
                    value.zero_()
        for counter in (self.step, self.done, self.losses):
            counter.zero_()


def graph_optimizer(config: TrainConfig, model: nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """Adam or AdamW whose learning rate is a device tensor that a graph sets in place: fused and
    capturable on CUDA; on the CPU, where capturable does not exist, the plain single-tensor loop
    (for the tests that run the graph's step without recording it)."""
    params = [parameter for parameter in model.parameters() if parameter.requires_grad]
    kind = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    on_cuda = device.type == "cuda"
    return kind(params, lr=torch.tensor(config.lr, device=device), betas=config.adam_betas,
                weight_decay=config.weight_decay, capturable=on_cuda, fused=on_cuda, foreach=False)


def learning_rates(config: TrainConfig, total_steps: int) -> list[float]:
    """Every step's learning rate, as `make_optimizer` and `make_scheduler` set it step by step."""
    probe = nn.Module()
    probe.weight = nn.Parameter(torch.zeros(1))  # not nn.Linear: its random start would shift dropout's draws
    optimizer = make_optimizer(config, probe)
    scheduler = make_scheduler(config, optimizer, total_steps)
    rates = []
    with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": no step is taken here
        warnings.simplefilter("ignore")
        for step in range(total_steps):
            rates.append(float(optimizer.param_groups[0]["lr"]))
            if scheduler and step < total_steps - 1:
                scheduler.step()
    return rates


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = [parameter for parameter in model.parameters() if parameter.requires_grad]  # fixed layers stay out
    lr, decay = config.lr, config.weight_decay
    # The fused kernels update every parameter in one pass: fewer passes over memory per step,
    # which is what a small model's step is made of (CPU and CUDA; MPS keeps the default).
    fused = True if params[0].device.type in ("cpu", "cuda") else None
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, betas=config.adam_betas, weight_decay=decay, fused=fused)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=config.adam_betas, weight_decay=decay, fused=fused)
    return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=decay)


def make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int):
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=total_steps, cycle_momentum=config.cycle_momentum
        )
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    return None


def mixed_precision(device: torch.device):
    """bf16 autocast where the GPU has it (no scaling needed), else fp16 with a GradScaler."""
    if device.type != "cuda":
        return contextlib.nullcontext(), torch.amp.GradScaler("cpu", enabled=False)
    dtype = torch.bfloat16 if native_bf16() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    return torch.autocast("cuda", dtype=dtype), scaler

