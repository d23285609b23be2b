"""Adadelta (updates in the units of the parameter): ``torch.optim.Adadelta``."""

from typing import NamedTuple

import torch
from torch import Tensor
from torch.optim.optimizer import _to_scalar

from gdlab.optim._base import (
    DeclaredOptimizer,
    check_flag,
    check_implementation,
    check_non_negative,
    check_number,
)
from gdlab.optim.declaration import Hyperparameter, RuleDeclaration, Variant
from gdlab.optim.functional import (
    _moving_average_of_square_,
    _per_parameter,
    _real_views,
    _scaled_sub_,
    _with_l2_penalty,
)
from gdlab.optim.rules import _common


def adadelta(
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    acc_deltas: list[Tensor],
    steps: list[Tensor],
    *,
    lr: float | Tensor,
    rho: float | Tensor,
    eps: float | Tensor,
    weight_decay: float | Tensor,
    maximize: bool,
) -> None:
    r"""Adadelta, as ``torch.optim.Adadelta``.

    For each parameter :math:`\theta` with gradient :math:`\nabla f(\theta)`,
    square average :math:`v`, accumulated squared update :math:`u` and step
    count :math:`t` (all starting at 0; decay :math:`\rho`)::

        t <- t + 1                              (counted as torch does; unused)
        g <- -grad f(theta) if maximize else grad f(theta)
        g <- g + lambda * theta                 if lambda != 0
        v <- rho * v + (1 - rho) * g^2
        delta <- sqrt(u + eps) / sqrt(v + eps) * g
        u <- rho * u + (1 - rho) * delta^2
        theta <- theta - gamma * delta

    A complex parameter's moments are kept as the real tensors of their parts
    (``torch.view_as_real``) and its weight decay and step taken in complex
    arithmetic, as torch does. ``lr`` may be torch's tensor lr (one element) or,
    like every numeric hyperparameter, one value per stacked configuration
    (see :mod:`gdlab.optim.functional`).
    """
    lr = _to_scalar(lr)
    for i, param in enumerate(params):
        square_avg, acc_delta = square_avgs[i], acc_deltas[i]
        lr, weight_decay = _per_parameter(param, lr, weight_decay)
        steps[i] += 1
        grad = -grads[i] if maximize else grads[i]
        grad = _with_l2_penalty(grad, param, weight_decay)
        if torch.is_complex(param):
            square_avg, acc_delta, grad = _real_views(square_avg, acc_delta, grad)
        rho, eps = _per_parameter(grad, rho, eps)
        _moving_average_of_square_(square_avg, grad, rho)
        std = square_avg.add(eps).sqrt_()
        delta = acc_delta.add(eps).sqrt_()
        delta.div_(std).mul_(grad)
        _moving_average_of_square_(acc_delta, delta, rho)
        if torch.is_complex(param):
            delta = torch.view_as_complex(delta)
        _scaled_sub_(param, delta, lr)


class AdadeltaState(NamedTuple):
    step: list[Tensor]
    square_avg: list[Tensor]
    acc_delta: list[Tensor]


def init(params: list[Tensor], hparams) -> AdadeltaState:
    return AdadeltaState(
        _common.step_counters(params), _common.zeros_like_each(params), _common.zeros_like_each(params)
    )


def update(params, grads, state: AdadeltaState, *, lr, rho, eps, weight_decay, maximize, **_) -> None:
    adadelta(
        params, grads, state.square_avg, state.acc_delta, state.step,
        lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize,
    )


def _update_with_eps_outside_the_roots(params, grads, state: AdadeltaState, *, lr, rho, eps, weight_decay, maximize,
                                       **_):
    """delta <- (sqrt(u) + eps) / (sqrt(v) + eps) * g: eps added after the square roots."""
    for param, grad, square_avg, acc_delta, step in zip(params, grads, state.square_avg, state.acc_delta, state.step):
        step += 1
        grad = -grad if maximize else grad
        if weight_decay != 0:
            grad = grad.add(param, alpha=weight_decay)
        square_avg.mul_(rho).addcmul_(grad, grad, value=1 - rho)
        delta = acc_delta.sqrt().add_(eps).div_(square_avg.sqrt().add_(eps)).mul_(grad)
        acc_delta.mul_(rho).addcmul_(delta, delta, value=1 - rho)
        param.add_(delta, alpha=-lr)


class Adadelta(DeclaredOptimizer):
    """Adadelta; the rule is :func:`adadelta`.

    torch's arguments, defaults, param-group keys and ``state_dict`` layout
    (``step``, ``square_avg``, ``acc_delta``), and bit-for-bit the parameters
    of ``torch.optim.Adadelta(..., foreach=False)``, complex parameters and a
    tensor ``lr`` included. ``foreach`` is accepted and ignored (gdlab has one
    implementation); ``capturable`` and ``differentiable`` must stay False.
    """

    rule_init = staticmethod(init)
    rule_update = staticmethod(update)
    rule_state = AdadeltaState

    def __init__(
        self,
        params,
        lr: float | Tensor = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        capturable: bool = False,
        maximize: bool = False,
        differentiable: bool = False,
    ):
        defaults = {
            "lr": lr,
            "rho": rho,
            "eps": eps,
            "weight_decay": weight_decay,
            "maximize": maximize,
            "capturable": capturable,
            "foreach": foreach,
            "differentiable": differentiable,
        }
        super().__init__(params, defaults)

    def __setstate__(self, state):
        # torch's: an older state_dict may lack these group keys and hold its steps as numbers.
        super().__setstate__(state)
        self.restore_group_defaults({"foreach": None, "maximize": False, "differentiable": False, "capturable": False})

    @staticmethod
    def check_group(group: dict) -> None:
        check_non_negative("lr", group["lr"], "learning rate")
        check_number("rho", group["rho"])
        if not 0.0 <= group["rho"] <= 1.0:
            raise ValueError(f"Invalid rho value: {group['rho']} (rho must be in [0, 1], e.g. rho=0.9)")
        check_non_negative("eps", group["eps"], "epsilon value")
        check_non_negative("weight_decay", group["weight_decay"], "weight_decay value")
        check_flag("maximize", group["maximize"])
        check_implementation(group)


RULE = RuleDeclaration(
    name="adadelta",
    optimizer=Adadelta,
    reference=torch.optim.Adadelta,
    reference_source="torch.optim.Adadelta (torch/optim/adadelta.py, _single_tensor_adadelta); Zeiler 2012",
    init=init,
    update=update,
    hyperparameters=(
        _common.lr(1.0),
        Hyperparameter("rho", 0.9, minimum=0.0, maximum=1.0, label="rho value",
                       doc="decay of both running averages (squared gradients and squared updates)"),
        _common.eps(1e-6),
        _common.weight_decay(),
        _common.MAXIMIZE,
    ),
    verify_grid=(
        {"lr": 1.0},
        {"lr": 1.0, "weight_decay": 0.01, "maximize": True},
        {"lr": 0.5, "rho": 0.95, "eps": 1e-5},
    ),
    stackable=True,
    variants=(
        Variant(
            name="eps outside the square roots",
            kind="bug",
            cause=(
                "eps is added after the square roots, delta = (sqrt(u) + eps) / (sqrt(v) + eps) * g, "
                "instead of delta = sqrt(u + eps) / sqrt(v + eps) * g; the first steps are then about "
                "sqrt(eps) times too small"
            ),
            update=_update_with_eps_outside_the_roots,
            applies=lambda hparams: hparams["eps"] != 0,
        ),
    ),
    summary="updates scaled by the ratio of running RMS of past updates to that of gradients",
)
