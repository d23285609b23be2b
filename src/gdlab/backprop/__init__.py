"""A from-scratch backward pass for MLPs: no autograd, one short loop.

``MLP`` is ``gdlab.models.MLP`` that caches z[l] and a[l] in forward and has
``backward(y_true, y_pred, loss)``. ``mlp_backward`` is the chain rule itself,
written once for K stacked networks (``MLP.backward`` runs it for K = 1, the
stacked trainer for K configurations). ``LOSSES`` declares each loss once
(target, reduction, value, gradient); ``ACTIVATIONS`` (declared in
``gdlab.models.activations``) pairs each activation with its derivative.
"""

from gdlab.backprop.backward import mlp_backward
from gdlab.backprop.losses import LOSSES, Loss, cross_entropy_and_gradient
from gdlab.backprop.mlp import MLP
from gdlab.models.activations import ACTIVATIONS, Activation

__all__ = ["ACTIVATIONS", "LOSSES", "MLP", "Activation", "Loss", "cross_entropy_and_gradient", "mlp_backward"]
