"""Adagrad (with lr decay): ``torch.optim.Adagrad``."""

from typing import NamedTuple

import torch
from torch import Tensor

from gdlab.optim import functional
from gdlab.optim.adagrad import Adagrad
from gdlab.optim.declaration import Hyperparameter, RuleDeclaration, Variant, flag_grid
from gdlab.optim.rules._common import (
    MAXIMIZE, eps, filled_like_each, hparam_used, lr, step_counters, weight_decay, with_hparams,
)


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


# --- Known mistakes and variants -------------------------------------------------------------------


def _adagrad_eps_inside_sqrt(params, grads, state, *, lr, lr_decay, weight_decay, eps, maximize=False, **_):
    """sum += g^2,  p <- p - lr_t g / sqrt(sum + eps)."""
    for i, (param, grad) in enumerate(zip(params, grads)):
        state.step[i] += 1
        grad = (-grad if maximize else grad) + weight_decay * param
        decayed_lr = lr / (1 + (state.step[i].item() - 1) * lr_decay)
        state.sum[i].add_(grad * grad)
        param.sub_(decayed_lr * grad / (state.sum[i] + eps).sqrt())


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
    variants=(
        Variant(
            "weight_decay_wrong_sign", "bug",
            "weight decay has the wrong sign: the gradient gets - weight_decay*p instead of + weight_decay*p, "
            "so weights grow instead of shrinking",
            applies=hparam_used("weight_decay"),
            **with_hparams(update, init, lambda h: {"weight_decay": -h["weight_decay"]}),
        ),
        Variant(
            "lr_decay_ignored", "bug",
            "lr_decay is ignored: the learning rate stays lr instead of lr / (1 + (t - 1)*lr_decay)",
            applies=hparam_used("lr_decay"),
            **with_hparams(update, init, lambda h: {"lr_decay": 0.0}),
        ),
        Variant(
            "eps_inside_sqrt", "variant",
            "eps is inside the square root: p -= lr*g/sqrt(sum + eps), as d2l teaches Adagrad; torch adds it "
            "outside: g/(sqrt(sum) + eps)",
            condition="differs from torch's where the sum of squares is not far above eps (small gradients)",
            update=_adagrad_eps_inside_sqrt, init=init,
        ),
    ),
    summary="gradient scaled by the root of the summed squares",
)
