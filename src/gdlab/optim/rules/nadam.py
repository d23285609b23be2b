"""NAdam (Adam with Nesterov momentum, decoupled weight decay optional): ``torch.optim.NAdam``."""

import math
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
    scalar_dtype,
)
from gdlab.optim.declaration import Hyperparameter, RuleDeclaration, Variant
from gdlab.optim.functional import (
    _moving_average_,
    _moving_average_of_square_,
    _per_parameter,
    _real_views,
    _runs,
    _scaled_add,
    _scaled_addcdiv_,
    _stacked,
)
from gdlab.optim.rules import _common


def nadam(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    mu_products: list[Tensor],
    steps: list[Tensor],
    *,
    lr: float | Tensor,
    beta1: float | Tensor,
    beta2: float | Tensor,
    eps: float | Tensor,
    weight_decay: float | Tensor,
    momentum_decay: float | Tensor,
    decoupled_weight_decay: bool,
    maximize: bool,
) -> None:
    r"""NAdam, as ``torch.optim.NAdam``: Adam whose momentum looks one step ahead (Nesterov).

    For each parameter :math:`\theta` with gradient :math:`\nabla f(\theta)`,
    first moment :math:`m`, second moment :math:`v`, step count :math:`t` (all
    starting at 0) and momentum product :math:`\Pi` (starting at 1), with
    momentum decay :math:`\psi`::

        g <- -grad f(theta) if maximize else grad f(theta)
        t <- t + 1
        if lambda != 0:
            theta <- theta * (1 - gamma * lambda)   if decoupled_weight_decay
            g <- g + lambda * theta                 otherwise
        mu_t <- beta1 * (1 - 0.5 * 0.96^(t psi));  mu_{t+1} <- beta1 * (1 - 0.5 * 0.96^((t + 1) psi))
        Pi <- Pi * mu_t
        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g^2
        d <- sqrt(v / (1 - beta2^t)) + eps
        theta <- theta - gamma (1 - mu_t) / (1 - Pi) * g / d - gamma mu_{t+1} / (1 - Pi mu_{t+1}) * m / d

    :math:`\Pi` is torch's ``state["mu_product"]``: a 0-dim tensor of torch's
    scalar dtype (float32 unless the default dtype is float64), rounded to it
    at every step as torch rounds it. A complex parameter is stepped as the
    real tensor of its parts (``torch.view_as_real``), weight decay included.
    ``lr`` may be torch's tensor lr (one element, used in its own dtype) or,
    like every numeric hyperparameter, one value per stacked configuration
    (see :mod:`gdlab.optim.functional`); configurations that differ in beta1
    or momentum decay keep one product each (``init`` makes it K long).
    """
    lr = _to_scalar(lr)
    for i, param in enumerate(params):
        grad = -grads[i] if maximize else grads[i]
        exp_avg, exp_avg_sq, mu_product = exp_avgs[i], exp_avg_sqs[i], mu_products[i]
        if torch.is_complex(param):
            param, grad, exp_avg, exp_avg_sq = _real_views(param, grad, exp_avg, exp_avg_sq)
        lr, beta1, beta2, eps, weight_decay, momentum_decay = _per_parameter(
            param, lr, beta1, beta2, eps, weight_decay, momentum_decay
        )
        steps[i] += 1
        step = steps[i].item()
        bias_correction2 = 1 - beta2**step
        if _runs(weight_decay):
            if decoupled_weight_decay:
                param.mul_(1 - lr * weight_decay)
            else:
                grad = _scaled_add(grad, param, weight_decay)
        mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * momentum_decay)))
        mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * momentum_decay)))
        product = _multiply_(mu_product, mu, param)
        _moving_average_(exp_avg, grad, beta1)
        _moving_average_of_square_(exp_avg_sq, grad, beta2)
        denom = exp_avg_sq.div(bias_correction2).sqrt()
        product_next = product * mu_next
        denom.add_(eps)
        _scaled_addcdiv_(param, grad, denom, -lr * (1.0 - mu) / (1.0 - product))
        _scaled_addcdiv_(param, exp_avg, denom, (-lr * mu_next) / (1.0 - product_next))


def _multiply_(mu_product: Tensor, mu: float | Tensor, param: Tensor) -> float | Tensor:
    """mu_product <- mu_product * mu; returns the new product as the update reads it.

    As torch (``mu_product *= mu``, then ``mu_product.item()``) for a number or a
    0-dim tensor mu. K values of mu (stacked configurations) are cast to
    mu_product's dtype first, as torch casts a Python mu, and the product of K
    values is read as a (K, 1, ..., 1) tensor of the parameter's dtype.
    """
    if _stacked(mu):
        mu = mu.to(mu_product.dtype).reshape(-1)
    mu_product.mul_(mu)
    if mu_product.dim() == 0:
        return mu_product.item()
    return _per_parameter(param, mu_product.to(param.dtype))[0]


class NAdamState(NamedTuple):
    step: list[Tensor]
    mu_product: list[Tensor]
    exp_avg: list[Tensor]
    exp_avg_sq: list[Tensor]


