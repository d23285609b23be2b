"""Initialization schemes, applied in place to a model's layers.

``torch``: leave PyTorch's default (Kaiming-uniform weights, uniform biases).
``normal_fan_in``: the MNIST course notebook's scheme, w ~ N(0, std = 1/sqrt(fan_in))
and b = 0, where fan_in counts the inputs of one output unit (in_features for a
linear layer, in_channels * kernel area for a convolution).
"""

import math

import torch
from torch import nn

from gdlab.errors import GdlabError

INIT_SCHEMES = ("torch", "normal_fan_in")


@torch.no_grad()
def init_parameters(model: nn.Module, scheme: str) -> nn.Module:
    if scheme not in INIT_SCHEMES:
        raise GdlabError(f"unknown init scheme {scheme!r}; choose one of {', '.join(INIT_SCHEMES)}")
    if scheme == "torch":
        return model
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            fan_in = module.weight[0].numel()
            module.weight.normal_(0.0, 1.0 / math.sqrt(fan_in))
            if module.bias is not None:
                module.bias.zero_()
    return model
