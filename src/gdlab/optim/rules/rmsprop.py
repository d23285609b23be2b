"""RMSprop (centered, with momentum): ``torch.optim.RMSprop``."""

from typing import NamedTuple

import torch
from torch import Tensor

from gdlab.optim import functional
from gdlab.optim.declaration import Hyperparameter, RuleDeclaration, Variant, flag_grid
from gdlab.optim.rmsprop import RMSprop
from gdlab.optim.rules._common import (
    MAXIMIZE, eps, flag, hparam_used, lr, step_counters, uses, weight_decay, with_hparams, zeros_like_each,
)


class RMSpropState(NamedTuple):
    square_avg: list[Tensor]
    grad_avg: list[Tensor]  # empty unless centered
    momentum_buffer: list[Tensor]  # empty unless momentum is used
    step: list[Tensor]


def init(params: list[Tensor], hparams) -> RMSpropState:
    grad_avgs = zeros_like_each(params) if hparams["centered"] else []
    buffers = zeros_like_each(params) if uses(hparams["momentum"]) else []
    return RMSpropState(zeros_like_each(params), grad_avgs, buffers, step_counters(params))


def update(params, grads, state: RMSpropState, *, lr, alpha, eps, weight_decay, momentum, centered, maximize, **_):
    functional.rmsprop(
        params, grads, state.square_avg, state.grad_avg, state.momentum_buffer, state.step,
        lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum, centered=centered,
        maximize=maximize,
    )


# --- Known mistakes and variants -------------------------------------------------------------------


def _rmsprop_eps_inside_sqrt(params, grads, state, *, lr, alpha, eps, weight_decay, momentum, centered,
                             maximize=False, **_):
    """s = alpha s + (1 - alpha) g^2,  p <- p - lr g / sqrt(s + eps)  (centered: s - mean(g)^2)."""
    for i, (param, grad) in enumerate(zip(params, grads)):
        grad = (-grad if maximize else grad) + weight_decay * param
        state.square_avg[i].mul_(alpha).add_((1 - alpha) * grad * grad)
        variance = state.square_avg[i]
        if centered:
            state.grad_avg[i].mul_(alpha).add_((1 - alpha) * grad)
            variance = variance - state.grad_avg[i] ** 2
        scaled = grad / (variance + eps).sqrt()
        if momentum != 0:
            state.momentum_buffer[i].mul_(momentum).add_(scaled)
            param.sub_(lr * state.momentum_buffer[i])
        else:
            param.sub_(lr * scaled)


RULE = RuleDeclaration(
    name="rmsprop",
    optimizer=RMSprop,
    reference=torch.optim.RMSprop,
    init=init,
    update=update,
    hyperparameters=(
        lr(1e-2),
        Hyperparameter("alpha", 0.99, minimum=0.0, label="alpha value"),
        eps(1e-8),
        weight_decay(),
        Hyperparameter("momentum", 0.0, minimum=0.0, label="momentum value"),
        flag("centered", "normalize by the estimated variance instead of the second moment"),
        MAXIMIZE,
    ),
    verify_grid=flag_grid(
        {"lr": 0.01}, centered=[False, True], momentum=[0.0, 0.9], weight_decay=[0.0, 0.01], maximize=[False, True],
    ),
    variants=(
        Variant(
            "weight_decay_wrong_sign", "bug",
            "weight decay has the wrong sign: the gradient gets - weight_decay*p instead of + weight_decay*p, "
            "so weights grow instead of shrinking",
            applies=hparam_used("weight_decay"),
            **with_hparams(update, init, lambda h: {"weight_decay": -h["weight_decay"]}),
        ),
        Variant("centered_used", "bug", "the centered variant is used (v - mean(g)^2), but centered=False",
                applies=lambda h: not h["centered"],
                **with_hparams(update, init, lambda h: {"centered": True})),
        Variant("centered_missing", "bug", "the centered variant is missing (v is used as it is), but centered=True",
                applies=lambda h: h["centered"],
                **with_hparams(update, init, lambda h: {"centered": False})),
        Variant(
            "eps_inside_sqrt", "variant",
            "eps is inside the square root: p -= lr*g/sqrt(v + eps), as Neuromatch and d2l teach RMSprop; "
            "torch adds it outside: g/(sqrt(v) + eps)",
            condition="differs from torch's where v is not far above eps (small gradients); with eps far below "
                      "v the two agree to rounding",
            update=_rmsprop_eps_inside_sqrt, init=init,
        ),
    ),
    summary="gradient scaled by a running root mean square",
)
