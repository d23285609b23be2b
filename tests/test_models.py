"""Models: the course networks' shapes and sizes, init schemes, clear errors."""

import math

import pytest
import torch
from torch import nn

from gdlab.errors import GdlabError
from gdlab.models import MLP, ConvNet, init_parameters, mlp_preset


def parameter_count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def test_presets_are_the_course_networks():
    cifar2 = mlp_preset("cifar2")
    # Reference notebook 000 prints "Total number of parameters: 1643234".
    assert parameter_count(cifar2) == 1_643_234
    assert [p.numel() for p in cifar2.parameters()] == [1572864, 512, 65536, 128, 4096, 32, 64, 2]
    mnist = mlp_preset("mnist")
    assert mnist.sizes == [784, 100, 100, 10] and len(mnist.layers) == 3


def test_mlp_flattens_images_and_ends_without_activation():
    torch.manual_seed(0)
    net = MLP([12, 5, 3], activation="tanh")
    x = torch.randn(4, 3, 2, 2)
    hidden = torch.tanh(net.layers[0](x.flatten(1)))
    assert torch.equal(net(x), net.layers[1](hidden))


def test_empty_hidden_list_is_a_linear_model():
    net = MLP([784, 10])
    assert len(net.layers) == 1 and parameter_count(net) == 7850


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "leaky_relu", "identity"])
def test_every_activation_builds(activation):
    assert MLP([4, 3, 2], activation=activation)(torch.randn(5, 4)).shape == (5, 2)


def test_normal_fan_in_init_has_the_notebook_statistics():
    torch.manual_seed(0)
    net = MLP([784, 400, 300], init="normal_fan_in")
    for layer in net.layers:
        fan_in = layer.weight.shape[1]
        std = 1 / math.sqrt(fan_in)
        assert layer.weight.std().item() == pytest.approx(std, rel=0.02)
        # Centred: the mean of n draws lies within 5 standard errors of 0.
        assert abs(layer.weight.mean().item()) < 5 * std / math.sqrt(layer.weight.numel())
        assert torch.count_nonzero(layer.bias) == 0


def test_torch_init_is_pytorchs_default():
    torch.manual_seed(3)
    net = MLP([20, 7, 2])
    torch.manual_seed(3)
    first, second = nn.Linear(20, 7), nn.Linear(7, 2)
    assert torch.equal(net.layers[0].weight, first.weight) and torch.equal(net.layers[1].bias, second.bias)


def test_normal_fan_in_on_a_convolution_counts_channels_and_kernel():
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 64, 5)
    init_parameters(conv, "normal_fan_in")
    assert conv.weight.std().item() == pytest.approx(1 / math.sqrt(16 * 25), rel=0.03)


def test_convnet_is_the_notebook_network():
    net = ConvNet()
    convolutions = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0]) for c in convolutions] == (
        [(3, 100, 3)] + [(100, 100, 5)] * 5 + [(100, 10, 5)]
    )
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 6
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(360, 128), (128, 64), (64, 10)]
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_convnet_without_batchnorm_and_on_small_gray_images():
    net = ConvNet(batchnorm=False, in_channels=1, image_size=28, width=8, num_classes=2)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert net(torch.zeros(3, 1, 28, 28)).shape == (3, 2)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: MLP([784]), "at least an input and an output"),
        (lambda: MLP([784, 0, 10]), ">= 1"),
        (lambda: MLP([4, 2], activation="swish"), "unknown activation 'swish'"),
        (lambda: MLP([4, 2], init="xavier"), "unknown init scheme 'xavier'"),
        (lambda: mlp_preset("imagenet"), "unknown MLP preset 'imagenet'"),
        (lambda: ConvNet(image_size=20), "at least 27 pixels"),
    ],
)
def test_bad_arguments_say_what_and_how(build, message):
    with pytest.raises(GdlabError, match=message):
        build()
