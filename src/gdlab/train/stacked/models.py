r"""K models of one architecture as one stacked model: parameters of shape (K, ...).

Member k's parameters are slice k of each stacked tensor, in the order of
``model.parameters()``. Every member sees the same input batch ``x`` of N
samples, or members train on different batches of N samples each, given as
:class:`gdlab.backprop.backward.Lanes` (runs of different seeds); the stacked
model maps its input to scores of shape (K, N, C), where ``scores[k]`` is what
member k alone gives for its batch, and maps the gradient of the loss with
respect to those scores to every member's parameter gradients.

MLPs (:class:`gdlab.models.MLP`) run on batched matmuls (:class:`StackedMLP`):
the forward pass is written out here, the backward pass is gdlab's one MLP
backward pass, :func:`gdlab.backprop.mlp_backward`. Because every member sees
the same ``x``, the first layer, by far the largest of an image MLP, is one
wide GEMM each way::

    [Z_1 | ... | Z_K] = x @ [W_1 | ... | W_K]^T + [b_1 | ... | b_K]       (N, K*out)
    [dW_1; ...; dW_K] = [dZ_1 | ... | dZ_K]^T @ x                         (K*out, in)

and large GEMMs run far closer to a CPU's peak than K small ones. The later
layers, whose inputs differ per member, are batched matmuls over the K members.

Other buffer-free models (the ConvNet without BatchNorm) run member by member
under ``torch.func.vmap`` of ``functional_call``, with autograd for the
gradients (:class:`VmappedModel`); vmap turns the per-member convolutions into
grouped ones. Models with buffers are not stacked: BatchNorm's running
statistics are updated in place during the forward pass, which ``vmap``
cannot batch, and freezing them would change what is trained.
"""

import torch
from torch import Tensor, nn

from gdlab.backprop.backward import Lanes, mlp_backward
from gdlab.errors import GdlabError
from gdlab.models import MLP, ConvNet
from gdlab.models.activations import ACTIVATIONS


def supports_stacking(model: nn.Module) -> bool:
    """Whether ``fit_stacked`` can train copies of ``model`` as one stacked model.

    True for gdlab's MLP and for its ConvNet without BatchNorm (and subclasses
    that keep their forward); False for anything else, e.g. a ConvNet with
    BatchNorm or a model whose forward caches tensors (``gdlab.backprop.MLP``).
    """
    return _stacking_kind(model) is not None


def stacked_model(model: nn.Module) -> "StackedMLP | VmappedModel":
    """The stacked forward and backward for models shaped like ``model``."""
    kind = _stacking_kind(model)
    if kind == "mlp":
        return StackedMLP(model.activation_name)
    if kind == "vmap":
        return VmappedModel(model)
    raise GdlabError(
        f"cannot stack models of type {type(model).__name__} "
        f"({_why_not_stackable(model)}); use --backend sequential (gdlab.train.fit, one model at a time)"
    )


class StackedMLP:
    r"""K MLPs with weights W[l] of shape (K, out, in) and biases b[l] of shape (K, out).

    Forward, for every member k at once (f the activation, none after the last layer)::

        Z[0] = x W[0]^T + b[0]                  (one GEMM for all members: x is shared)
        A[l] = f(Z[l]);  Z[l+1] = A[l] W[l+1]^T + b[l+1]      (batched over k)

    Backward, from dL/dZ[last] (the gradient of the loss with respect to the
    scores): :func:`gdlab.backprop.mlp_backward`, with f' from
    :data:`gdlab.models.activations.ACTIVATIONS`. Gradients are written into
    buffers kept from one step to the next, so a training step allocates no
    parameter-sized tensor here.
    """

    def __init__(self, activation: str):
        self.activation = ACTIVATIONS[activation]
        self._gradients: list[Tensor] = []

    def scores(self, params: list[Tensor], x: Tensor) -> Tensor:
        return self.forward(params, x)[0]

    def forward(self, params: list[Tensor], x: Tensor) -> tuple[Tensor, tuple]:
        """Scores (K, N, C) and what ``gradients`` needs: every layer's input and pre-activation."""
        weights, biases = params[0::2], params[1::2]
        if isinstance(x, Lanes):
            x = Lanes([batch.flatten(1) for batch in x.inputs], x.sizes)
            z = torch.cat([
                self._first_layer(weights[0][first:end], biases[0][first:end], batch)
                for batch, (first, end) in zip(x.inputs, x.bounds())
            ])
        else:
            x = x.flatten(1)
            z = self._first_layer(weights[0], biases[0], x)
        layer_inputs, pre_activations = [x], []
        for weight, bias in zip(weights[1:], biases[1:]):
            pre_activations.append(z)
            layer_inputs.append(self.activation.forward(z))
            z = torch.baddbmm(bias.unsqueeze(1), layer_inputs[-1], weight.transpose(1, 2))
        return z, (layer_inputs, pre_activations)

    @staticmethod
    def _first_layer(weight: Tensor, bias: Tensor, x: Tensor) -> Tensor:
        """Z[0] of the members sharing ``x``, (K, N, out): one GEMM for all of them."""
        members, width = weight.shape[:2]
        z = torch.addmm(bias.reshape(1, members * width), x, weight.reshape(members * width, -1).t())
        return z.view(len(x), members, width).transpose(0, 1)

    def gradients(self, params: list[Tensor], saved: tuple, score_gradients: Tensor) -> list[Tensor]:
        """dL/dparams for every member, from dL/dscores of shape (K, N, C)."""
        layer_inputs, pre_activations = saved
        return mlp_backward(
            params[0::2], layer_inputs, pre_activations, score_gradients, self.activation.derivative,
            out=self._buffers(params),
        )

    def _buffers(self, params: list[Tensor]) -> list[Tensor]:
        if [g.shape for g in self._gradients] != [p.shape for p in params]:
            self._gradients = [torch.empty_like(param) for param in params]
        return self._gradients


