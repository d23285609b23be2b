"""Check a hand-written MLP backward pass against autograd and finite differences."""

import copy
import dataclasses
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from gdlab.errors import GdlabError
from gdlab.gradcheck.numerical import autograd_gradient, numerical_gradient
from gdlab.gradcheck.report import GradReport, compare

REFERENCE_LOSSES = {"mse": F.mse_loss, "cross_entropy": F.cross_entropy}
# Finite differences cost two forward passes per parameter (about 2 s for this
# many on one CPU core); beyond it the automatic choice leaves them out and
# autograd alone is the reference.
FINITE_DIFFERENCE_LIMIT = 5_000


def check_mlp_backward(
    backward,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    model: nn.Module | None = None,
    loss: str = "mse",
    finite_differences: bool | None = None,
    eps: float = 1e-6,
    rtol: float | None = None,
    atol: float | None = None,
) -> GradReport:
    """Run a hand-written backward pass and compare it with autograd (and finite differences).

    ``backward`` is either

    - a network with its own ``backward(y_true, y_pred, loss=...)`` method,
      such as ``gdlab.backprop.MLP``, or
    - a function ``backward(model, y_true, y_pred)`` as the course asks for,
      with the network given as ``model=``. It returns one ``(dL_dW, dL_db)``
      pair per ``nn.Linear`` layer, or returns None and stores them on the model
      as ``model.dL_dW`` (or ``model.dL_dw``) and ``model.dL_db``: lists in layer
      order, lists indexed 1..L with entry 0 unused, or dicts keyed by layer.

    The loss is ``loss`` ("mse": ``F.mse_loss(y_pred, y)`` with ``y`` shaped
    like the output; "cross_entropy": ``F.cross_entropy(y_pred, y)`` with
    integer labels), mean-reduced. The gradients are those of every
    ``nn.Linear`` weight and bias, in module order.

    Everything runs on a float64 copy of the network, so rounding can neither
    hide nor fake a mistake and the network passed in is left untouched. The
    forward and the backward run under ``torch.no_grad()``: a backward pass that
    leans on autograd fails here. ``finite_differences`` (default: when the
    network has at most 5,000 parameters) also compares with central
    differences of step ``eps``; that report is ``result.finite_differences``.
    Where finite differences and autograd disagree with each other (the loss
    has a kink within ``eps``, as ReLU at 0), that report uses autograd's
    value and says how many elements in ``notes``.
    """
    network, run_backward = _resolve(backward, model, loss)
    if loss not in REFERENCE_LOSSES:
        raise GdlabError(
            f"check_mlp_backward: unknown loss {loss!r}; use loss='mse' or loss='cross_entropy'"
        )
    network = copy.deepcopy(network).double()
    x = x.detach().double()
    y = _prepare_targets(network, x, y, loss)
    names, parameters = _linear_parameters(network)
    if finite_differences is None:
        finite_differences = sum(p.numel() for p in parameters) <= FINITE_DIFFERENCE_LIMIT

    def loss_of(*tensors):
        y_pred = functional_call(network, dict(zip(names, tensors)), (x,))
        return REFERENCE_LOSSES[loss](y_pred, y)

    if not torch.equal(loss_of(*parameters), loss_of(*parameters)):
        raise GdlabError(
            f"check_mlp_backward: two forward passes of {type(network).__name__} on the same input gave "
            "different losses, so no gradient can be checked; switch off dropout or other randomness "
            "(model.eval()) before checking"
        )
    autograd_reference = autograd_gradient(loss_of, parameters)
    numerical_reference = numerical_gradient(loss_of, parameters, eps) if finite_differences else None

    # The user's forward runs last, so whatever it caches belongs to it.
    with torch.no_grad():
        y_pred = network(x)
        returned = run_backward(network, y, y_pred)
    analytic = _collect_gradients(returned, network, len(parameters) // 2)
    context = dict(
        names=names,
        rtol=rtol,
        atol=atol,
        batch_size=x.shape[0],
        output_size=y_pred[0].numel() if loss == "mse" else None,
    )
    report = compare(analytic, autograd_reference, reference_name="autograd", **context)
    if numerical_reference is None:
        return report
    numerical_reference, notes = _trusted_differences(numerical_reference, autograd_reference, report, eps)
    fd_report = compare(analytic, numerical_reference, reference_name="finite differences", **context)
    return dataclasses.replace(report, finite_differences=dataclasses.replace(fd_report, notes=notes))


def _trusted_differences(numerical, autograd, report, eps):
    """Finite differences, with autograd's value where the two references disagree.

    For a deterministic float64 forward (checked before) they disagree only
    where the loss is not smooth at the scale of ``eps``: a ReLU pre-activation
    within eps of 0 flips sign between f(x + eps) and f(x - eps). There the
    difference quotient measures the kink, not the gradient, and would fail a
    correct backward pass.
    """
    trusted, replaced, total = [], 0, 0
    for fd, exact in zip(numerical, autograd):
        agree = (fd - exact).abs() <= report.atol + report.rtol * exact.abs()
        trusted.append(torch.where(agree, fd, exact))
        replaced += int((~agree).sum())
        total += fd.numel()
    if not replaced:
        return trusted, ()
    note = (
        f"at {replaced} of {total} elements central differences (eps={eps:g}) disagree with autograd, "
        "because the loss has a kink within eps there (a ReLU pre-activation near 0); those elements "
        "use autograd's value."
    )
    return trusted, (note,)


def _resolve(backward, model, loss) -> tuple[nn.Module, Callable]:
    if isinstance(backward, nn.Module):
        if model is not None:
            raise GdlabError(
                "check_mlp_backward: got a network as `backward` and also model=; pass either a network "
                "with a backward method, or a function backward(model, y_true, y_pred) with model="
            )
        if not callable(getattr(type(backward), "backward", None)):
            raise GdlabError(
                f"check_mlp_backward: {type(backward).__name__} has no backward(y_true, y_pred, loss) "
                "method; pass your backward function first and this network as model="
            )
        return backward, lambda network, y_true, y_pred: network.backward(y_true, y_pred, loss=loss)
    if not callable(backward):
        raise GdlabError(
            f"check_mlp_backward: `backward` must be a network or a function, got {type(backward).__name__}"
        )
    if not isinstance(model, nn.Module):
        raise GdlabError(
            "check_mlp_backward: a backward function needs the network it differentiates: "
            "check_mlp_backward(backward, x, y, model=net)"
        )
    return model, backward


def _prepare_targets(network, x, y, loss):
    with torch.no_grad():
        output_shape = tuple(network(x).shape)
    if loss == "mse":
        if tuple(y.shape) != output_shape or not y.is_floating_point():
            raise GdlabError(
                f"check_mlp_backward: loss='mse' needs floating-point y shaped like the output "
                f"{output_shape}, got {y.dtype} {tuple(y.shape)}; for class labels pass "
                "F.one_hot(labels, num_classes).double(), or use loss='cross_entropy'"
            )
        return y.detach().double()
    if tuple(y.shape) != output_shape[:1] or y.is_floating_point():
        raise GdlabError(
            f"check_mlp_backward: loss='cross_entropy' needs integer labels of shape {output_shape[:1]}, "
            f"got {y.dtype} {tuple(y.shape)}; for one-hot targets pass y.argmax(dim=1)"
        )
    return y.detach().long()


def _linear_parameters(network):
    names, parameters = [], []
    for module_name, module in network.named_modules():
        if isinstance(module, nn.Linear):
            if module.bias is None:
                raise GdlabError(
                    f"check_mlp_backward: layer {module_name!r} has no bias; it checks (dL_dW, dL_db) "
                    "pairs, so every nn.Linear needs bias=True"
                )
            names += [f"{module_name}.weight", f"{module_name}.bias"]
            parameters += [module.weight.detach(), module.bias.detach()]
    if not parameters:
        raise GdlabError(
            f"check_mlp_backward: {type(network).__name__} has no nn.Linear layers to check"
        )
    return names, parameters


def _collect_gradients(returned, network, layer_count):
    if returned is not None:
        pairs = list(returned)
        source = "the backward function's return value"
    else:
        weights = getattr(network, "dL_dW", getattr(network, "dL_dw", None))
        biases = getattr(network, "dL_db", None)
        if weights is None or biases is None:
            raise GdlabError(
                "check_mlp_backward: the backward function returned None and the model has no "
                "dL_dW (or dL_dw) and dL_db; return [(dL_dW, dL_db), ...] or store them on the model"
            )
        pairs = list(zip(_in_layer_order(weights, layer_count), _in_layer_order(biases, layer_count)))
        source = "model.dL_dW / model.dL_db"
    if len(pairs) != layer_count or not all(isinstance(p, (tuple, list)) and len(p) == 2 for p in pairs):
        raise GdlabError(
            f"check_mlp_backward: {source} must give one (dL_dW, dL_db) pair for each of the "
            f"{layer_count} nn.Linear layers, got {len(pairs)} items"
        )
    return [(torch.as_tensor(w).double(), torch.as_tensor(b).double()) for w, b in pairs]


def _in_layer_order(stored, layer_count):
    if isinstance(stored, dict):
        # Keys may be layer numbers or their strings ("1", ..., "10"): order them as numbers.
        return [stored[key] for key in sorted(stored, key=lambda key: (len(str(key)), str(key)))]
    stored = list(stored)
    if len(stored) == layer_count + 1 and stored[0] is None:
        return stored[1:]
    return stored
