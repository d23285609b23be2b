r"""ASGD (averaged stochastic gradient descent), bit-for-bit ``torch.optim.ASGD`` (``foreach=False``).

Polyak and Juditsky's averaging: SGD with a decaying step size, plus a running
average ``ax`` of the iterates that starts after ``t0`` steps. The average is
the answer the method is known for; the parameters themselves follow plain
(decayed) SGD.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.optim.optimizer import _get_scalar_dtype, _to_scalar

from gdlab.optim._base import DeclaredOptimizer, check_implementation
from gdlab.optim.declaration import Hyperparameter, RuleDeclaration
from gdlab.optim.functional import Hyperparameter as Number
from gdlab.optim.functional import _per_parameter, _with_l2_penalty
from gdlab.optim.rules import _common


def asgd(
    params: list[Tensor],
    grads: list[Tensor],
    axs: list[Tensor],
    mus: list[Tensor],
    etas: list[Tensor],
    steps: list[Tensor],
    *,
    lambd: Number,
    lr: Number,
    t0: Number,
    alpha: Number,
    weight_decay: Number,
    maximize: bool,
) -> None:
    r"""Averaged SGD, as ``torch.optim.ASGD``.

    For each parameter :math:`\theta` with gradient :math:`\nabla f(\theta)`,
    step size :math:`\eta` (starting at :math:`\gamma`, the lr), averaging
    weight :math:`\mu` (starting at 1), average :math:`\bar\theta` (``ax``,
    starting at 0) and step count :math:`t` (starting at 0); ``lambd`` is the
    decay term, ``weight_decay`` an L2 penalty::

        g <- -grad f(theta) if maximize else grad f(theta)
        t <- t + 1
        g <- g + weight_decay * theta              if weight_decay != 0
        theta <- theta * (1 - lambd * eta)         (decay term)
        theta <- theta - eta * g
        ax <- ax + mu * (theta - ax)   if mu != 1   else   ax <- theta
        eta <- gamma / (1 + lambd * gamma * t) ^ alpha
        mu <- 1 / max(1, t - t0)

    so ``eta`` and ``mu`` used at step t were computed at the end of step
    t - 1. ``etas``, ``mus`` and ``steps`` are 0-dim tensors (torch's
    ``state["eta"]``, ``state["mu"]``, ``state["step"]``); ``eta`` and ``mu``
    are stored in their own dtype (float32 unless the default dtype is
    float64) and read back as Python numbers, as torch does. Complex
    parameters are updated as pairs of real numbers (``torch.view_as_real``).

    Stacked configurations (see :mod:`gdlab.optim.functional`): with tensor
    hyperparameters ``eta`` and ``mu`` become tensors of one value per
    configuration (an entry of ``etas``/``mus`` is replaced by a new tensor
    when its shape changes); the step count stays shared.
    """
    lr = _to_scalar(lr)
    for i, param in enumerate(params):
        grad = -grads[i] if maximize else grads[i]
        ax = axs[i]
        if torch.is_complex(param):
            grad, param, ax = torch.view_as_real(grad), torch.view_as_real(param), torch.view_as_real(ax)
        steps[i] += 1
        param_lambd, param_weight_decay = _per_parameter(param, lambd, weight_decay)
        grad = _with_l2_penalty(grad, param, param_weight_decay)

        eta = etas[i]
        if eta.dim() == 0:
            eta_value = eta.item()
            param.mul_(1 - param_lambd * eta_value)
            param.add_(grad, alpha=-eta_value)
        else:
            (eta_value,) = _per_parameter(param, eta.to(param.dtype))
            param.mul_(1 - param_lambd * eta_value)
            param.addcmul_(grad, eta_value, value=-1)

        mu = mus[i]
        if mu.dim() == 0:
            if mu.item() != 1:
                ax.add_(param.sub(ax).mul_(mu))
            else:
                ax.copy_(param)
        else:
            (mu_value,) = _per_parameter(param, mu.to(param.dtype))
            ax.copy_(torch.where(mu_value == 1, param, ax + (param - ax) * mu_value))

        step = steps[i].item()
        _store(etas, i, _flat(lr) / ((1 + _flat(lambd) * _flat(lr) * step) ** _flat(alpha)))
        if isinstance(t0, Tensor):
            _store(mus, i, 1 / torch.clamp(step - _flat(t0), min=1))
        else:
            _store(mus, i, 1 / max(1, step - t0))


def _flat(value: Number) -> Number:
    """A tensor hyperparameter of shape (K,) or (K, 1, ..., 1) as (K,), for the per-configuration scalars."""
    return value.reshape(-1) if isinstance(value, Tensor) and value.dim() > 0 else value


def _store(values: list[Tensor], index: int, new_value: Number) -> None:
    """values[index] <- new_value in values[index]'s dtype: in place, as torch, when the shape
    allows; a new tensor when stacked hyperparameters give one value per configuration."""
    new_value = torch.as_tensor(new_value)
    if new_value.shape == values[index].shape:
        values[index].copy_(new_value)
    else:
        values[index] = new_value.to(values[index].dtype)


class ASGDState(NamedTuple):
    """ASGD's per-parameter state, under torch's ``state_dict`` keys; each a list over params."""

    step: list[Tensor]
    eta: list[Tensor]
    mu: list[Tensor]
    ax: list[Tensor]


def _initial_state(param: Tensor, lr: Number) -> dict[str, Tensor]:
    """torch's state for a parameter's first step (``ASGD._init_group``)."""
    return {
        "step": torch.zeros((), device=param.device, dtype=_get_scalar_dtype()),
        "eta": torch.as_tensor(_to_scalar(lr), device=param.device, dtype=_get_scalar_dtype()).clone().detach(),
        "mu": torch.ones((), device=param.device, dtype=_get_scalar_dtype()),
        "ax": torch.zeros_like(param, memory_format=torch.preserve_format),
    }


def init(params: list[Tensor], hparams: dict) -> ASGDState:
    """Fresh state for ``params`` (``eta`` starts at ``hparams["lr"]``)."""
    states = [_initial_state(param, hparams["lr"]) for param in params]
    return ASGDState(*([state[key] for state in states] for key in ASGDState._fields))


def update(
    params: list[Tensor],
    grads: list[Tensor],
    state: ASGDState,
    *,
    lr: Number,
    lambd: Number,
    alpha: Number,
    t0: Number,
    weight_decay: Number,
    maximize: bool,
    **_implementation_flags,
) -> None:
    """One ASGD step in place (:func:`asgd`); foreach/capturable/differentiable are not the rule's."""
    asgd(
        params, grads, state.ax, state.mu, state.eta, state.step,
        lambd=lambd, lr=lr, t0=t0, alpha=alpha, weight_decay=weight_decay, maximize=maximize,
    )


