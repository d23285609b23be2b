r"""The MLP backward pass, written once, for K stacked members; K = 1 is one network.

Member k has weights W[l] (out, in) and biases b[l] (out) stacked as (K, out, in)
and (K, out); all members see the same input batch x (N, in). Layer l computes
Z[l] = A[l-1] W[l]ᵀ + b[l] with A[-1] = x and A[l] = f(Z[l]), no activation
after the last layer (its Z is the scores). From dL/dscores (K, N, C) the chain
rule runs down, every member at once::

    dW[l]   = dZ[l]ᵀ A[l-1]                   shape (out, in), like W[l]
    db[l]   = Σ_over_samples dZ[l]
    dZ[l-1] = (dZ[l] W[l]) ⊙ f'(Z[l-1])

Later layers are batched matmuls over the K members. The first layer's input x
is shared, so its gradient is one wide GEMM for all members::

    [dW_1; ...; dW_K] = [dZ_1 | ... | dZ_K]ᵀ x                            (K*out, in)

which runs far closer to a CPU's peak than K small ones. The batch mean lives
only in dL/dscores (the loss gradient divides by N or N·C); every later step
sums over the batch through the matrix products.
"""

from collections.abc import Callable

import torch
from torch import Tensor

Derivative = Callable[[Tensor, Tensor], Tensor]  # (z, a) -> da/dz


def mlp_backward(
    weights: list[Tensor],
    layer_inputs: list[Tensor],
    pre_activations: list[Tensor],
    score_gradients: Tensor,
    derivative: Derivative,
    out: list[Tensor] | None = None,
) -> list[Tensor]:
    """dL/dparams of K stacked MLPs, ordered [dW[0], db[0], dW[1], db[1], ...] and shaped like the stacked parameters.

    ``weights[l]``: (K, out, in). ``layer_inputs``: [x (N, in), A[0], ..., A[L-2]],
    every A (K, N, width); ``pre_activations``: [Z[0], ..., Z[L-2]], what the
    forward pass saved. ``score_gradients``: dL/dscores, (K, N, C). ``out``:
    tensors the gradients are written into (a trainer keeps them from step to
    step, so a step allocates no parameter-sized tensor here); new ones when None.
    """
    if out is None:
        out = [
            torch.empty(shape, dtype=score_gradients.dtype, device=score_gradients.device)
            for weight in weights
            for shape in (weight.shape, weight.shape[:2])
        ]
    dz = score_gradients
    for layer in range(len(weights) - 1, 0, -1):
        torch.bmm(dz.transpose(1, 2), layer_inputs[layer], out=out[2 * layer])
        torch.sum(dz, dim=1, out=out[2 * layer + 1])
        activation_derivative = derivative(pre_activations[layer - 1], layer_inputs[layer])
        dz = torch.bmm(dz, weights[layer]).mul_(activation_derivative)
    x = layer_inputs[0]
    members, samples, width = dz.shape
    dz = dz.transpose(0, 1).reshape(samples, members * width)
    torch.mm(dz.t(), x, out=out[0].view(members * width, -1))
    torch.sum(dz, dim=0, out=out[1].view(-1))
    return out
