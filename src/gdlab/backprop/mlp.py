"""An MLP whose backward pass is written out by hand, without autograd.

Layer l (1..L) computes z[l] = a[l-1] W[l]ᵀ + b[l] and a[l] = f(z[l]),
with a[0] = the flattened input and no activation on the last layer
(a[L] = z[L] = y_pred). Backward runs the chain rule from the loss down:

    δ[L]     = dL/dz[L] = dL/dy_pred                  (the loss gradient)
    dL/dW[l] = δ[l]ᵀ a[l-1]                           shape (out, in), like W[l]
    dL/db[l] = Σ_over_batch δ[l]
    δ[l-1]   = (δ[l] W[l]) ⊙ f'(z[l-1])

The loss gradient is the declared one (:mod:`gdlab.backprop.losses`); the chain
rule is :func:`gdlab.backprop.backward.mlp_backward`, the pass that trains K
stacked networks at once, run here for K = 1.
"""

import torch

from gdlab.backprop.backward import mlp_backward
from gdlab.backprop.losses import LOSSES, names_by_target, target_problem
from gdlab.errors import GdlabError
from gdlab.models import MLP as ModelMLP
from gdlab.models.activations import ACTIVATIONS


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
        """Gradients of the mean ``loss`` (a name of ``gdlab.backprop.LOSSES``: "mse",
        "cross_entropy", "nll") for the last forward.

        Returns ``[(dL_dW, dL_db), ...]``, one pair per layer in ``net.layers``
        order, each shaped like that layer's weight and bias.
        """
        self._check_backward_inputs(y_true, y_pred, loss)
        score_gradients = LOSSES[loss].gradient(y_pred, y_true)
        # One member: every tensor gets a leading member dimension of size 1 (views, no copies).
        gradients = mlp_backward(
            weights=[layer.weight.unsqueeze(0) for layer in self.layers],
            layer_inputs=[self.a[0]] + [a.unsqueeze(0) for a in self.a[1:-1]],
            pre_activations=[z.unsqueeze(0) for z in self.z[1:-1]],
            score_gradients=score_gradients.unsqueeze(0),
            derivative=self.activation_function.derivative,
        )
        return [(weight[0], bias[0]) for weight, bias in zip(gradients[0::2], gradients[1::2])]

    def _check_backward_inputs(self, y_true, y_pred, loss):
        if loss not in LOSSES:
            raise GdlabError(f"MLP.backward: unknown loss {loss!r}; use loss={names_by_target()}")
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
        problem = target_problem(LOSSES[loss], y_pred, y_true)
        if problem is not None:
            raise GdlabError(f"MLP.backward: {problem}")
