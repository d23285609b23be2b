"""The activations an MLP can use, each declared once: its module, its function, its derivative.

``module`` builds the ``nn`` module ``gdlab.models.MLP`` holds (so the model
prints as torch users expect); ``forward`` is the very kernel that module runs,
called directly by the hand-written and the stacked passes; ``derivative`` sits
right beside it, as in micrograd.

Every derivative takes both the pre-activation ``z`` and the activation
``a = f(z)`` so that it can use whichever is cheaper and matches what autograd
computes: sigmoid' = a(1 - a) and tanh' = 1 - a² reuse the output, relu' and
leaky_relu' look at the sign of ``z``. At the kink z = 0 they take torch's
convention: relu'(0) = 0 and leaky_relu'(0) = slope.
"""

import functools
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

# torch.nn.LeakyReLU's default: the module and the function below both use it.
LEAKY_RELU_SLOPE = 0.01


class Activation(NamedTuple):
    module: Callable[[], nn.Module]
    forward: Callable[[torch.Tensor], torch.Tensor]
    derivative: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (z, a) -> da/dz


def relu(z):
    return torch.relu(z)


def relu_derivative(z, a):
    return (z > 0).to(z.dtype)


def sigmoid(z):
    return torch.sigmoid(z)


def sigmoid_derivative(z, a):
    return a * (1 - a)


def tanh(z):
    return torch.tanh(z)


def tanh_derivative(z, a):
    return 1 - a * a


def leaky_relu(z):
    return F.leaky_relu(z, LEAKY_RELU_SLOPE)


def leaky_relu_derivative(z, a):
    # full_like keeps z's dtype: a Python-float where() would round the slope to float32.
    return torch.full_like(z, LEAKY_RELU_SLOPE).masked_fill(z > 0, 1.0)


def identity(z):
    return z


def identity_derivative(z, a):
    return torch.ones_like(z)


ACTIVATIONS = {
    "relu": Activation(nn.ReLU, relu, relu_derivative),
    "sigmoid": Activation(nn.Sigmoid, sigmoid, sigmoid_derivative),
    "tanh": Activation(nn.Tanh, tanh, tanh_derivative),
    "leaky_relu": Activation(functools.partial(nn.LeakyReLU, LEAKY_RELU_SLOPE), leaky_relu, leaky_relu_derivative),
    "identity": Activation(nn.Identity, identity, identity_derivative),
}