class VmappedModel:
    """Any buffer-free model, member by member under ``vmap``; gradients by autograd."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.names = [name for name, _ in model.named_parameters()]

    def scores(self, params: list[Tensor], x: Tensor) -> Tensor:
        def member_scores(member_params: list[Tensor], x: Tensor) -> Tensor:
            return torch.func.functional_call(self.model, dict(zip(self.names, member_params, strict=True)), (x,))

        if isinstance(x, Lanes):
            return torch.func.vmap(member_scores, in_dims=(0, 0))(params, x.per_member())
        return torch.func.vmap(member_scores, in_dims=(0, None))(params, x)

    def forward(self, params: list[Tensor], x: Tensor) -> tuple[Tensor, tuple]:
        with torch.enable_grad():
            leaves = [param.detach().requires_grad_() for param in params]
            scores = self.scores(leaves, x)
        return scores.detach(), (leaves, scores)

    def gradients(self, params: list[Tensor], saved: tuple, score_gradients: Tensor) -> list[Tensor]:
        leaves, scores = saved
        return list(torch.autograd.grad(scores, leaves, score_gradients))


def stack_parameters(models: list[nn.Module]) -> list[Tensor]:
    """Tensors of shape (K, *shape) holding member k's parameters in slice k."""
    columns = zip(*(list(model.parameters()) for model in models), strict=True)
    return [torch.stack([param.detach() for param in column]) for column in columns]


@torch.no_grad()
def write_member(model: nn.Module, stacked_params: list[Tensor], slot: int) -> None:
    """Copy slot ``slot`` of the stacked parameters into ``model``'s own parameters."""
    for param, stacked in zip(model.parameters(), stacked_params, strict=True):
        param.copy_(stacked[slot])


def check_same_architecture(models: list[nn.Module]) -> None:
    """GdlabError naming the first member that differs from member 0 in type, parameters, dtype or device."""
    if not models:
        raise GdlabError("fit_stacked needs at least one model; got an empty list")
    first = models[0]
    if not supports_stacking(first):
        raise GdlabError(
            f"cannot stack models of type {type(first).__name__} ({_why_not_stackable(first)}); "
            f"use --backend sequential (gdlab.train.fit, one model at a time)"
        )
    reference = _signature(first)
    for index, model in enumerate(models[1:], start=1):
        signature = _signature(model)
        if signature != reference:
            raise GdlabError(
                f"models[{index}] differs from models[0] ({_first_difference(reference, signature)}); "
                f"stacked members must share one architecture, dtype and device: train it separately"
            )
    frozen = [name for name, param in first.named_parameters() if not param.requires_grad]
    if frozen:
        raise GdlabError(
            f"fit_stacked trains every parameter, but {', '.join(frozen)} has requires_grad=False; "
            f"use --backend sequential (gdlab.train.fit) for partly frozen models"
        )


def _stacking_kind(model: nn.Module) -> str | None:
    if isinstance(model, MLP) and type(model).forward is MLP.forward and model.activation_name in ACTIVATIONS:
        return "mlp"
    if isinstance(model, ConvNet) and type(model).forward is ConvNet.forward and not list(model.buffers()):
        return "vmap"
    return None


def _why_not_stackable(model: nn.Module) -> str:
    if list(model.buffers()):
        names = ", ".join(name for name, _ in model.named_buffers())
        return f"it has buffers ({names}), e.g. BatchNorm running statistics, which vmap cannot update"
    return "only gdlab.models.MLP and ConvNet without BatchNorm are stacked"


def _signature(model: nn.Module) -> tuple:
    params = [(name, tuple(p.shape), p.dtype, p.device) for name, p in model.named_parameters()]
    return (type(model).__name__, repr(model), tuple(params))


def _first_difference(reference: tuple, signature: tuple) -> str:
    if reference[0] != signature[0]:
        return f"type {signature[0]} instead of {reference[0]}"
    for expected, got in zip(reference[2], signature[2]):
        if expected != got:
            return f"parameter {got[0]} is {got[1:]} instead of {expected[1:]} (shape, dtype, device)"
    if len(reference[2]) != len(signature[2]):
        return f"{len(signature[2])} parameters instead of {len(reference[2])}"
    return f"module {signature[1]!r} instead of {reference[1]!r}"
