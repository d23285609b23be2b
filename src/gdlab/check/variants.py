r"""Known mistakes and variants of SGD, Adam, AdamW, RMSprop and Adagrad, as declaration `Variant`\ s.

They belong in each rule's declaration (``gdlab/optim/rules/<name>.py``,
``variants=``); until they move there, `gdlab.check.diagnose` reads them from
`VARIANTS` after the declaration's own. Each ``update`` has the rule's
``update`` signature and state and computes what such code computes, so the
check can replay it on the user's own gradients; ``applies`` says for which
hyperparameters it can be told apart from the rule.

Where a variant is the rule with other hyperparameters, it calls the rule's
own update with them (`_with`); the formulations torch has no flag for are
written out, as a student would write them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import NamedTuple

import torch
from torch import Tensor

from gdlab.optim.declaration import Variant
from gdlab.optim.rules import adagrad as _adagrad
from gdlab.optim.rules import adam as _adam
from gdlab.optim.rules import rmsprop as _rmsprop
from gdlab.optim.rules import sgd as _sgd


def _with(update: Callable, init: Callable, change: Callable[[Mapping], dict]) -> dict:
    """``update`` and ``init`` of the rule run with ``change(hparams)`` over its hyperparameters."""

    def changed_update(params, grads, state, **hparams):
        update(params, grads, state, **{**hparams, **change(hparams)})

    def changed_init(params, hparams):
        return init(params, {**hparams, **change(hparams)})

    return {"update": changed_update, "init": changed_init}


def _uses(name: str) -> Callable[[Mapping], bool]:
    return lambda hparams: hparams[name] != 0


# --- SGD -------------------------------------------------------------------------------------------


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
    _sgd.update(params, grads, state, lr=lr, weight_decay=0.0, **hparams)
    for param, start in zip(params, before):
        param.sub_(lr * weight_decay * start)


SGD_VARIANTS = (
    Variant(
        "weight_decay_wrong_sign", "bug",
        "weight decay has the wrong sign: the gradient gets - weight_decay*p instead of + weight_decay*p, "
        "so weights grow instead of shrinking",
        applies=_uses("weight_decay"),
        **_with(_sgd.update, _sgd.init, lambda h: {"weight_decay": -h["weight_decay"]}),
    ),
    Variant(
        "dampened_momentum", "variant",
        "momentum is dampened: buf = m*buf + (1 - m)*g, as with dampening=momentum; torch's dampening here "
        "is 0 (buf = m*buf + g)",
        condition="equal to torch.optim.SGD with dampening set to the momentum (steps (1 - m) times "
                  "torch's undamped ones, once the buffer has filled)",
        applies=lambda h: h["momentum"] != 0 and h["dampening"] == 0 and not h["nesterov"],
        **_with(_sgd.update, _sgd.init, lambda h: {"dampening": h["momentum"]}),
    ),
    Variant(
        "dampening_ignored", "bug",
        "dampening is ignored: buf = m*buf + g, where the dampening asked for gives buf = m*buf + "
        "(1 - dampening)*g",
        applies=lambda h: h["momentum"] != 0 and h["dampening"] != 0 and not h["nesterov"],
        **_with(_sgd.update, _sgd.init, lambda h: {"dampening": 0.0}),
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
        **_with(_sgd.update, _sgd.init, lambda h: {"nesterov": True}),
    ),
    Variant(
        "nesterov_missing", "bug", "Nesterov momentum is missing: plain momentum is used, but nesterov=True",
        applies=lambda h: h["momentum"] != 0 and h["nesterov"],
        **_with(_sgd.update, _sgd.init, lambda h: {"nesterov": False}),
    ),
    Variant(
        "weight_decay_outside_buffer", "variant",
        "weight decay is kept outside the momentum buffer: buf = m*buf + g, then p -= lr*(buf + "
        "weight_decay*p); torch adds weight_decay*p to g before the buffer",
        condition="differs from torch's, whose decay the momentum accumulates (about 1/(1 - m) times "
                  "stronger in the long run); equal when momentum or weight decay is 0",
        applies=lambda h: h["momentum"] != 0 and h["weight_decay"] != 0 and not h["nesterov"],
        update=_sgd_decay_outside_buffer, init=_sgd.init,
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
)


# --- Adam and AdamW --------------------------------------------------------------------------------


class _Moments(NamedTuple):
    exp_avg: list[Tensor]
    exp_avg_sq: list[Tensor]
    step: list[int]


def _moments(params, hparams) -> _Moments:
    return _Moments([torch.zeros_like(p) for p in params], [torch.zeros_like(p) for p in params], [0] * len(params))


def _adam_form(form: str, decoupled: bool) -> Callable:
    """Adam as people write it, with one thing changed (``form``):

    - ``no_bias_correction``:   p <- p - lr m / (sqrt(v) + eps)
    - ``eps_before_correction``: p <- p - lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)
      (the Adam paper's section-2 form, TensorFlow's and Keras')
    - ``eps_inside_sqrt``:      p <- p - lr m_hat / sqrt(v_hat + eps)
    - ``moments_not_stored``:   m and v start from zero at every step (the step count is kept)
    """

    def update(params, grads, state: _Moments, *, lr, betas, eps, weight_decay, maximize=False, **_):
        beta1, beta2 = betas
        for i, (param, grad) in enumerate(zip(params, grads)):
            grad = -grad if maximize else grad
            if decoupled:
                param.mul_(1 - lr * weight_decay)
            else:
                grad = grad + weight_decay * param
            state.step[i] += 1
            t = state.step[i]
            first = torch.zeros_like(param) if form == "moments_not_stored" else state.exp_avg[i]
            second = torch.zeros_like(param) if form == "moments_not_stored" else state.exp_avg_sq[i]
            first = beta1 * first + (1 - beta1) * grad
            second = beta2 * second + (1 - beta2) * grad * grad
            if form != "moments_not_stored":
                state.exp_avg[i], state.exp_avg_sq[i] = first, second
            correction1, correction2 = 1 - beta1**t, 1 - beta2**t
            if form == "no_bias_correction":
                param.sub_(lr * first / (second.sqrt() + eps))
            elif form == "eps_before_correction":
                param.sub_(lr * math.sqrt(correction2) / correction1 * first / (second.sqrt() + eps))
            elif form == "eps_inside_sqrt":
                param.sub_(lr * (first / correction1) / (second / correction2 + eps).sqrt())
            else:
                param.sub_(lr * (first / correction1) / ((second / correction2).sqrt() + eps))

    return update


def _adam_variants(decoupled: bool) -> tuple[Variant, ...]:
    plain = lambda h: not h["amsgrad"]  # noqa: E731  (the written-out forms have no AMSGrad)
    own_update = _adam.update if not decoupled else (
        lambda params, grads, state, **h: _adam.update(params, grads, state, decoupled_weight_decay=True, **h)
    )
    wrong_sign = (
        "weight decay has the wrong sign: parameters are scaled by (1 + lr*weight_decay) instead of "
        "(1 - lr*weight_decay), so they grow" if decoupled else
        "weight decay has the wrong sign: the gradient gets - weight_decay*p instead of + weight_decay*p, "
        "so weights grow instead of shrinking"
    )
    swapped = (
        "weight decay is added to the gradient (Adam's L2) where AdamW decouples it: "
        "p <- p*(1 - lr*weight_decay)" if decoupled else
        "weight decay is decoupled (AdamW: p <- p*(1 - lr*weight_decay)) where Adam adds "
        "weight_decay*p to the gradient"
    )
    return (
        Variant("weight_decay_wrong_sign", "bug", wrong_sign, applies=_uses("weight_decay"),
                **_with(own_update, _adam.init, lambda h: {"weight_decay": -h["weight_decay"]})),
        Variant(
            "weight_decay_swapped", "bug", swapped, applies=_uses("weight_decay"),
            update=lambda params, grads, state, **h: _adam.update(
                params, grads, state, decoupled_weight_decay=not decoupled, **h),
        ),
        Variant("amsgrad_used", "bug", "AMSGrad is used (the running maximum of v), but amsgrad=False",
                applies=plain, **_with(own_update, _adam.init, lambda h: {"amsgrad": True})),
        Variant("amsgrad_missing", "bug", "AMSGrad is missing: v is used, not its running maximum, but amsgrad=True",
                applies=lambda h: h["amsgrad"], **_with(own_update, _adam.init, lambda h: {"amsgrad": False})),
        Variant(
            "no_bias_correction", "bug",
            "bias correction is missing: m and v are used without dividing by (1 - beta1^t) and (1 - beta2^t)",
            applies=plain, update=_adam_form("no_bias_correction", decoupled), init=_moments,
        ),
        Variant(
            "eps_before_bias_correction", "variant",
            "eps is added before the bias correction, Adam's older form: lr_t = lr*sqrt(1 - beta2^t)/"
            "(1 - beta1^t), p -= lr_t*m/(sqrt(v) + eps) (the Adam paper's section 2, TensorFlow, Keras); "
            "torch divides first: p -= lr*m_hat/(sqrt(v_hat) + eps)",
            condition="equal to torch's with eps scaled by sqrt(1 - beta2^t), so it differs only while "
                      "sqrt(v_hat) is not far above eps, that is, early and for small gradients",
            applies=plain, update=_adam_form("eps_before_correction", decoupled), init=_moments,
        ),
        Variant(
            "eps_inside_sqrt", "variant",
            "eps is inside the square root: p -= lr*m_hat/sqrt(v_hat + eps); torch adds it outside: "
            "sqrt(v_hat) + eps",
            condition="differs from torch's where v_hat is not far above eps (small gradients)",
            applies=plain, update=_adam_form("eps_inside_sqrt", decoupled), init=_moments,
        ),
        Variant(
            "moments_not_stored", "bug",
            "the moment estimates are never stored: m and v start from zero at every step while the step "
            "count goes on (a buffer rebound to a new tensor, m = beta1*m + ..., on a loop variable)",
            applies=plain, update=_adam_form("moments_not_stored", decoupled), init=_moments,
        ),
    )


# --- RMSprop ---------------------------------------------------------------------------------------


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


RMSPROP_VARIANTS = (
    Variant(
        "weight_decay_wrong_sign", "bug",
        "weight decay has the wrong sign: the gradient gets - weight_decay*p instead of + weight_decay*p, "
        "so weights grow instead of shrinking",
        applies=_uses("weight_decay"),
        **_with(_rmsprop.update, _rmsprop.init, lambda h: {"weight_decay": -h["weight_decay"]}),
    ),
    Variant("centered_used", "bug", "the centered variant is used (v - mean(g)^2), but centered=False",
            applies=lambda h: not h["centered"],
            **_with(_rmsprop.update, _rmsprop.init, lambda h: {"centered": True})),
    Variant("centered_missing", "bug", "the centered variant is missing (v is used as it is), but centered=True",
            applies=lambda h: h["centered"],
            **_with(_rmsprop.update, _rmsprop.init, lambda h: {"centered": False})),
    Variant(
        "eps_inside_sqrt", "variant",
        "eps is inside the square root: p -= lr*g/sqrt(v + eps), as Neuromatch and d2l teach RMSprop; "
        "torch adds it outside: g/(sqrt(v) + eps)",
        condition="differs from torch's where v is not far above eps (small gradients); with eps far below "
                  "v the two agree to rounding",
        update=_rmsprop_eps_inside_sqrt, init=_rmsprop.init,
    ),
)


# --- Adagrad ---------------------------------------------------------------------------------------


def _adagrad_eps_inside_sqrt(params, grads, state, *, lr, lr_decay, weight_decay, eps, maximize=False, **_):
    """sum += g^2,  p <- p - lr_t g / sqrt(sum + eps)."""
    for i, (param, grad) in enumerate(zip(params, grads)):
        state.step[i] += 1
        grad = (-grad if maximize else grad) + weight_decay * param
        decayed_lr = lr / (1 + (state.step[i].item() - 1) * lr_decay)
        state.sum[i].add_(grad * grad)
        param.sub_(decayed_lr * grad / (state.sum[i] + eps).sqrt())


ADAGRAD_VARIANTS = (
    Variant(
        "weight_decay_wrong_sign", "bug",
        "weight decay has the wrong sign: the gradient gets - weight_decay*p instead of + weight_decay*p, "
        "so weights grow instead of shrinking",
        applies=_uses("weight_decay"),
        **_with(_adagrad.update, _adagrad.init, lambda h: {"weight_decay": -h["weight_decay"]}),
    ),
    Variant(
        "lr_decay_ignored", "bug",
        "lr_decay is ignored: the learning rate stays lr instead of lr / (1 + (t - 1)*lr_decay)",
        applies=_uses("lr_decay"),
        **_with(_adagrad.update, _adagrad.init, lambda h: {"lr_decay": 0.0}),
    ),
    Variant(
        "eps_inside_sqrt", "variant",
        "eps is inside the square root: p -= lr*g/sqrt(sum + eps), as d2l teaches Adagrad; torch adds it "
        "outside: g/(sqrt(sum) + eps)",
        condition="differs from torch's where the sum of squares is not far above eps (small gradients)",
        update=_adagrad_eps_inside_sqrt, init=_adagrad.init,
    ),
)


VARIANTS: dict[str, tuple[Variant, ...]] = {
    "sgd": SGD_VARIANTS,
    "adam": _adam_variants(decoupled=False),
    "adamw": _adam_variants(decoupled=True),
    "rmsprop": RMSPROP_VARIANTS,
    "adagrad": ADAGRAD_VARIANTS,
}
