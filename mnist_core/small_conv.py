"""A Conv2d whose input gradient is computed as a forward convolution, for few channels on the CPU.

The seed model's second convolution (3 -> 6 channels, 3x3, batch 64 of 26x26) spends most of
its backward pass in oneDNN's backward-data kernel: about 0.9 ms on a 2-core CPU. The same
gradient is a forward convolution of the output gradient, padded by k - 1 - padding, with the
filters flipped and their in/out channels swapped; oneDNN's forward kernel does that in about
0.4 ms. Weight and bias gradients still come from PyTorch's own convolution_backward.

`SmallConv2d` is an `nn.Conv2d` (same parameters, same state_dict, same forward output and
forward hooks); only its backward differs, and only where this route applies: in training mode
on the CPU without autocast, for an input that needs a gradient, with stride 1, dilation 1, one
group and zero padding. (In eval mode, e.g. saliency, the plain route computes only the
gradients asked for.) The gradients equal the plain module's up to float rounding
(tests/test_small_conv.py); `bench/throughput.py --compare-plain-conv` measures what it saves.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ENABLED = True  # bench/throughput.py --compare-plain-conv turns the route off for its A/B rounds


class _InputGradAsConvolution(torch.autograd.Function):
    """conv2d(x, weight, bias, padding) with dx = conv2d(dy, flipped weight, padding = k - 1 - padding)."""

    @staticmethod
    def forward(ctx, x, weight, bias, padding):
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        ctx.has_bias = bias is not None
        return F.conv2d(x, weight, bias, padding=padding)

    @staticmethod
    def backward(ctx, grad_output):
        x, weight = ctx.saved_tensors
        need_x, need_weight, need_bias, _ = ctx.needs_input_grad
        grad_x = grad_weight = grad_bias = None
        if need_x:
            full = tuple(k - 1 - p for k, p in zip(weight.shape[2:], ctx.padding))
            grad_x = F.conv2d(grad_output, weight.flip(2, 3).transpose(0, 1), padding=full)
        if need_weight or need_bias:
            _, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
                grad_output, x, weight, [weight.shape[0]] if ctx.has_bias else None,
                [1, 1], list(ctx.padding), [1, 1], False, [0, 0], 1, [False, need_weight, need_bias],
            )
        return grad_x, grad_weight, grad_bias, None


class SmallConv2d(nn.Conv2d):
    """nn.Conv2d with a faster input gradient on the CPU (see the module's docstring)."""

    def _conv_forward(self, input, weight, bias):
        if (
            ENABLED
            and self.training
            and input.requires_grad
            and torch.is_grad_enabled()
            and input.device.type == "cpu"
            and not torch.is_autocast_enabled("cpu")  # the backward's own conv2d would mix dtypes
            and self.stride == (1, 1)
            and self.dilation == (1, 1)
            and self.groups == 1
            and self.padding_mode == "zeros"
            and isinstance(self.padding, tuple)  # not "same" / "valid"
            and all(p < k for p, k in zip(self.padding, self.kernel_size))
        ):
            return _InputGradAsConvolution.apply(input, weight, bias, self.padding)
        return super()._conv_forward(input, weight, bias)
