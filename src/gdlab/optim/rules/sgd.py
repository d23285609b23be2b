"""SGD with momentum, dampening, Nesterov and weight decay: ``torch.optim.SGD``."""

from typing import NamedTuple

import torch
from torch import Tensor

from gdlab.optim import functional
from gdlab.optim.declaration import Hyperparameter, RuleDeclaration, flag_grid
from gdlab.optim.rules._common import MAXIMIZE, flag, lr, weight_decay
from gdlab.optim.sgd import SGD


class SGDState(NamedTuple):
    momentum_buffer: list[Tensor | None]  # created by the rule on its first step, as torch's


def init(params: list[Tensor], hparams) -> SGDState:
    return SGDState([None] * len(params))


def update(params, grads, state: SGDState, *, lr, momentum, dampening, weight_decay, nesterov, maximize, **_):
    functional.sgd(
        params, grads, state.momentum_buffer, lr=lr, weight_decay=weight_decay, momentum=momentum,
        dampening=dampening, nesterov=nesterov, maximize=maximize,
    )


RULE = RuleDeclaration(
    name="sgd",
    optimizer=SGD,
    reference=torch.optim.SGD,
    init=init,
    update=update,
    hyperparameters=(
        lr(1e-3),
        Hyperparameter("momentum", 0.0, minimum=0.0, label="momentum value"),
        Hyperparameter("dampening", 0.0, minimum=None, label="dampening"),
        weight_decay(),
        flag("nesterov", "Nesterov momentum (needs momentum > 0 and dampening 0)"),
        MAXIMIZE,
    ),
    verify_grid=flag_grid(
        {"lr": 0.05}, momentum=[0.0, 0.9], dampening=[0.0, 0.1], nesterov=[False, True],
        weight_decay=[0.0, 0.01], maximize=[False, True],
    ),
    summary="stochastic gradient descent with momentum",
)
