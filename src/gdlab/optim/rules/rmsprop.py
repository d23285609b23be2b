"""RMSprop (centered, with momentum): ``torch.optim.RMSprop``."""

from typing import NamedTuple

import torch
from torch import Tensor

from gdlab.optim import functional
from gdlab.optim.declaration import Hyperparameter, RuleDeclaration, flag_grid
from gdlab.optim.rmsprop import RMSprop
from gdlab.optim.rules._common import MAXIMIZE, eps, flag, lr, step_counters, uses, weight_decay, zeros_like_each


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
    summary="gradient scaled by a running root mean square",
)