class ASGD(DeclaredOptimizer):
    """Averaged SGD; the rule is :func:`asgd`.

    Same arguments, param groups and ``state_dict`` layout (``step``, ``eta``,
    ``mu``, ``ax``) as ``torch.optim.ASGD``, and bit-for-bit the same
    parameters and averages as its ``foreach=False`` implementation.
    ``foreach`` is accepted and ignored; ``capturable=True`` and
    ``differentiable=True`` raise ValueError.
    """

    rule_init = staticmethod(init)
    rule_update = staticmethod(update)
    rule_state = ASGDState

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-2,
        lambd: float = 1e-4,
        alpha: float = 0.75,
        t0: float = 1e6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
    ):
        defaults = {
            "lr": lr,
            "lambd": lambd,
            "alpha": alpha,
            "t0": t0,
            "weight_decay": weight_decay,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "capturable": capturable,
        }
        super().__init__(params, defaults)

    @staticmethod
    def check_group(group: dict) -> None:
        # torch's checks, types and wording (torch.optim.ASGD.__init__).
        lr = group["lr"]
        if isinstance(lr, Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= group["weight_decay"]:
            raise ValueError(f"Invalid weight_decay value: {group['weight_decay']}")
        check_implementation(group)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("foreach", None)
            group.setdefault("maximize", False)
            group.setdefault("differentiable", False)
            group.setdefault("capturable", False)
            for param in group["params"]:
                param_state = self.state.get(param, {})
                if len(param_state) != 0:
                    # Older checkpoints kept these as Python numbers.
                    for key in ("step", "eta", "mu"):
                        if not torch.is_tensor(param_state[key]):
                            param_state[key] = torch.tensor(
                                float(param_state[key]), dtype=_get_scalar_dtype(), device=param.device
                            )


RULE = RuleDeclaration(
    name="asgd",
    optimizer=ASGD,
    reference=torch.optim.ASGD,
    reference_source="torch.optim.ASGD (torch/optim/asgd.py, _single_tensor_asgd); Polyak & Juditsky 1992",
    init=init,
    update=update,
    hyperparameters=(
        _common.lr(1e-2),
        Hyperparameter("lambd", 1e-4, log_uniform=True, label="lambd", doc="decay term: theta shrinks by lambd * eta"),
        Hyperparameter("alpha", 0.75, label="alpha", doc="power of the step-size decay"),
        Hyperparameter("t0", 1e6, log_uniform=True, label="t0", doc="step after which averaging starts"),
        _common.weight_decay(0),
        _common.MAXIMIZE,
    ),
    verify_grid=(
        {},
        {"t0": 5.0},
        {"lambd": 0.1, "weight_decay": 0.1},
        {"maximize": True, "t0": 5.0},
    ),
    # Every number may be a tensor of K values: eta and mu then hold one value per configuration.
    stackable=True,
    summary="Averaged SGD: decaying step size, running average of the iterates after t0 steps",
)
