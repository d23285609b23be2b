"""An MLP whose backward pass is written out by hand, without autograd.

Layer l (1..L) computes z[l] = a[l-1] W[l]ᵀ + b[l] and a[l] = f(z[l]),
with a[0] = the flattened input and no activation on the last layer
(a[L] = z[L] = y_pred). Backward runs the chain rule from the loss down:

    δ[L]     = dL/dz[L] = dL/dy_pred                  (the loss gradient)
    dL/dW[l] = δ[l]ᵀ a[l-1]                           shape (out, in), like W[l]
    dL/db[l] = Σ_over_batch δ[l]
    δ[l-1]   = (δ[l] W[l]) ⊙ f'(z[l-1])

The batch mean lives only in δ[L] (the loss gradient divides by N or N·C);
every later step sums over the batch through the matrix products.
"""

import torch

from gdlab.backprop.activations import ACTIVATIONS
from gdlab.backprop.losses import LOSSES
from gdlab.errors import GdlabError
from gdlab.models import MLP as ModelMLP


class MLP(ModelMLP):
    """``gdlab.models.MLP`` plus a cache of z[l] and a[l] and a hand-written ``backward``.

    Parameters, ``state_dict`` and outputs are those of ``gdlab.models.MLP``.
    After ``y_pred = net(x)``: ``net.a[0]`` is the flattened input,
    ``net.z[l]`` and ``net.a[l]`` (l = 1..L) belong to ``net.layers[l - 1]``;
    ``net.z[0]`` is the input too, so both lists are indexed by layer.
    """

    def __init__(self, sizes, activation: str = "relu", init: str = "torch"):
        super().__init__(sizes, activation=activation, init=init)
        self.activation_function = ACTIVATIONS[activation]
        self.z: list[torch.Tensor] = []
        self.a: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = x.flatten(1)
        self.z, self.a = [a], [a]
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            z = layer(a)
            a = z if index == last else self.activation_function.forward(z)
            self.z.append(z)
            self.a.append(a)
        return a

    @torch.no_grad()
    def backward(self, y_true: torch.Tensor, y_pred: torch.Tensor, loss: str = "mse"):
        """Gradients of the mean ``loss`` ("mse" or "cross_entropy") for the last forward.

        Returns ``[(dL_dW, dL_db), ...]``, one pair per layer in ``net.layers``
        order, each shaped like that layer's weight and bias.
        """
        self._check_backward_inputs(y_true, y_pred, loss)
        delta = LOSSES[loss].gradient(y_pred, y_true)
        gradients = []
        for l in range(len(self.layers), 0, -1):
            weight = self.layers[l - 1].weight
            gradients.append((delta.T @ self.a[l - 1], delta.sum(dim=0)))
            if l > 1:
                delta = (delta @ weight) * self.activation_function.derivative(self.z[l - 1], self.a[l - 1])
        return gradients[::-1]

    def _check_backward_inputs(self, y_true, y_pred, loss):
        if loss not in LOSSES:
            raise GdlabError(
                f"MLP.backward: unknown loss {loss!r}; use loss='mse' or loss='cross_entropy'"
            )
        if not self.a:
            raise GdlabError(
                "MLP.backward was called before forward: run y_pred = net(x) first, "
                "then net.backward(y_true, y_pred)"
            )
        output = self.a[-1]
        if y_pred.shape != output.shape or not torch.equal(y_pred, output):
            raise GdlabError(
                f"MLP.backward: y_pred (shape {tuple(y_pred.shape)}) is not the output of the last "
                f"forward (shape {tuple(output.shape)}); pass the tensor that y_pred = net(x) returned "
                "and call backward right after that forward"
            )
        if loss == "mse" and y_true.shape != y_pred.shape:
            raise GdlabError(
                f"MLP.backward: loss='mse' needs y_true shaped like y_pred {tuple(y_pred.shape)}, "
                f"got {tuple(y_true.shape)}; for class labels use "
                "F.one_hot(labels, num_classes).to(y_pred.dtype), or loss='cross_entropy'"
            )
        if loss == "mse" and not y_true.is_floating_point():
            raise GdlabError(
                f"MLP.backward: loss='mse' needs floating-point y_true, got {y_true.dtype}; "
                "convert it with y_true.to(y_pred.dtype)"
            )
        if loss == "cross_entropy":
            if y_true.shape != y_pred.shape[:1] or y_true.is_floating_point() or y_true.dtype == torch.bool:
                raise GdlabError(
                    f"MLP.backward: loss='cross_entropy' needs integer class labels of shape "
                    f"({y_pred.shape[0]},), got dtype {y_true.dtype} shape {tuple(y_true.shape)}; "
                    "pass labels such as y.argmax(dim=1) for one-hot targets"
                )
            classes = y_pred.shape[1]
            if len(y_true) and (y_true.min() < 0 or y_true.max() >= classes):
                raise GdlabError(
                    f"MLP.backward: labels must lie in 0..{classes - 1} for {classes} outputs, "
                    f"got values from {int(y_true.min())} to {int(y_true.max())}"
                )
