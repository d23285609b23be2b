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

which runs far closer to a CPU's peak than K small ones. Members that train
on different batches (runs of different seeds) come as :class:`Lanes`: each
lane's input feeds a run of consecutive members, and the first layer is one
wide GEMM per lane. The batch mean lives only in dL/dscores (the loss gradient
divides by N or N·C); every later step sums over the batch through the matrix
products.
"""

import itertools
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

Derivative = Callable[[Tensor, Tensor], Tensor]  # (z, a) -> da/dz


class Lanes(NamedTuple):
    """Inputs of stacked members that do not all see the same batch.

    Lane i's batch ``inputs[i]`` (N, ...) feeds the next ``sizes[i]`` members in
    stacked order (lanes are runs of consecutive members); every lane's batch
    has the same N, so that the later layers stay batched over all members.
    """

    inputs: list[Tensor]
    sizes: list[int]

    def bounds(self) -> list[tuple[int, int]]:
        """Each lane's members as (first, end) in stacked order."""
        ends = list(itertools.accumulate(self.sizes))
        return [(end - size, end) for size, end in zip(self.sizes, ends)]

    def per_member(self) -> Tensor:
        """Every member's input, (K, N, ...): lane i's batch repeated for its members."""
        return torch.cat([batch.expand(size, *batch.shape) for batch, size in zip(self.inputs, self.sizes)])


def mlp_backward(
    weights: list[Tensor],
    layer_inputs: list[Tensor],
    pre_activations: list[Tensor],
    score_gradients: Tensor,
    derivative: Derivative,
    out: list[Tensor] | None = None,
) -> list[Tensor]:
    """dL/dparams of K stacked MLPs, ordered [dW[0], db[0], dW[1], db[1], ...] and shaped like the stacked parameters.

    ``weights[l]``: (K, out, in). ``layer_inputs``: [x (N, in) or :class:`Lanes`
    of such, A[0], ..., A[L-2]], every A (K, N, width); ``pre_activations``: [Z[0], ..., Z[L-2]], what the
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
    lanes = x if isinstance(x, Lanes) else Lanes([x], [len(dz)])
    for batch, (first, end) in zip(lanes.inputs, lanes.bounds()):
        members, samples, width = dz[first:end].shape
        lane_dz = dz[first:end].transpose(0, 1).reshape(samples, members * width)
        torch.mm(lane_dz.t(), batch, out=out[0][first:end].view(members * width, -1))
        torch.sum(lane_dz, dim=0, out=out[1][first:end].view(-1))
    return out
