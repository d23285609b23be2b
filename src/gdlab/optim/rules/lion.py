r"""Lion (EvoLved Sign Momentum), a rule torch lacks.

Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"
(arXiv:2302.06675), Algorithm 2. Every entry moves by exactly the learning
rate (plus decoupled weight decay): the direction is the sign of an
interpolation between the momentum and the new gradient (beta1), and the
momentum itself is tracked with a second, slower rate (beta2).

There is no torch reference; the equations are the paper's, and the result
is bit-for-bit that of the PyPI package ``lion-pytorch`` (``Lion`` with
``use_triton=False`` and its default ``decoupled_weight_decay=False``), whose
operations this rule runs in the same order.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.optim.optimizer import _to_scalar

from gdlab.optim._base import DeclaredOptimizer, check_betas
from gdlab.optim.declaration import RuleDeclaration, Variant
from gdlab.optim.functional import Hyperparameter as Number
from gdlab.optim.functional import _per_parameter, _runs, _scaled_add_, _scaled_sub_
from gdlab.optim.rules import _common


def lion(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    *,
    lr: Number,
    beta1: Number,
    beta2: Number,
    weight_decay: Number,
    maximize: bool,
    momentum_first: bool = False,
) -> None:
    r"""Lion, as Algorithm 2 of Chen et al. 2023.

    For each parameter :math:`\theta` with gradient :math:`\nabla f(\theta)`
    and momentum :math:`m` (``exp_avg``, starting at 0; lr :math:`\eta`,
    weight decay :math:`\lambda`)::

        g <- -grad f(theta) if maximize else grad f(theta)
        c <- beta1 * m + (1 - beta1) * g
        theta <- theta - eta * (sign(c) + lambda * theta)
        m <- beta2 * m + (1 - beta2) * g

    The parameter update is computed as ``theta <- theta * (1 - eta *
    lambda)`` (skipped when lambda is 0: a factor of exactly 1) followed by
    ``theta <- theta - eta * sign(c)``, and ``c`` as ``m * beta1`` plus
    ``(1 - beta1) * g``: lion-pytorch's order. Complex parameters are
    updated as pairs of real numbers (``torch.view_as_real``, torch's
    convention): the sign is taken per real and imaginary part.
    ``momentum_first=True`` updates m before taking the sign of m itself (a
    known mistake, see the declaration's variants).
    """
    lr = _to_scalar(lr)
    if isinstance(lr, Tensor) and lr.dim() == 0:
        # A 1-element tensor lr (a class's, which a scheduler may rewrite in place) acts as
        # its value: the same steps as that number, lion-pytorch's included.
        lr = lr.item()
    for i, param in enumerate(params):
        grad = -grads[i] if maximize else grads[i]
        exp_avg = exp_avgs[i]
        if torch.is_complex(param):
            grad, param, exp_avg = torch.view_as_real(grad), torch.view_as_real(param), torch.view_as_real(exp_avg)
        param_lr, param_beta1, param_beta2, param_weight_decay = _per_parameter(
            param, lr, beta1, beta2, weight_decay
        )
        if _runs(param_weight_decay):
            param.mul_(1 - param_lr * param_weight_decay)
        if momentum_first:
            _scaled_add_(exp_avg.mul_(param_beta2), grad, 1 - param_beta2)
            direction = exp_avg.sign()
        else:
            direction = _scaled_add_(exp_avg.mul(param_beta1), grad, 1 - param_beta1).sign_()
        _scaled_sub_(param, direction, param_lr)
        if not momentum_first:
            _scaled_add_(exp_avg.mul_(param_beta2), grad, 1 - param_beta2)


class LionState(NamedTuple):
    """Lion's per-parameter state (the ``state_dict`` key lion-pytorch uses too); a list over params."""

    exp_avg: list[Tensor]


def init(params: list[Tensor], hparams: dict) -> LionState:
    """Fresh state for ``params``: zero momentum."""
    return LionState([torch.zeros_like(param, memory_format=torch.preserve_format) for param in params])


def update(
    params: list[Tensor],
    grads: list[Tensor],
    state: LionState,
    *,
    lr: Number,
    betas: tuple[Number, Number],
    weight_decay: Number,
    maximize: bool,
    **_unused,
) -> None:
    """One Lion step in place (:func:`lion`)."""
    beta1, beta2 = betas
    lion(
        params, grads, state.exp_avg,
        lr=lr, beta1=beta1, beta2=beta2, weight_decay=weight_decay, maximize=maximize,
    )


def update_momentum_first(params, grads, state: LionState, *, lr, betas, weight_decay, maximize, **_unused) -> None:
    """Lion with the momentum updated first and its own sign taken (beta1 never used)."""
    lion(
        params, grads, state.exp_avg,
        lr=lr, beta1=betas[0], beta2=betas[1], weight_decay=weight_decay, maximize=maximize,
        momentum_first=True,
    )


class Lion(DeclaredOptimizer):
    """Lion; the rule is :func:`lion`.

    ``state_dict`` layout: ``exp_avg`` per parameter, the same as
    lion-pytorch's ``Lion``, so checkpoints move between the two (a
    lion-pytorch group has no ``maximize`` key; loading fills in False).
    ``lr`` may be a 1-element tensor, as in torch's optimizers; it steps as
    its value would.
    """

    rule_init = staticmethod(init)
    rule_update = staticmethod(update)
    rule_state = LionState

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        maximize: bool = False,
    ):
        defaults = {"lr": lr, "betas": betas, "weight_decay": weight_decay, "maximize": maximize}
        super().__init__(params, defaults)

    @staticmethod
    def check_group(group: dict) -> None:
        # The wording of torch's optimizers, so messages read alike.
        lr = group["lr"]
        if isinstance(lr, Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr} (lr must be a number >= 0, e.g. 1e-4)")
        check_betas(group["betas"])
        if not 0.0 <= group["weight_decay"]:
            raise ValueError(
                f"Invalid weight_decay value: {group['weight_decay']} (weight_decay must be a number >= 0)"
            )

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("maximize", False)


RULE = RuleDeclaration(
    name="lion",
    optimizer=Lion,
    reference=None,
    reference_source=(
        'Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms" (arXiv:2302.06675), '
        "Algorithm 2; bit-for-bit equal to the PyPI package lion-pytorch (lion_pytorch.Lion with "
        "use_triton=False, decoupled_weight_decay=False)"
    ),
    reference_kwargs={},
    init=init,
    update=update,
    hyperparameters=(
        _common.lr(1e-4),
        _common.betas((0.9, 0.99)),
        _common.weight_decay(0.0),
        _common.MAXIMIZE,
    ),
    verify_grid=(
        {},
        {"weight_decay": 0.1},
        {"maximize": True, "betas": (0.95, 0.98)},
    ),
    stackable=True,
    variants=(
        Variant(
            name="momentum_before_sign",
            kind="bug",
            cause=(
                "the momentum is updated first and the step takes sign(m) with beta2; Lion takes "
                "sign(beta1 * m + (1 - beta1) * g) with the old m, and only then updates m with beta2"
            ),
            update=update_momentum_first,
        ),
    ),
    summary="Lion: sign of an interpolated momentum, every entry moves by lr; decoupled weight decay",
)
