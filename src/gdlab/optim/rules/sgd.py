"""SGD with momentum, dampening, Nesterov and weight decay: ``torch.optim.SGD``."""

from typing import NamedTuple

import torch
from torch import Tensor

from gdlab.optim import functional
from gdlab.optim.declaration import Hyperparameter, RuleDeclaration, Variant, flag_grid
from gdlab.optim.rules._common import MAXIMIZE, flag, hparam_used, lr, weight_decay, with_hparams
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


# --- Known mistakes and variants -------------------------------------------------------------------


class _Velocities(NamedTuple):
    velocity: list[Tensor | None]


def _velocities(params, hparams) -> _Velocities:
    return _Velocities([None] * len(params))


def _sgd_moving_average(params, grads, state: _Velocities, *, lr, momentum, weight_decay, maximize, **_):
    """v_0 = 0,  v_t = m v_{t-1} + (1 - m)(g_t + wd p),  p <- p - lr v_t."""
    for i, (param, grad) in enumerate(zip(params, grads)):
        grad = (-grad if maximize else grad) + weight_decay * param
        previous = state.velocity[i] if state.velocity[i] is not None else torch.zeros_like(param)
        state.velocity[i] = momentum * previous + (1 - momentum) * grad
        param.sub_(lr * state.velocity[i])


def _sgd_lr_in_buffer(params, grads, state: _Velocities, *, lr, momentum, weight_decay, maximize, **_):
    """The classic heavy-ball form: v_0 = 0,  v_t = m v_{t-1} - lr (g_t + wd p),  p <- p + v_t."""
    for i, (param, grad) in enumerate(zip(params, grads)):
        grad = (-grad if maximize else grad) + weight_decay * param
        previous = state.velocity[i] if state.velocity[i] is not None else torch.zeros_like(param)
        state.velocity[i] = momentum * previous - lr * grad
        param.add_(state.velocity[i])


def _sgd_decay_outside_buffer(params, grads, state, *, lr, weight_decay, **hparams):
    """b_t = m b_{t-1} + g_t (no decay in it),  p <- p - lr (b_t + wd p)."""
    before = [param.clone() for param in params]
    update(params, grads, state, lr=lr, weight_decay=0.0, **hparams)
    for param, start in zip(params, before):
        param.sub_(lr * weight_decay * start)


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
    variants=(
        Variant(
            "weight_decay_wrong_sign", "bug",
            "weight decay has the wrong sign: the gradient gets - weight_decay*p instead of + weight_decay*p, "
            "so weights grow instead of shrinking",
            applies=hparam_used("weight_decay"),
            **with_hparams(update, init, lambda h: {"weight_decay": -h["weight_decay"]}),
        ),
        Variant(
            "dampened_momentum", "variant",
            "momentum is dampened: buf = m*buf + (1 - m)*g, as with dampening=momentum; torch's dampening here "
            "is 0 (buf = m*buf + g)",
            condition="equal to torch.optim.SGD with dampening set to the momentum (steps (1 - m) times "
                      "torch's undamped ones, once the buffer has filled)",
            applies=lambda h: h["momentum"] != 0 and h["dampening"] == 0 and not h["nesterov"],
            **with_hparams(update, init, lambda h: {"dampening": h["momentum"]}),
        ),
        Variant(
            "dampening_ignored", "bug",
            "dampening is ignored: buf = m*buf + g, where the dampening asked for gives buf = m*buf + "
            "(1 - dampening)*g",
            applies=lambda h: h["momentum"] != 0 and h["dampening"] != 0 and not h["nesterov"],
            **with_hparams(update, init, lambda h: {"dampening": 0.0}),
        ),
        Variant(
            "moving_average_from_zero", "variant",
            "momentum is a moving average started at zero (v = m*v + (1 - m)*g, v0 = 0); torch starts the "
            "buffer at the first gradient and adds gradients undamped (v = m*v + g)",
            condition="the form many lecture notes use; its steps are (1 - m) times smaller at first and never "
                      "equal torch's (dampening=m would need v1 = g)",
            applies=lambda h: h["momentum"] != 0 and h["dampening"] == 0,
            update=_sgd_moving_average, init=_velocities,
        ),
        Variant(
            "nesterov_used", "bug", "Nesterov momentum is used, but nesterov=False",
            applies=lambda h: h["momentum"] != 0 and h["dampening"] == 0 and not h["nesterov"],
            **with_hparams(update, init, lambda h: {"nesterov": True}),
        ),
        Variant(
            "nesterov_missing", "bug", "Nesterov momentum is missing: plain momentum is used, but nesterov=True",
            applies=lambda h: h["momentum"] != 0 and h["nesterov"],
            **with_hparams(update, init, lambda h: {"nesterov": False}),
        ),
        Variant(
            "weight_decay_outside_buffer", "variant",
            "weight decay is kept outside the momentum buffer: buf = m*buf + g, then p -= lr*(buf + "
            "weight_decay*p); torch adds weight_decay*p to g before the buffer",
            condition="differs from torch's, whose decay the momentum accumulates (about 1/(1 - m) times "
                      "stronger in the long run); equal when momentum or weight decay is 0",
            applies=lambda h: h["momentum"] != 0 and h["weight_decay"] != 0 and not h["nesterov"],
            update=_sgd_decay_outside_buffer, init=init,
        ),
        Variant(
            "lr_in_buffer", "variant",
            "the learning rate is inside the momentum buffer, the classic heavy-ball form: v = m*v - lr*g, "
            "p += v (v0 = 0); torch keeps it outside: buf = m*buf + g, p -= lr*buf",
            condition="equal to torch's while the learning rate is constant; once it changes (a scheduler), "
                      "the buffer still carries the old one",
            applies=lambda h: h["momentum"] != 0 and h["dampening"] == 0 and not h["nesterov"],
            update=_sgd_lr_in_buffer, init=_velocities,
        ),
    ),
    summary="stochastic gradient descent with momentum",
)
