"""The model registry: each model has a name, a one-line description and a parameter count.

Every model takes a batch of normalised 1x28x28 images (see `data.normalize`) and returns
10 logits. `seed` is the case study's ConvNet, layer for layer; the others are what a
modern small CNN looks like, `deep` the largest of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mnist_core.config import MODEL_NAMES
from mnist_core.small_conv import SmallConv2d


class SeedConvNet(nn.Module):
    """The case study's ConvNet: two 3x3 convolutions with sigmoids, then one linear layer.

    Its second convolution is a `SmallConv2d`, an nn.Conv2d with the same parameters and output
    whose input gradient is computed faster on the CPU (mnist_core.small_conv). The first one's
    input, the images, needs no gradient in training, so it stays a plain nn.Conv2d.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels=1, out_channels=3, kernel_size=3, stride=1)
        self.conv2 = SmallConv2d(in_channels=3, out_channels=6, kernel_size=3, stride=1)
        self.sigmoid = nn.Sigmoid()
        self.linear1 = nn.Linear(3456, 10)  # 6 channels x 24 x 24

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.sigmoid(self.conv1(x))
        x = self.sigmoid(self.conv2(x))
        return self.linear1(x.flatten(1))


def _conv_block(channels_in: int, channels_out: int) -> list[nn.Module]:
    """3x3 conv, batch norm, 2x2 max-pool, ReLU. Pooling before the ReLU gives the same result
    (both are monotonic) on a quarter of the values, which matters on a CPU."""
    return [
        nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels_out),
        nn.MaxPool2d(2),
        nn.ReLU(inplace=True),
    ]


def fast_net() -> nn.Module:
    """LeNet-sized, built for one quick epoch: a fixed first layer, then 32 3x3 filters and a small head.

    The first layer's 8 5x5 filters are not trained: `set_whitening_filters` computes them
    from the training images before training (see `ModelSpec.prepare`). On a CPU that first
    convolution, one input channel at full resolution, is the costliest step of all, and a
    fixed one needs no gradients for itself or for the layer after it.
    """
    first = nn.Conv2d(1, 8, 5)  # 28 -> 24
    first.requires_grad_(False)
    return nn.Sequential(
        first,
        nn.MaxPool2d(2),  # 24 -> 12
        nn.ReLU(inplace=True),
        nn.Conv2d(8, 32, 3),  # 12 -> 10
        nn.MaxPool2d(2),  # 10 -> 5
        nn.ReLU(inplace=True),
        nn.Flatten(),
        nn.Linear(32 * 5 * 5, 128),
        nn.ReLU(inplace=True),
        nn.Linear(128, 10),
    )


@torch.no_grad()
def set_whitening_filters(model: nn.Module, images: torch.Tensor) -> None:
    """Make the model's first convolution a patch-whitening layer for `images` (normalised, Nx1x28x28).

    The filters are the principal directions of the images' 5x5 patches with the most
    variance, each scaled by one over its standard deviation, so their responses are
    uncorrelated with unit variance. Fast training recipes (e.g. the CIFAR-10 speedruns) start
    from this layer and keep it fixed. (Filters in +/- pairs, which let the ReLU keep both signs,
    were 0.05-0.1 points worse here than twice as many directions at the same cost.)
    """
    conv = model[0]
    channels, size = conv.out_channels, conv.kernel_size[0]
    patches = F.unfold(images.float(), size).transpose(1, 2).reshape(-1, size * size)
    covariance = (patches.T @ patches / len(patches)).cpu().double()  # eigh in float64 (MPS has none)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
    eigenvalues, eigenvectors = eigenvalues.flip(0)[:channels], eigenvectors.flip(1)[:, :channels]
    filters = eigenvectors.T / (eigenvalues.clamp(min=0).sqrt()[:, None] + 1e-2)
    conv.weight.copy_(filters.reshape(channels, 1, size, size).to(conv.weight))
    conv.bias.zero_()


def modern_net() -> nn.Module:
    """Batch-normalised 3-stage CNN with dropout; 99.6 % with augmentation and a one-cycle schedule over 30 epochs."""
    return nn.Sequential(
        *_conv_block(1, 32),  # 28 -> 14
        *_conv_block(32, 64),  # 14 -> 7
        *_conv_block(64, 128),  # 7 -> 3
        nn.Flatten(),
        nn.Dropout(0.25),
        nn.Linear(128 * 3 * 3, 10),
    )


def _conv_bn_relu(channels_in: int, channels_out: int) -> list[nn.Module]:
    return [nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False), nn.BatchNorm2d(channels_out),
            nn.ReLU(inplace=True)]


def deep_net() -> nn.Module:
    """The modern net with a second 3x3 convolution in its first two stages (VGG's pattern: two
    small convolutions see as far as one 5x5, with an extra ReLU between them); 99.7 % with the
    best preset. About three times the modern net's arithmetic."""
    return nn.Sequential(
        *_conv_bn_relu(1, 32), *_conv_bn_relu(32, 32), nn.MaxPool2d(2),  # 28 -> 14
        *_conv_bn_relu(32, 64), *_conv_bn_relu(64, 64), nn.MaxPool2d(2),  # 14 -> 7
        *_conv_bn_relu(64, 128), nn.MaxPool2d(2),  # 7 -> 3
        nn.Flatten(),
        nn.Dropout(0.25),
        nn.Linear(128 * 3 * 3, 10),
    )


PREPARE_IMAGES = 512  # 512 x 576 patches: a stable patch covariance in milliseconds


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    build: Callable[[], nn.Module]
    # channels_last speeds wide convolutions up to 1.7x (oneDNN, cuDNN) but slows the seed
    # model's 1-, 3- and 6-channel ones a little on the CPU.
    channels_last: bool = True
    # Called once before training with (model, the first PREPARE_IMAGES normalised training
    # images Nx1x28x28), for weights that come from the data rather than from gradients. A
    # checkpoint holds them.
    prepare: Callable[[nn.Module, torch.Tensor], None] | None = None

    @property
    def parameters(self) -> int:
        return count_parameters(self.build())


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("seed", "The case study's ConvNet: 2 tiny sigmoid convolutions + 1 linear layer", SeedConvNet,
                  channels_last=False),
        ModelSpec("fast", "LeNet-sized with a fixed whitening first layer: 99 % after one epoch of the fast preset",
                  fast_net, prepare=set_whitening_filters),
        ModelSpec("modern", "Batch-normalised 3-stage CNN: 99.6 % with augmentation and 30 epochs", modern_net),
        ModelSpec("deep", "The modern CNN with two convolutions in each of its first stages: 99.7 % with the best "
                  "preset", deep_net),
    )
}
if set(MODELS) != set(MODEL_NAMES):  # config.py names them without importing torch: the two must agree
    raise RuntimeError(f"mnist_core.config.MODEL_NAMES {MODEL_NAMES} must name the models of MODELS {tuple(MODELS)}")


def build_model(name: str) -> nn.Module:
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name].build()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
