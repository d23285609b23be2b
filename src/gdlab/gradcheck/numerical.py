"""Reference gradients of a scalar function of tensors: finite differences and autograd.

Central differences: for every element x_i of every input,

    ∂f/∂x_i ≈ (f(x + ε e_i) - f(x - ε e_i)) / (2ε)

whose truncation error is O(ε²) and rounding error O(u·|f|/ε) with u the
unit roundoff. In float64 (u ≈ 1.1e-16) and ε = 1e-6 both are around 1e-10
for O(1) losses; in float32 (u ≈ 6e-8) the rounding term would be ~0.1, which
is why the inputs are copied to float64 and ``f`` must compute in float64.
"""

from typing import Callable, Sequence

import torch

from gdlab.errors import GdlabError


def _scalar(value, where: str, dtype=None) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise GdlabError(
            f"{where}: f must return a scalar tensor (one element), got {shape}; "
            "reduce it with .mean() or .sum() the way your loss does"
        )
    if dtype is not None and value.dtype != dtype:
        raise GdlabError(
            f"{where}: f returned {value.dtype} for float64 inputs; finite differences need "
            "float64 all the way, so convert what f uses besides its arguments (model, x, y) "
            "with .double()"
        )
    return value


def _as_tensor_list(tensors, where: str) -> list[torch.Tensor]:
    if isinstance(tensors, torch.Tensor):
        tensors = [tensors]
    tensors = list(tensors)
    for index, tensor in enumerate(tensors):
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            raise GdlabError(
                f"{where}: input {index} must be a floating-point tensor, got "
                f"{getattr(tensor, 'dtype', type(tensor).__name__)}; gradients exist only for "
                "floating-point inputs"
            )
    return tensors


@torch.no_grad()
def numerical_gradient(
    f: Callable[..., torch.Tensor], tensors: Sequence[torch.Tensor], eps: float = 1e-6
) -> list[torch.Tensor]:
    """∂f/∂t for each t in ``tensors`` by central differences in float64.

    ``f(*tensors)`` must return a scalar tensor. It is called with float64
    copies of ``tensors`` (two calls per element), so the originals are never
    changed. Returns one float64 tensor per input, shaped like it.
    """
    if not eps > 0:
        raise GdlabError(f"numerical_gradient: eps must be positive, got {eps!r}; 1e-6 suits float64")
    inputs = [
        t.detach().to(torch.float64, memory_format=torch.contiguous_format, copy=True)
        for t in _as_tensor_list(tensors, "numerical_gradient")
    ]
    _scalar(f(*inputs), "numerical_gradient", torch.float64)
    gradients = []
    for tensor in inputs:
        flat = tensor.view(-1)
        gradient = torch.empty_like(flat)
        for index in range(flat.numel()):
            original = flat[index].item()
            flat[index] = original + eps
            above = f(*inputs).item()
            flat[index] = original - eps
            below = f(*inputs).item()
            flat[index] = original
            gradient[index] = (above - below) / (2 * eps)
        gradients.append(gradient.view_as(tensor))
    return gradients


def autograd_gradient(f: Callable[..., torch.Tensor], tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """∂f/∂t for each t in ``tensors`` by autograd, in the tensors' own dtype.

    Works on detached copies, so it neither needs nor changes ``requires_grad``
    on the inputs. An input that ``f`` does not use gets a zero gradient.
    """
    inputs = [t.detach().clone().requires_grad_(True) for t in _as_tensor_list(tensors, "autograd_gradient")]
    with torch.enable_grad():
        value = _scalar(f(*inputs), "autograd_gradient")
        gradients = torch.autograd.grad(value, inputs, allow_unused=True)
    return [
        torch.zeros_like(tensor) if gradient is None else gradient.detach()
        for tensor, gradient in zip(inputs, gradients)
    ]
