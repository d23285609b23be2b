r"""Rprop (resilient backpropagation), bit-for-bit ``torch.optim.Rprop`` (``foreach=False``).

Riedmiller and Braun's rule uses only the sign of each gradient entry: every
entry has its own step size, grown while the sign holds and shrunk when it
flips. torch's version is the one Igel and Hüsken call iRprop-: after a flip
the entry does not move and its gradient is forgotten (set to 0).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.optim.optimizer import _get_scalar_dtype, _to_scalar

from gdlab.optim._base import DeclaredOptimizer, check_implementation
from gdlab.optim.declaration import Hyperparameter, RuleDeclaration, Variant
from gdlab.optim.functional import Hyperparameter as Number
from gdlab.optim.functional import _per_parameter
from gdlab.optim.rules import _common


def rprop(
    params: list[Tensor],
    grads: list[Tensor],
    prevs: list[Tensor],
    step_sizes: list[Tensor],
    steps: list[Tensor],
    *,
    step_size_min: Number,
    step_size_max: Number,
    etaminus: Number,
    etaplus: Number,
    maximize: bool,
    forget_after_sign_change: bool = True,
) -> None:
    r"""Rprop, as ``torch.optim.Rprop``.

    For each entry of a parameter :math:`\theta` with gradient
    :math:`\nabla f(\theta)`, its previous gradient :math:`g_{prev}` (starting
    at 0), its step size :math:`s` (starting at the lr) and the step count
    :math:`t`::

        g <- -grad f(theta) if maximize else grad f(theta)
        t <- t + 1
        if g * g_prev > 0:  s <- min(s * eta_plus,  s_max)
        if g * g_prev < 0:  s <- max(s * eta_minus, s_min);  g <- 0
        if g * g_prev = 0:  s <- min(max(s, s_min), s_max)
        theta <- theta - s * sign(g)
        g_prev <- g

    (Setting g to 0 after a sign change skips this entry's move and makes the
    next step take the third branch: iRprop-. ``forget_after_sign_change=False``
    keeps g, the original Rprop without backtracking; only the variant below
    uses it.) Complex parameters are updated as pairs of real numbers
    (``torch.view_as_real``), each with its own step size.
    """
    for i, param in enumerate(params):
        grad = -grads[i] if maximize else grads[i]
        prev, step_size = prevs[i], step_sizes[i]
        steps[i] += 1
        if torch.is_complex(param):
            grad, prev = torch.view_as_real(grad), torch.view_as_real(prev)
            param, step_size = torch.view_as_real(param), torch.view_as_real(step_size)
        param_etaminus, param_etaplus, param_min, param_max = _per_parameter(
            param, etaminus, etaplus, step_size_min, step_size_max
        )
        # The factor each step size is multiplied by: eta_plus, eta_minus or 1 by the sign of g * g_prev.
        factor = grad.mul(prev).sign()
        _replace(factor, factor.gt(0), param_etaplus)
        _replace(factor, factor.lt(0), param_etaminus)
        _replace(factor, factor.eq(0), 1)

        step_size.mul_(factor).clamp_(*_like(step_size, param_min, param_max))

        grad = grad.clone(memory_format=torch.preserve_format)
        if forget_after_sign_change:
            _replace(grad, factor.eq(_like(factor, param_etaminus)[0]), 0)

        param.addcmul_(grad.sign(), step_size, value=-1)
        prev.copy_(grad)


def _replace(values: Tensor, where: Tensor, new: Number) -> None:
    """values[where] <- new; for a tensor ``new`` (one per configuration), by torch.where."""
    if isinstance(new, Tensor):
        values.copy_(torch.where(where, new.to(values.dtype), values))
    else:
        values[where] = new


def _like(values: Tensor, *numbers: Number) -> tuple[Number, ...]:
    """Tensor hyperparameters in ``values``' dtype (as torch casts a Python number); numbers as they are."""
    return tuple(number.to(values.dtype) if isinstance(number, Tensor) else number for number in numbers)


class RpropState(NamedTuple):
    """Rprop's per-parameter state, under torch's ``state_dict`` keys in torch's order; each a list over params."""

    step: list[Tensor]
    prev: list[Tensor]
    step_size: list[Tensor]


def _initial_state(param: Tensor, lr: Number, capturable: bool = False) -> dict[str, Tensor]:
    """torch's state for a parameter's first step (``Rprop._init_group``; the gradient there has
    the parameter's shape and dtype). A tensor lr of K values (stacked configurations) starts
    slice k of every parameter at lr[k]."""
    if isinstance(lr, Tensor) and lr.numel() > 1:
        (per_configuration,) = _per_parameter(param, lr.to(param.dtype))
        step_size = torch.empty_like(param, memory_format=torch.preserve_format)
        step_size.copy_(per_configuration.expand_as(param))
    elif param.dtype.is_complex:
        # Real and imaginary parts are two independent reals: both start at the lr.
        step_size = torch.full_like(param, complex(lr, lr))
    else:
        step_size = torch.full_like(param, _to_scalar(lr))
    return {
        "step": (
            torch.zeros((), dtype=_get_scalar_dtype(), device=param.device)
            if capturable
            else torch.zeros((), dtype=_get_scalar_dtype())
        ),
        "prev": torch.zeros_like(param, memory_format=torch.preserve_format),
        "step_size": step_size,
    }


