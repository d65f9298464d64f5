"""Saliency: integrated gradients point at the pixels the model actually uses."""

import numpy as np
import torch
from torch import nn

from mnist_core.saliency import integrated_gradients


class LooksAtOnePixel(nn.Module):
    """Class 3's score is the (normalised) value of pixel (5, 7); every other class scores 0."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))

    def forward(self, images):
        scores = torch.zeros(len(images), 10)
        scores[:, 3] = images[:, 0, 5, 7] * self.weight
        return scores


def test_attribution_lands_on_the_pixel_the_model_uses():
    image = np.full((28, 28), 200, dtype=np.uint8)
    attribution = integrated_gradients(LooksAtOnePixel(), image, target=3)
    assert attribution.shape == (28, 28)
    assert np.unravel_index(np.abs(attribution).argmax(), attribution.shape) == (5, 7)
    assert attribution[5, 7] == 1.0 and np.count_nonzero(attribution) == 1


def test_blank_pixels_get_no_attribution_on_a_real_model():
    from mnist_core.models import build_model

    image = np.zeros((28, 28), dtype=np.float32)
    image[8:20, 12:16] = 1.0
    attribution = integrated_gradients(build_model("fast"), image)
    assert np.abs(attribution).max() == 1.0
    assert np.all(attribution[image == 0] == 0)  # zero change from the blank baseline, zero credit