def init(params: list[Tensor], hparams) -> NAdamState:
    beta1, _ = hparams["betas"]
    # mu_t depends on beta1 and momentum_decay: configurations that differ in them keep a product each.
    stacked = [value for value in (beta1, hparams["momentum_decay"]) if _stacked(value)]
    if stacked:
        mu_products = [torch.ones(stacked[0].numel(), dtype=scalar_dtype(), device=param.device) for param in params]
    else:
        mu_products = [torch.tensor(1.0, dtype=scalar_dtype()) for _ in params]
    return NAdamState(
        _common.step_counters(params), mu_products, _common.zeros_like_each(params), _common.zeros_like_each(params)
    )


def update(
    params, grads, state: NAdamState, *, lr, betas, eps, weight_decay, momentum_decay, decoupled_weight_decay,
    maximize, **_,
) -> None:
    beta1, beta2 = betas
    nadam(
        params, grads, state.exp_avg, state.exp_avg_sq, state.mu_product, state.step,
        lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay, momentum_decay=momentum_decay,
        decoupled_weight_decay=decoupled_weight_decay, maximize=maximize,
    )


def _update_with_constant_momentum(params, grads, state: NAdamState, **hparams) -> None:
    """NAdam with mu_t = beta1 at every step: 0.96 ** inf == 0.0, so torch's schedule with an
    infinite momentum decay gives exactly mu_t = mu_{t+1} = beta1."""
    update(params, grads, state, **{**hparams, "momentum_decay": math.inf})


class NAdam(DeclaredOptimizer):
    """NAdam; the rule is :func:`nadam`.

    torch's arguments, defaults, param-group keys and ``state_dict`` layout
    (``step``, ``mu_product``, ``exp_avg``, ``exp_avg_sq``), and bit-for-bit the
    parameters of ``torch.optim.NAdam(..., foreach=False)``, complex parameters
    and a tensor ``lr`` included. ``foreach`` is accepted and ignored (gdlab has
    one implementation); ``capturable`` and ``differentiable`` must stay False.
    """

    rule_init = staticmethod(init)
    rule_update = staticmethod(update)
    rule_state = NAdamState

    def __init__(
        self,
        params,
        lr: float | Tensor = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum_decay: float = 4e-3,
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
            "momentum_decay": momentum_decay,
            "decoupled_weight_decay": decoupled_weight_decay,
            "maximize": maximize,
            "foreach": foreach,
            "capturable": capturable,
            "differentiable": differentiable,
        }
        super().__init__(params, defaults)

    def __setstate__(self, state):
        # torch's: an older state_dict lacks these keys, and may hold step and mu_product as numbers.
        super().__setstate__(state)
        self.restore_group_defaults({
            "maximize": False, "foreach": None, "capturable": False, "differentiable": False,
            "decoupled_weight_decay": False,
        })
        for param_state in self.state.values():
            if param_state and not torch.is_tensor(param_state["mu_product"]):
                param_state["mu_product"] = torch.tensor(float(param_state["mu_product"]), dtype=scalar_dtype())

    @staticmethod
    def check_group(group: dict) -> None:
        check_non_negative("lr", group["lr"], "learning rate")
        check_non_negative("eps", group["eps"], "epsilon value")
        check_betas(group["betas"])
        check_non_negative("weight_decay", group["weight_decay"], "weight_decay value")
        check_non_negative("momentum_decay", group["momentum_decay"], "momentum_decay value")
        check_flag("decoupled_weight_decay", group["decoupled_weight_decay"])
        check_flag("maximize", group["maximize"])
        check_implementation(group)


RULE = RuleDeclaration(
    name="nadam",
    optimizer=NAdam,
    reference=torch.optim.NAdam,
    reference_source="torch.optim.NAdam (torch/optim/nadam.py, _single_tensor_nadam); Dozat 2016",
    init=init,
    update=update,
    hyperparameters=(
        _common.lr(2e-3),
        _common.betas((0.9, 0.999)),
        _common.eps(1e-8),
        _common.weight_decay(),
        Hyperparameter(
            "momentum_decay", 4e-3, minimum=0.0, log_uniform=True, label="momentum_decay value",
            doc="psi: how fast mu_t = beta1 * (1 - 0.5 * 0.96^(t psi)) rises to beta1",
        ),
        _common.flag("decoupled_weight_decay", "shrink the parameter (as AdamW) instead of adding an L2 term"),
        _common.MAXIMIZE,
    ),
    verify_grid=(
        {"lr": 0.01},
        {"lr": 0.01, "weight_decay": 0.01, "momentum_decay": 6e-3},
        {"lr": 0.01, "weight_decay": 0.01, "decoupled_weight_decay": True, "maximize": True},
        {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6},
    ),
    stackable=True,
    variants=(
        Variant(
            name="constant momentum",
            kind="variant",
            cause=(
                "the momentum is beta1 at every step (mu_t = beta1, as optax's and Keras's NAdam), "
                "without torch's warm-up mu_t = beta1 * (1 - 0.5 * 0.96^(t * momentum_decay))"
            ),
            update=_update_with_constant_momentum,
            condition="the limit of torch's rule as momentum_decay grows without bound",
        ),
    ),
    summary="Adam with Nesterov momentum and a momentum warm-up (momentum_decay)",
)
