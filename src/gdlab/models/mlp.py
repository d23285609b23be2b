"""Multilayer perceptrons of any depth.

``MLP([784, 100, 100, 10])`` is the network of the MNIST course notebook,
``MLP([3072, 512, 128, 32, 2])`` the CIFAR-10 airplane-vs-bird one, and
``MLP([784, 10])`` (no hidden layer) a linear model. The output layer has no
activation: losses take raw scores (logits).
"""

import torch
from torch import nn

from gdlab.errors import GdlabError
from gdlab.models.activations import ACTIVATIONS
from gdlab.models.init import init_parameters

PRESETS = {
    "mnist": [784, 100, 100, 10],
    "cifar2": [3072, 512, 128, 32, 2],
}


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise GdlabError(
            f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}"
        )
    return ACTIVATIONS[name].module()


class MLP(nn.Module):
    """Fully connected layers ``sizes[0] -> ... -> sizes[-1]`` with one activation between them.

    Inputs of any shape ``(N, ...)`` are flattened to ``(N, sizes[0])``.
    ``layers`` is the list of ``nn.Linear`` in order; ``init`` is ``"torch"``
    (PyTorch's default) or ``"normal_fan_in"`` (w ~ N(0, 1/sqrt(fan_in)), b = 0).
    """

    def __init__(self, sizes, activation: str = "relu", init: str = "torch"):
        super().__init__()
        sizes = [int(size) for size in sizes]
        if len(sizes) < 2 or any(size < 1 for size in sizes):
            raise GdlabError(
                f"MLP sizes {sizes} must list at least an input and an output size, all >= 1"
            )
        self.sizes = sizes
        self.activation_name = activation
        self.layers = nn.ModuleList(
            nn.Linear(fan_in, fan_out) for fan_in, fan_out in zip(sizes[:-1], sizes[1:])
        )
        self.activation = make_activation(activation)
        init_parameters(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        return self.layers[-1](x)

    def extra_repr(self) -> str:
        return f"sizes={self.sizes}, activation={self.activation_name!r}"


def mlp_preset(name: str, activation: str = "relu", init: str = "torch") -> MLP:
    """The course networks by name: ``"mnist"`` (784-100-100-10) or ``"cifar2"`` (3072-512-128-32-2)."""
    if name not in PRESETS:
        raise GdlabError(f"unknown MLP preset {name!r}; choose one of {', '.join(PRESETS)}")
    return MLP(PRESETS[name], activation=activation, init=init)
