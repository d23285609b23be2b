"""Adamax (Adam with the infinity norm): ``torch.optim.Adamax``."""

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
from gdlab.optim.declaration import RuleDeclaration, Variant
from gdlab.optim.functional import (
    _moving_average_,
    _per_parameter,
    _real_views,
    _scaled_addcdiv_,
    _with_l2_penalty,
)
from gdlab.optim.rules import _common


def adamax(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_infs: list[Tensor],
    steps: list[Tensor],
    *,
    lr: float | Tensor,
    beta1: float | Tensor,
    beta2: float | Tensor,
    eps: float | Tensor,
    weight_decay: float | Tensor,
    maximize: bool,
) -> None:
    r"""Adamax, as ``torch.optim.Adamax``: Adam with an infinity norm in place of the second moment.

    For each parameter :math:`\theta` with gradient :math:`\nabla f(\theta)`,
    first moment :math:`m`, infinity norm :math:`u` and step count :math:`t`
    (all starting at 0)::

        g <- -grad f(theta) if maximize else grad f(theta)
        t <- t + 1
        g <- g + lambda * theta                 if lambda != 0
        m <- beta1 * m + (1 - beta1) * g
        u <- max(beta2 * u, |g| + eps)
        theta <- theta - gamma / (1 - beta1^t) * m / u

    A complex parameter is stepped as the real tensor of its real and
    imaginary parts (``torch.view_as_real``) once the weight decay is added, so
    ``|g|`` is taken part by part, as torch does. ``lr`` may be torch's tensor
    lr (one element, used in its own dtype as torch uses it) or, like every
    numeric hyperparameter, one value per stacked configuration (see
    :mod:`gdlab.optim.functional`).
    """
    lr = _to_scalar(lr)
    for i, param in enumerate(params):
        grad = -grads[i] if maximize else grads[i]
        exp_avg, exp_inf = exp_avgs[i], exp_infs[i]
        steps[i] += 1
        (weight_decay,) = _per_parameter(param, weight_decay)
        grad = _with_l2_penalty(grad, param, weight_decay)
        if torch.is_complex(param):
            param, grad, exp_avg, exp_inf = _real_views(param, grad, exp_avg, exp_inf)
        lr, beta1, beta2, eps = _per_parameter(param, lr, beta1, beta2, eps)
        _moving_average_(exp_avg, grad, beta1)
        torch.maximum(exp_inf.mul_(beta2), grad.abs().add_(eps), out=exp_inf)
        step_size = lr / (1 - beta1 ** steps[i].item())
        _scaled_addcdiv_(param, exp_avg, exp_inf, -step_size)


class AdamaxState(NamedTuple):
    step: list[Tensor]
    exp_avg: list[Tensor]
    exp_inf: list[Tensor]


def init(params: list[Tensor], hparams) -> AdamaxState:
    return AdamaxState(_common.step_counters(params), _common.zeros_like_each(params), _common.zeros_like_each(params))


def update(params, grads, state: AdamaxState, *, lr, betas, eps, weight_decay, maximize, **_) -> None:
    beta1, beta2 = betas
    adamax(
        params, grads, state.exp_avg, state.exp_inf, state.step,
        lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay, maximize=maximize,
    )


def _update_with_eps_outside_the_max(params, grads, state: AdamaxState, *, lr, betas, eps, weight_decay, maximize, **_):
    """Keras's Adamax: u <- max(beta2 * u, |g|), theta <- theta - gamma / (1 - beta1^t) * m / (u + eps)."""
    beta1, beta2 = betas
    for param, grad, exp_avg, exp_inf, step in zip(params, grads, state.exp_avg, state.exp_inf, state.step):
        grad = -grad if maximize else grad
        step += 1
        if weight_decay != 0:
            grad = grad.add(param, alpha=weight_decay)
        exp_avg.lerp_(grad, 1 - beta1)
        torch.maximum(exp_inf.mul_(beta2), grad.abs(), out=exp_inf)
        param.addcdiv_(exp_avg, exp_inf.add(eps), value=-lr / (1 - beta1 ** step.item()))


class Adamax(DeclaredOptimizer):
    """Adamax; the rule is :func:`adamax`.

    torch's arguments, defaults, param-group keys and ``state_dict`` layout
    (``step``, ``exp_avg``, ``exp_inf``), and bit-for-bit the parameters of
    ``torch.optim.Adamax(..., foreach=False)``, complex parameters and a
    tensor ``lr`` included. ``foreach`` is accepted and ignored (gdlab has one
    implementation); ``capturable`` and ``differentiable`` must stay False.
    """

    rule_init = staticmethod(init)
    rule_update = staticmethod(update)
    rule_state = AdamaxState

    def __init__(
        self,
        params,
        lr: float | Tensor = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
    ):
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "capturable": capturable,
        }
        super().__init__(params, defaults)

    def __setstate__(self, state):
        # torch's: an older state_dict may lack these group keys and hold its steps as numbers.
        super().__setstate__(state)
        self.restore_group_defaults({"foreach": None, "maximize": False, "differentiable": False, "capturable": False})

    @staticmethod
    def check_group(group: dict) -> None:
        check_non_negative("lr", group["lr"], "learning rate")
        check_non_negative("eps", group["eps"], "epsilon value")
        check_betas(group["betas"])
        check_non_negative("weight_decay", group["weight_decay"], "weight_decay value")
        check_flag("maximize", group["maximize"])
        check_implementation(group)


RULE = RuleDeclaration(
    name="adamax",
    optimizer=Adamax,
    reference=torch.optim.Adamax,
    reference_source="torch.optim.Adamax (torch/optim/adamax.py, _single_tensor_adamax); Kingma & Ba 2015, 7.1",
    init=init,
    update=update,
    hyperparameters=(
        _common.lr(2e-3), _common.betas((0.9, 0.999)), _common.eps(1e-8), _common.weight_decay(), _common.MAXIMIZE,
    ),
    verify_grid=(
        {"lr": 0.01},
        {"lr": 0.01, "weight_decay": 0.01, "maximize": True},
        {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6},
    ),
    stackable=True,
    variants=(
        Variant(
            name="eps outside the max",
            kind="variant",
            cause=(
                "eps is added to the denominator instead of inside the maximum: u <- max(beta2 * u, |g|), "
                "theta <- theta - lr_t * m / (u + eps), as Keras writes Adamax; torch takes "
                "u <- max(beta2 * u, |g| + eps) and divides by u"
            ),
            update=_update_with_eps_outside_the_max,
            condition="equal to torch's when eps = 0",
            applies=lambda hparams: hparams["eps"] != 0,
        ),
    ),
    summary="Adam with the infinity norm of past gradients in place of the second moment",
)
