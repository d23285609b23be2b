"""Adam (with amsgrad): ``torch.optim.Adam``."""

from typing import NamedTuple

import torch
from torch import Tensor

from gdlab.optim import functional
from gdlab.optim.adam import Adam
from gdlab.optim.declaration import RuleDeclaration, flag_grid
from gdlab.optim.rules._common import MAXIMIZE, betas, betas_of, eps, flag, lr, step_counters, weight_decay, zeros_like_each


class AdamState(NamedTuple):
    exp_avg: list[Tensor]
    exp_avg_sq: list[Tensor]
    max_exp_avg_sq: list[Tensor]  # empty unless amsgrad
    step: list[Tensor]


def init(params: list[Tensor], hparams) -> AdamState:
    maxima = zeros_like_each(params) if hparams["amsgrad"] else []
    return AdamState(zeros_like_each(params), zeros_like_each(params), maxima, step_counters(params))


def update(params, grads, state: AdamState, *, decoupled_weight_decay=False, **hparams):
    functional.adam(
        params, grads, state.exp_avg, state.exp_avg_sq, state.max_exp_avg_sq, state.step,
        amsgrad=hparams["amsgrad"], **betas_of(hparams), lr=hparams["lr"], weight_decay=hparams["weight_decay"],
        eps=hparams["eps"], maximize=hparams["maximize"], decoupled_weight_decay=decoupled_weight_decay,
    )


HYPERPARAMETERS = (
    lr(1e-3), betas((0.9, 0.999)), eps(1e-8), weight_decay(),
    flag("amsgrad", "keep the running maximum of the second moment"), MAXIMIZE,
)

VERIFY_GRID = flag_grid({"lr": 0.01}, amsgrad=[False, True], weight_decay=[0.0, 0.01], maximize=[False, True])

RULE = RuleDeclaration(
    name="adam",
    optimizer=Adam,
    reference=torch.optim.Adam,
    init=init,
    update=update,
    hyperparameters=HYPERPARAMETERS,
    verify_grid=VERIFY_GRID,
    summary="adaptive moments with bias correction (weight decay as an L2 term)",
)