def init(params: list[Tensor], hparams: dict) -> RpropState:
    """Fresh state for ``params`` (every step size starts at ``hparams["lr"]``)."""
    states = [_initial_state(param, hparams["lr"]) for param in params]
    return RpropState(*([state[key] for state in states] for key in RpropState._fields))


def update(
    params: list[Tensor],
    grads: list[Tensor],
    state: RpropState,
    *,
    etas: tuple[Number, Number],
    step_sizes: tuple[Number, Number],
    maximize: bool,
    **_unused,
) -> None:
    """One Rprop step in place (:func:`rprop`). lr only sets the initial step sizes (``init``);
    foreach/capturable/differentiable are not the rule's."""
    etaminus, etaplus = etas
    step_size_min, step_size_max = step_sizes
    rprop(
        params, grads, state.prev, state.step_size, state.step,
        step_size_min=step_size_min, step_size_max=step_size_max,
        etaminus=etaminus, etaplus=etaplus, maximize=maximize,
    )


def update_without_forgetting(params, grads, state: RpropState, *, etas, step_sizes, maximize, **_unused) -> None:
    """Rprop that keeps the gradient after a sign change (the "Rprop-" of Igel & Hüsken)."""
    rprop(
        params, grads, state.prev, state.step_size, state.step,
        step_size_min=step_sizes[0], step_size_max=step_sizes[1],
        etaminus=etas[0], etaplus=etas[1], maximize=maximize, forget_after_sign_change=False,
    )


class Rprop(DeclaredOptimizer):
    """Resilient backpropagation; the rule is :func:`rprop`.

    Same arguments, param groups and ``state_dict`` layout (``step``,
    ``prev``, ``step_size``) as ``torch.optim.Rprop``, and bit-for-bit the
    same parameters as its ``foreach=False`` implementation. ``foreach`` is
    accepted and ignored; ``capturable=True`` and ``differentiable=True``
    raise ValueError.
    """

    rule_init = staticmethod(init)
    rule_update = staticmethod(update)
    rule_state = RpropState

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-2,
        etas: tuple[float, float] = (0.5, 1.2),
        step_sizes: tuple[float, float] = (1e-6, 50),
        *,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
    ):
        defaults = {
            "lr": lr,
            "etas": etas,
            "step_sizes": step_sizes,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "capturable": capturable,
        }
        super().__init__(params, defaults)

    @staticmethod
    def check_group(group: dict) -> None:
        # torch's checks, types and wording (torch.optim.Rprop.__init__).
        lr, etas = group["lr"], group["etas"]
        if isinstance(lr, Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 < etas[0] < 1.0 < etas[1]:
            raise ValueError(f"Invalid eta values: {etas[0]}, {etas[1]}")
        check_implementation(group)

    def __setstate__(self, state):
        super().__setstate__(state)
        # torch's: missing group keys get their defaults; a Python-number step becomes a tensor.
        self.restore_group_defaults({"foreach": None, "maximize": False, "differentiable": False, "capturable": False})


RULE = RuleDeclaration(
    name="rprop",
    optimizer=Rprop,
    reference=torch.optim.Rprop,
    reference_source="torch.optim.Rprop (torch/optim/rprop.py, _single_tensor_rprop); Riedmiller & Braun 1993",
    init=init,
    update=update,
    hyperparameters=(
        Hyperparameter("lr", 1e-2, log_uniform=True, label="learning rate", doc="initial step size of every entry"),
        Hyperparameter(
            "etas", (0.5, 1.2), kind="pair", label="eta values",
            doc="(etaminus, etaplus): step-size factors after a sign change / a kept sign; 0 < etaminus < 1 < etaplus",
        ),
        Hyperparameter(
            "step_sizes", (1e-6, 50), kind="pair", label="step sizes", log_uniform=True,
            doc="(minimal, maximal) step size",
        ),
        _common.MAXIMIZE,
    ),
    verify_grid=(
        {},
        {"maximize": True},
        {"lr": 1e-3, "etas": (0.3, 1.5), "step_sizes": (1e-4, 0.05)},
    ),
    # Every number may be a tensor of K values (selections by torch.where, clamp to tensor bounds).
    stackable=True,
    variants=(
        Variant(
            name="no_backtracking",
            kind="variant",
            cause=(
                "after a sign change the gradient is kept (the parameter still moves by -step_size * "
                "sign(g), and the next step compares with it): the original Rprop without iRprop-'s "
                "g <- 0, which torch.optim.Rprop applies"
            ),
            update=update_without_forgetting,
        ),
    ),
    summary="Rprop (iRprop-): a step size per entry, grown while the gradient's sign holds, shrunk when it flips",
)
