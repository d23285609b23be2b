"""Adam (with amsgrad): ``torch.optim.Adam``."""

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from gdlab.optim import functional
from gdlab.optim.adam import Adam
from gdlab.optim.declaration import RuleDeclaration, Variant, flag_grid
from gdlab.optim.rules._common import (
    MAXIMIZE, betas, betas_of, eps, flag, hparam_used, lr, step_counters, weight_decay, with_hparams, zeros_like_each,
)


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


# --- Known mistakes and variants of Adam and AdamW -------------------------------------------------


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


def adam_variants(decoupled: bool) -> tuple[Variant, ...]:
    """The known mistakes and variants of Adam (``decoupled=False``) or AdamW (``decoupled=True``)."""
    plain = lambda h: not h["amsgrad"]  # noqa: E731  (the written-out forms have no AMSGrad)
    own_update = update if not decoupled else (
        lambda params, grads, state, **h: update(params, grads, state, decoupled_weight_decay=True, **h)
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
        Variant("weight_decay_wrong_sign", "bug", wrong_sign, applies=hparam_used("weight_decay"),
                **with_hparams(own_update, init, lambda h: {"weight_decay": -h["weight_decay"]})),
        Variant(
            "weight_decay_swapped", "bug", swapped, applies=hparam_used("weight_decay"),
            update=lambda params, grads, state, **h: update(
                params, grads, state, decoupled_weight_decay=not decoupled, **h),
        ),
        Variant("amsgrad_used", "bug", "AMSGrad is used (the running maximum of v), but amsgrad=False",
                applies=plain, **with_hparams(own_update, init, lambda h: {"amsgrad": True})),
        Variant("amsgrad_missing", "bug", "AMSGrad is missing: v is used, not its running maximum, but amsgrad=True",
                applies=lambda h: h["amsgrad"], **with_hparams(own_update, init, lambda h: {"amsgrad": False})),
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
    variants=adam_variants(decoupled=False),
    summary="adaptive moments with bias correction (weight decay as an L2 term)",
)
