"""RAdam (Adam with a rectified adaptive learning rate, decoupled weight decay optional): ``torch.optim.RAdam``."""

from typing import NamedTuple

import torch
from torch import Tensor
from torch.optim.optimizer import _to_scalar

from gdlab.optim._base import (
    DeclaredOptimizer,
    check_betas,
    check_flag,
    check_implementation,
    check_non_negative,
)
from gdlab.optim.declaration import RuleDeclaration
from gdlab.optim.functional import (
    _moving_average_,
    _moving_average_of_square_,
    _per_parameter,
    _real_views,
    _runs,
    _scaled_add,
    _stacked,
)
from gdlab.optim.rules import _common


def radam(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[Tensor],
    *,
    lr: float | Tensor,
    beta1: float | Tensor,
    beta2: float | Tensor,
    eps: float | Tensor,
    weight_decay: float | Tensor,
    decoupled_weight_decay: bool,
    maximize: bool,
) -> None:
    r"""RAdam, as ``torch.optim.RAdam``: Adam that moves with plain momentum until the variance
    of its adaptive learning rate is tractable, then rectifies that variance.

    For each parameter :math:`\theta` with gradient :math:`\nabla f(\theta)`,
    first moment :math:`m`, second moment :math:`v` and step count :math:`t`
    (all starting at 0)::

        g <- -grad f(theta) if maximize else grad f(theta)
        t <- t + 1
        if lambda != 0:
            theta <- theta * (1 - gamma * lambda)   if decoupled_weight_decay
            g <- g + lambda * theta                 otherwise
        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g^2
        m_hat <- m / (1 - beta1^t)
        rho_inf <- 2 / (1 - beta2) - 1
        rho_t <- rho_inf - 2 t beta2^t / (1 - beta2^t)
        if rho_t > 5:
            l <- sqrt(1 - beta2^t) / (sqrt(v) + eps)
            r <- sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
            theta <- theta - gamma * m_hat * l * r
        else:
            theta <- theta - gamma * m_hat

    A complex parameter is stepped as the real tensor of its parts
    (``torch.view_as_real``), weight decay included. ``lr`` may be torch's
    tensor lr (one element, used in its own dtype) or, like every numeric
    hyperparameter, one value per stacked configuration (see
    :mod:`gdlab.optim.functional`); configurations that differ in beta2 may
    leave the unrectified phase at different steps, and each takes its own
    branch.
    """
    lr = _to_scalar(lr)
    for i, param in enumerate(params):
        grad = -grads[i] if maximize else grads[i]
        exp_avg, exp_avg_sq = exp_avgs[i], exp_avg_sqs[i]
        if torch.is_complex(param):
            param, grad, exp_avg, exp_avg_sq = _real_views(param, grad, exp_avg, exp_avg_sq)
        lr, beta1, beta2, eps, weight_decay = _per_parameter(param, lr, beta1, beta2, eps, weight_decay)
        steps[i] += 1
        step = steps[i].item()
        if _runs(weight_decay):
            if decoupled_weight_decay:
                param.mul_(1 - lr * weight_decay)
            else:
                grad = _scaled_add(grad, param, weight_decay)
        _moving_average_(exp_avg, grad, beta1)
        _moving_average_of_square_(exp_avg_sq, grad, beta2)
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        bias_corrected_exp_avg = exp_avg / bias_correction1
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * step * (beta2**step) / bias_correction2
        if _stacked(rho_t):  # one rho_t per stacked configuration (different beta2)
            rectified = (
                bias_corrected_exp_avg * lr * _adaptive_lr(exp_avg_sq, bias_correction2, eps)
                * _rectification(rho_t, rho_inf)
            )
            param.add_(torch.where(rho_t > 5.0, rectified, bias_corrected_exp_avg * lr), alpha=-1.0)
        elif rho_t > 5.0:
            param.add_(
                bias_corrected_exp_avg * lr * _adaptive_lr(exp_avg_sq, bias_correction2, eps)
                * _rectification(rho_t, rho_inf),
                alpha=-1.0,
            )
        else:
            param.add_(bias_corrected_exp_avg * lr, alpha=-1.0)


