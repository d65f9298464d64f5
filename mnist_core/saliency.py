"""Which pixels drove a prediction: integrated gradients from a blank image to the digit.

Integrated gradients average the gradient of the class score along the straight path from a
blank (all-background) image to the real one and multiply by the pixel change. Unlike a raw
gradient, the attributions add up to the score difference, are not noisy on ReLU networks,
and can be negative: positive pixels pushed toward the class, negative ones away from it.
All the path's images go through the model as one batch, so it costs one forward and one
backward pass.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mnist_core.data import normalize


def integrated_gradients(
    model: nn.Module,
    image: np.ndarray | torch.Tensor,
    target: int | None = None,
    dataset: str = "mnist",
    steps: int = 24,
) -> np.ndarray:
    """Attribution [28, 28] (signed, scaled so the largest magnitude is 1) for a 28x28 image.

    `image` is uint8 (0..255) or float (0..1); `target` defaults to the predicted class.
    """
    pixels = torch.as_tensor(np.asarray(image))
    pixels = pixels.float() / 255 if pixels.dtype == torch.uint8 else pixels.float()
    device = next(model.parameters()).device
    pixels = pixels.to(device)
    was_training = model.training
    model.eval()
    fractions = torch.linspace(1 / steps, 1, steps, device=device).view(-1, 1, 1)
    path = (fractions * pixels).requires_grad_(True)  # [steps, 28, 28], from near-blank to the image
    logits = model(normalize(path, dataset))
    if target is None:
        target = int(logits[-1].argmax())
    (gradients,) = torch.autograd.grad(logits[:, target].sum(), path)
    model.train(was_training)
    attribution = (pixels * gradients.mean(0)).detach().cpu().numpy()
    scale = np.abs(attribution).max()
    return attribution / scale if scale > 0 else attribution
