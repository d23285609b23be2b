"""Models: MLPs of any depth (linear model included) and the course ConvNet."""

from gdlab.models.convnet import ConvNet
from gdlab.models.init import INIT_SCHEMES, init_parameters
from gdlab.models.mlp import ACTIVATIONS, MLP, PRESETS, make_activation, mlp_preset

__all__ = [
    "ACTIVATIONS",
    "INIT_SCHEMES",
    "MLP",
    "PRESETS",
    "ConvNet",
    "init_parameters",
    "make_activation",
    "mlp_preset",
]
