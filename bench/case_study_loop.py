"""The case study's own training loop, reproduced as the baseline the benchmarks compare against.

torchvision DataLoader over MNIST with a per-sample ToTensor transform, batch 64, no shuffling,
the case study's ConvNet with plain nn.Conv2d layers (mnist_core.models.SeedConvNet has the same
layers and parameters, with a faster backward), Adam lr 0.01.
Used by bench/throughput.py; also runnable alone: `python bench/case_study_loop.py [epochs]`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torchvision
from torch import nn, optim

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mnist_core.data import default_data_dir  # noqa: E402


class CaseStudyConvNet(nn.Module):
    """The case study's ConvNet as it is written: plain PyTorch layers, nothing of mnist_core's."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, kernel_size=3)
        self.conv2 = nn.Conv2d(3, 6, kernel_size=3)
        self.sigmoid = nn.Sigmoid()
        self.linear1 = nn.Linear(3456, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.sigmoid(self.conv1(x))
        x = self.sigmoid(self.conv2(x))
        return self.linear1(x.view(x.shape[0], -1))


def run_case_study(epochs: int = 1, data_dir: str | None = None, device: str = "cpu", max_steps: int = 0) -> dict:
    """Train like the case study; returns images/s over the training steps and final accuracy."""
    root = str(data_dir or default_data_dir())
    to_tensor = torchvision.transforms.ToTensor()
    train_data = torch.utils.data.DataLoader(
        torchvision.datasets.MNIST(root, train=True, download=False, transform=to_tensor), batch_size=64
    )
    val_data = torch.utils.data.DataLoader(
        torchvision.datasets.MNIST(root, train=False, download=False, transform=to_tensor), batch_size=64
    )
    torch.manual_seed(0)
    convnet = CaseStudyConvNet().to(device)
    optimizer = optim.Adam(convnet.parameters(), lr=0.01)
    cross_entropy = nn.CrossEntropyLoss()
    images_seen, seconds = 0, 0.0
    for _ in range(epochs):
        start = time.perf_counter()
        for step, (images, labels) in enumerate(train_data, start=1):
            images, labels = images.to(device), labels.to(device)
            optimizer.zero_grad()
            loss = cross_entropy(convnet(images), labels)
            loss.backward()
            optimizer.step()
            images_seen += len(labels)
            if max_steps and step >= max_steps:
                break
        if device == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - start
    correct = total = 0
    with torch.no_grad():
        for images, labels in val_data:
            predictions = convnet(images.to(device)).argmax(1)
            correct += int((predictions == labels.to(device)).sum())
            total += len(labels)
    return {"images_per_second": images_seen / seconds, "seconds": seconds, "accuracy": 100 * correct / total}


if __name__ == "__main__":
    print(run_case_study(int(sys.argv[1]) if len(sys.argv) > 1 else 1))
