"""A from-scratch backward pass for MLPs: no autograd, one short loop.

``MLP`` is ``gdlab.models.MLP`` that caches z[l] and a[l] in forward and has
``backward(y_true, y_pred, loss)``; ``ACTIVATIONS`` and ``LOSSES`` pair each
function with its derivative.
"""

from gdlab.backprop.activations import ACTIVATIONS, Activation
from gdlab.backprop.losses import LOSSES, Loss
from gdlab.backprop.mlp import MLP

__all__ = ["ACTIVATIONS", "LOSSES", "MLP", "Activation", "Loss"]
