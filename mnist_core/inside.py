"""Inside the network: every layer's output for one image, and the convolutions' learned filters.

Both work on any registry model (seed, fast, modern, and any later one) through forward hooks
on the real model: a hook on each leaf module records what it returns, in the order the
forward pass calls them, so nothing is re-implemented per architecture. A module called twice
(the seed model uses one Sigmoid after both convolutions) gives two layers, "sigmoid" and
"sigmoid#2". Outputs are copied as they are recorded, because in-place layers (ReLU(inplace=True))
would otherwise overwrite the previous layer's output. The models are shared between sessions
(inference.load_model caches them), so a hook records only the forward pass of the thread that
set it.

`penultimate_features` hooks the input of the last linear layer instead: what the classifier
sees, which the embedding map (mnist_core.embedding) lays out in 2-D.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mnist_core.data import normalize
from mnist_core.models import count_parameters

SKIPPED = (nn.Dropout, nn.Identity)  # do nothing at inference: not worth a panel


@dataclass(frozen=True)
class LayerOutput:
    name: str  # the module's name in the model ("conv1", "3"), "#2" added for a second call
    kind: str  # its class name: Conv2d, ReLU, MaxPool2d, Linear…
    shape: tuple[int, ...]  # the output's shape without the batch dimension, e.g. (8, 24, 24)
    parameters: int  # the module's own parameter count (trained or fixed)
    output: np.ndarray  # float32, that shape
    step: int = 0  # its place in the strip, from 1 (layers that do nothing at inference are not counted)

    @property
    def is_map(self) -> bool:
        """A stack of 2-D feature maps (channels x height x width), drawn as one tiled picture."""
        return len(self.shape) == 3

    @property
    def label(self) -> str:
        """What a panel is titled with, as ConvNetJS does: its step, kind, output shape and parameters,
        and the module's name when it is a word ("conv1"; a Sequential's "3" would only repeat the
        step, off by the layers left out)."""
        size = "×".join(str(s) for s in self.shape)
        base = self.name.split("#")[0]  # "sigmoid#2": the second call of one module
        named = "" if base.isdigit() or base.lower() == self.kind.lower() else f" ({self.name})"
        return f"{self.step}. {self.kind}{named} · {size} · {self.parameters:,} params"


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name or type(module).__name__.lower(), module) for name, module in model.named_modules()
            if not list(module.children()) and not isinstance(module, SKIPPED)]


def _kind(module: nn.Module) -> str:
    """The PyTorch layer a module is, by name: Conv2d also for the seed model's SmallConv2d."""
    for cls in type(module).__mro__:
        if cls.__module__.startswith("torch.nn.") and cls is not nn.Module:
            return cls.__name__
    return type(module).__name__


@torch.no_grad()
def layer_outputs(model: nn.Module, image: torch.Tensor, dataset: str = "mnist") -> list[LayerOutput]:
    """Each layer's output for one image (uint8 or 0..1 float, 28x28), in the order they run,
    then the probabilities as a last entry named "softmax"."""
    device = next(model.parameters()).device
    records: list[LayerOutput] = []
    calls: dict[str, int] = {}
    hooks = []
    caller = threading.get_ident()  # the model is shared: other sessions' passes are not ours to record
    for name, module in _leaves(model):
        def record(module, inputs, output, name=name) -> None:
            if threading.get_ident() != caller:
                return
            calls[name] = calls.get(name, 0) + 1
            label = name if calls[name] == 1 else f"{name}#{calls[name]}"
            values = output.detach().float()[0].cpu().numpy().copy()  # a copy: in-place layers come next
            records.append(LayerOutput(label, _kind(module), tuple(values.shape),
                                       count_parameters(module), values, step=len(records) + 1))

        hooks.append(module.register_forward_hook(record))
    was_training = model.training
    model.eval()
    try:
        logits = model(normalize(image.reshape(1, 28, 28), dataset).to(device))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    probabilities = torch.softmax(logits.float(), 1)[0].cpu().numpy()
    records.append(LayerOutput("softmax", "Softmax", (10,), 0, probabilities, step=len(records) + 1))
    return records


def conv_filters(model: nn.Module, trained_only: bool = False) -> list[tuple[str, np.ndarray]]:
    """Each convolution's weights, (out channels, in channels, kh, kw), in the model's order;
    with `trained_only`, without fixed ones (the fast model's whitening layer is never trained)."""
    return [(name, module.weight.detach().float().cpu().numpy()) for name, module in _leaves(model)
            if isinstance(module, nn.Conv2d) and (module.weight.requires_grad or not trained_only)]


@torch.no_grad()
def penultimate_features(model: nn.Module, images: torch.Tensor, dataset: str = "mnist",
                         batch_size: int = 2000) -> np.ndarray:
    """The input of the model's last linear layer for each image: [N, features] float32."""
    last = [module for _, module in _leaves(model) if isinstance(module, nn.Linear)][-1]
    device = next(model.parameters()).device
    captured: list[torch.Tensor] = []
    caller = threading.get_ident()  # the model is shared: another session's prediction must not add rows

    def capture(module, inputs) -> None:
        if threading.get_ident() == caller:
            captured.append(inputs[0].detach().float().cpu())

    hook = last.register_forward_pre_hook(capture)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(images), batch_size):
            model(normalize(images[start:start + batch_size], dataset).to(device))
    finally:
        hook.remove()
        model.train(was_training)
    return torch.cat(captured).flatten(1).numpy()