def _adaptive_lr(exp_avg_sq: Tensor, bias_correction2: float | Tensor, eps: float | Tensor) -> Tensor:
    """l = sqrt(1 - beta2^t) / (sqrt(v) + eps)."""
    return (bias_correction2**0.5) / exp_avg_sq.sqrt().add_(eps)


def _rectification(rho_t: float | Tensor, rho_inf: float | Tensor) -> float | Tensor:
    """r, the factor that makes the adaptive learning rate's variance what it would be at rho_inf."""
    return ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5


class RAdamState(NamedTuple):
    step: list[Tensor]
    exp_avg: list[Tensor]
    exp_avg_sq: list[Tensor]


def init(params: list[Tensor], hparams) -> RAdamState:
    return RAdamState(_common.step_counters(params), _common.zeros_like_each(params), _common.zeros_like_each(params))


def update(
    params, grads, state: RAdamState, *, lr, betas, eps, weight_decay, decoupled_weight_decay, maximize, **_
) -> None:
    beta1, beta2 = betas
    radam(
        params, grads, state.exp_avg, state.exp_avg_sq, state.step,
        lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
        decoupled_weight_decay=decoupled_weight_decay, maximize=maximize,
    )


class RAdam(DeclaredOptimizer):
    """RAdam; the rule is :func:`radam`.

    torch's arguments, defaults, param-group keys and ``state_dict`` layout
    (``step``, ``exp_avg``, ``exp_avg_sq``), and bit-for-bit the parameters of
    ``torch.optim.RAdam(..., foreach=False)``, complex parameters and a tensor
    ``lr`` included. ``foreach`` is accepted and ignored (gdlab has one
    implementation); ``capturable`` and ``differentiable`` must stay False.
    """

    rule_init = staticmethod(init)
    rule_update = staticmethod(update)
    rule_state = RAdamState

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
    ):
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "maximize": maximize,
            "foreach": foreach,
            "capturable": capturable,
            "decoupled_weight_decay": decoupled_weight_decay,
            "differentiable": differentiable,
        }
        super().__init__(params, defaults)

    def __setstate__(self, state):
        # torch's: an older state_dict may lack these group keys and hold its steps as numbers.
        super().__setstate__(state)
        self.restore_group_defaults({
            "foreach": None, "maximize": False, "differentiable": False, "decoupled_weight_decay": False,
            "capturable": False,
        })

    @staticmethod
    def check_group(group: dict) -> None:
        check_non_negative("lr", group["lr"], "learning rate")
        check_non_negative("eps", group["eps"], "epsilon value")
        check_betas(group["betas"])
        check_non_negative("weight_decay", group["weight_decay"], "weight_decay value")
        check_flag("decoupled_weight_decay", group["decoupled_weight_decay"])
        check_flag("maximize", group["maximize"])
        check_implementation(group)


RULE = RuleDeclaration(
    name="radam",
    optimizer=RAdam,
    reference=torch.optim.RAdam,
    reference_source="torch.optim.RAdam (torch/optim/radam.py, _single_tensor_radam); Liu et al. 2020",
    init=init,
    update=update,
    hyperparameters=(
        _common.lr(1e-3),
        _common.betas((0.9, 0.999)),
        _common.eps(1e-8),
        _common.weight_decay(),
        _common.flag("decoupled_weight_decay", "shrink the parameter (as AdamW) instead of adding an L2 term"),
        _common.MAXIMIZE,
    ),
    verify_grid=(
        {"lr": 0.01},
        {"lr": 0.01, "weight_decay": 0.01},
        {"lr": 0.01, "weight_decay": 0.01, "decoupled_weight_decay": True, "maximize": True},
        {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6},
    ),
    stackable=True,
    summary="Adam with the variance of its adaptive learning rate rectified (plain momentum at first)",
)
