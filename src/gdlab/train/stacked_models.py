r"""K models of one architecture as one stacked model: parameters of shape (K, ...).

Member k's parameters are slice k of each stacked tensor, in the order of
``model.parameters()``. A stacked forward maps one input batch ``x`` of N
samples (the same batch for every member) to scores of shape (K, N, C), where
``scores[k]`` is what member k alone would give for ``x``.

MLPs (:class:`gdlab.models.MLP`) run on batched matmuls. Because every member
sees the same ``x``, the first layer, by far the largest of an image MLP, is
one wide GEMM::

    [z_1 | ... | z_K] = x @ [W_1 | ... | W_K]^T + [b_1 | ... | b_K]      (N, K*out)

and autograd turns its weight gradient into one GEMM too,
``dL/d[W_1..W_K] = dL/d[z_1..z_K]^T @ x``. Large GEMMs run far closer to a
CPU's peak than K small ones. The later layers, whose inputs differ per member,
are batched matmuls ``z = a @ W^T + b`` over the K members (``baddbmm``).

Other buffer-free models (the ConvNet without BatchNorm) run member by member
under ``torch.func.vmap`` of ``functional_call``, which turns the per-member
convolutions into grouped ones. Models with buffers are not stacked:
BatchNorm's running statistics are updated in place during the forward pass,
which ``vmap`` cannot batch, and freezing them would change what is trained.
"""

from collections.abc import Callable

import torch
from torch import Tensor, nn

from gdlab.errors import GdlabError
from gdlab.models import MLP, ConvNet

# (stacked parameters, input batch) -> scores of shape (K, N, C)
StackedForward = Callable[[list[Tensor], Tensor], Tensor]


def supports_stacking(model: nn.Module) -> bool:
    """Whether ``fit_stacked`` can train copies of ``model`` as one stacked model.

    True for gdlab's MLP and for its ConvNet without BatchNorm (and subclasses
    that keep their forward); False for anything else, e.g. a ConvNet with
    BatchNorm or a model whose forward caches tensors (``gdlab.backprop.MLP``).
    """
    return _stacking_kind(model) is not None


def stacked_forward(model: nn.Module) -> StackedForward:
    """The stacked forward for models shaped like ``model`` (see the module docstring)."""
    kind = _stacking_kind(model)
    if kind == "mlp":
        activation = model.activation
        return lambda params, x: _mlp_forward(activation, params, x)
    if kind == "vmap":
        names = [name for name, _ in model.named_parameters()]
        return lambda params, x: _vmapped_forward(model, names, params, x)
    raise GdlabError(
        f"cannot stack models of type {type(model).__name__} "
        f"({_why_not_stackable(model)}); use --backend sequential (gdlab.train.fit, one model at a time)"
    )


def stack_parameters(models: list[nn.Module]) -> list[Tensor]:
    """Leaf tensors of shape (K, *shape) holding member k's parameters in slice k."""
    columns = zip(*(list(model.parameters()) for model in models), strict=True)
    return [torch.stack([param.detach() for param in column]).requires_grad_() for column in columns]


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
    if isinstance(model, MLP) and type(model).forward is MLP.forward:
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


def _mlp_forward(activation: nn.Module, params: list[Tensor], x: Tensor) -> Tensor:
    weights, biases = params[0::2], params[1::2]
    members, width = weights[0].shape[:2]
    # One wide GEMM for the shared input: (N, in) @ (in, K*out) -> (N, K*out).
    z = torch.addmm(biases[0].reshape(1, members * width), x.flatten(1), weights[0].reshape(members * width, -1).t())
    z = z.view(len(x), members, width).transpose(0, 1)
    for weight, bias in zip(weights[1:], biases[1:]):
        z = torch.baddbmm(bias.unsqueeze(1), activation(z), weight.transpose(1, 2))
    return z


def _vmapped_forward(model: nn.Module, names: list[str], params: list[Tensor], x: Tensor) -> Tensor:
    def member_forward(member_params: list[Tensor], x: Tensor) -> Tensor:
        return torch.func.functional_call(model, dict(zip(names, member_params, strict=True)), (x,))

    return torch.func.vmap(member_forward, in_dims=(0, None))(params, x)
