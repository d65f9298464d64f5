"""The model registry, and the seed model against the case study's layer shapes."""

import torch
from torch import nn

from mnist_core.models import MODELS, SeedConvNet, build_model, count_parameters
from mnist_core.small_conv import SmallConv2d


def test_seed_has_exactly_the_case_study_layers():
    model = SeedConvNet()
    layers = [(name, type(module)) for name, module in model.named_children()]
    # SmallConv2d is an nn.Conv2d with a faster backward on the CPU (tests/test_small_conv.py)
    assert layers == [("conv1", nn.Conv2d), ("conv2", SmallConv2d), ("sigmoid", nn.Sigmoid), ("linear1", nn.Linear)]
    assert issubclass(SmallConv2d, nn.Conv2d)
    assert (model.conv1.in_channels, model.conv1.out_channels, model.conv1.kernel_size) == (1, 3, (3, 3))
    assert (model.conv2.in_channels, model.conv2.out_channels, model.conv2.kernel_size) == (3, 6, (3, 3))
    assert (model.linear1.in_features, model.linear1.out_features) == (3456, 10)
    # conv1: 3*1*9+3, conv2: 6*3*9+6, linear: 3456*10+10
    assert count_parameters(model) == 30 + 168 + 34570


def test_seed_computes_what_the_case_study_forward_computes():
    model = SeedConvNet()
    images = torch.rand(4, 1, 28, 28)
    hidden = torch.sigmoid(model.conv2(torch.sigmoid(model.conv1(images))))
    expected = model.linear1(hidden.view(hidden.shape[0], -1))
    assert torch.equal(model(images), expected)


def test_every_registered_model_maps_images_to_ten_logits():
    for name, spec in MODELS.items():
        model = build_model(name).eval()
        assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10), name
        assert spec.parameters == count_parameters(model) > 0
        assert spec.description


def test_unknown_model_is_a_clear_error():
    try:
        build_model("nope")
    except KeyError as error:
        assert "seed" in str(error)
    else:
        raise AssertionError("expected KeyError")


def test_whitening_filters_decorrelate_the_patches_of_the_images_they_come_from(tiny_data_dir):
    from mnist_core.data import load_split, normalize
    from mnist_core.models import set_whitening_filters

    images = normalize(load_split("mnist", True, tiny_data_dir)[0])
    model = build_model("fast")
    set_whitening_filters(model, images)
    first = model[0]
    responses = first(images).transpose(0, 1).reshape(8, -1)  # 8 directions
    covariance = responses @ responses.T / responses.shape[1]
    off_diagonal = covariance - torch.diag(torch.diag(covariance))
    assert off_diagonal.abs().max() < 0.05 * torch.diag(covariance).min()  # decorrelated
    assert (torch.diag(covariance) > 0.5).all() and (torch.diag(covariance) <= 1.0).all()  # about unit variance
    assert not any(parameter.requires_grad for parameter in first.parameters())
