"""Adagrad (with lr decay): ``torch.optim.Adagrad``."""

from typing import NamedTuple

import torch
from torch import Tensor

from gdlab.optim import functional
from gdlab.optim.adagrad import Adagrad
from gdlab.optim.declaration import Hyperparameter, RuleDeclaration, flag_grid
from gdlab.optim.rules._common import MAXIMIZE, eps, filled_like_each, lr, step_counters, weight_decay


class AdagradState(NamedTuple):
    sum: list[Tensor]
    step: list[Tensor]


def init(params: list[Tensor], hparams) -> AdagradState:
    return AdagradState(filled_like_each(params, hparams["initial_accumulator_value"]), step_counters(params))


def update(params, grads, state: AdagradState, *, lr, weight_decay, lr_decay, eps, maximize, **_):
    functional.adagrad(
        params, grads, state.sum, state.step, lr=lr, weight_decay=weight_decay, lr_decay=lr_decay, eps=eps,
        maximize=maximize,
    )


RULE = RuleDeclaration(
    name="adagrad",
    optimizer=Adagrad,
    reference=torch.optim.Adagrad,
    init=init,
    update=update,
    hyperparameters=(
        lr(1e-2),
        Hyperparameter("lr_decay", 0.0, minimum=0.0, label="lr_decay value"),
        weight_decay(),
        Hyperparameter("initial_accumulator_value", 0.0, minimum=0.0, label="initial_accumulator_value"),
        eps(1e-10),
        MAXIMIZE,
    ),
    verify_grid=flag_grid(
        {"lr": 0.05}, lr_decay=[0.0, 0.01], initial_accumulator_value=[0.0, 0.1], weight_decay=[0.0, 0.01],
        maximize=[False, True],
    ),
    summary="gradient scaled by the root of the summed squares",
)
