"""SmallConv2d against nn.Conv2d: same outputs, gradients equal within float tolerance, and the
seed model trained with it follows the plain model step for step (issue 17's equivalence)."""

import copy

import pytest
import torch
from torch import nn

from mnist_core.models import SeedConvNet
from mnist_core.small_conv import SmallConv2d


def twins(**shape):
    torch.manual_seed(0)
    plain = nn.Conv2d(**shape)
    small = SmallConv2d(**shape)
    small.load_state_dict(plain.state_dict())
    return plain, small


def gradients(conv, images, upstream):
    images = images.clone().requires_grad_(True)
    output = conv(images)
    output.backward(upstream)
    return output, images.grad, conv.weight.grad, None if conv.bias is None else conv.bias.grad


@pytest.mark.parametrize(
    "shape",
    [
        dict(in_channels=3, out_channels=6, kernel_size=3),  # the seed model's conv2
        dict(in_channels=1, out_channels=3, kernel_size=3),  # its conv1
        dict(in_channels=4, out_channels=5, kernel_size=(3, 5), padding=(1, 2)),
        dict(in_channels=2, out_channels=3, kernel_size=5, padding=1, bias=False),
    ],
)
def test_gradients_equal_plain_convolution(shape):
    plain, small = twins(**shape)
    images = torch.randn(16, shape["in_channels"], 26, 26)
    output = plain(images)
    upstream = torch.randn_like(output)
    expected = gradients(plain, images, upstream)
    got = gradients(small, images, upstream)
    assert got[0].grad_fn.name() == "_InputGradAsConvolutionBackward"  # the fast route was taken
    for want, have in zip(expected, got):
        if want is None:
            assert have is None
        else:
            torch.testing.assert_close(have, want, rtol=1e-4, atol=1e-5)


def test_plain_route_where_the_fast_one_does_not_apply():
    _, small = twins(in_channels=3, out_channels=6, kernel_size=3)
    images = torch.randn(2, 3, 26, 26)
    assert small(images).grad_fn.name() == "ConvolutionBackward0"  # input needs no gradient
    with torch.no_grad():
        assert small(images.requires_grad_()).grad_fn is None
    # eval mode (saliency): the plain backward computes only the gradients asked for
    assert small.eval()(images).grad_fn.name() == "ConvolutionBackward0"
    small.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert small(images).grad_fn.name() != "_InputGradAsConvolutionBackward"
    _, strided = twins(in_channels=3, out_channels=6, kernel_size=3, stride=2)
    assert strided(torch.randn(2, 3, 26, 26, requires_grad=True)).grad_fn.name() == "ConvolutionBackward0"


def plain_seed(model: SeedConvNet) -> SeedConvNet:
    """The same network with plain nn.Conv2d layers, as the case study writes it."""
    twin = copy.deepcopy(model)
    conv = model.conv2
    twin.conv2 = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size)
    twin.conv2.load_state_dict(conv.state_dict())
    return twin


def test_seed_model_trains_like_the_plain_model():
    torch.manual_seed(1)
    model = SeedConvNet()
    plain = plain_seed(model)
    assert isinstance(model.conv2, SmallConv2d) and type(plain.conv2) is nn.Conv2d
    optimizers = [torch.optim.Adam(m.parameters(), lr=0.01) for m in (model, plain)]
    loss = nn.CrossEntropyLoss()
    for step in range(5):  # the case study's loop: zero_grad, forward, loss, backward, Adam step
        images, labels = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
        for network, optimizer in zip((model, plain), optimizers):
            optimizer.zero_grad()
            loss(network(images), labels).backward()
        for (name, mine), theirs in zip(model.named_parameters(), plain.parameters()):
            torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-4, atol=1e-6, msg=f"step {step} {name}")
        for optimizer in optimizers:
            optimizer.step()
    for mine, theirs in zip(model.parameters(), plain.parameters()):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5)


def test_forward_hooks_still_see_the_convolution():
    model = SeedConvNet()
    seen = []
    model.conv2.register_forward_hook(lambda module, inputs, output: seen.append(output.shape))
    model(torch.randn(2, 1, 28, 28)).sum().backward()
    assert seen == [torch.Size([2, 6, 24, 24])]
