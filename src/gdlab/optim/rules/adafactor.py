r"""Adafactor: a second moment kept as row and column averages, and a relative step size.

Bit-for-bit ``torch.optim.Adafactor``'s single-tensor implementation (torch
2.13, ``foreach=False``, which is also torch's default for Adafactor). torch
departs from the paper (Shazeer & Stern, 2018) in two documented ways that
this rule follows: ``lr`` caps the relative step size and scales the
decoupled weight decay, and :math:`\epsilon_1` is applied to the variance
estimate rather than added to the squared gradient (the ``paper_epsilon``
variant below is the paper's way).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.optim.optimizer import _get_scalar_dtype, _to_scalar

from gdlab.optim._base import ScratchOptimizer, evaluate_closure
from gdlab.optim.declaration import Hyperparameter, RuleDeclaration, Variant
from gdlab.optim.rules._common import MAXIMIZE

DEFAULT_EPS = (None, 1e-3)


def adafactor(
    params: list[Tensor],
    grads: list[Tensor],
    row_vars: list[Tensor | None],
    col_vars: list[Tensor | None],
    variances: list[Tensor | None],
    steps: list[Tensor],
    *,
    lr: float | Tensor,
    beta2_decay: float,
    eps1: float | None,
    eps2: float,
    d: float,
    weight_decay: float,
    maximize: bool,
    paper_epsilon: bool = False,
) -> None:
    r"""Adafactor, as ``torch.optim.Adafactor`` (``foreach=False``).

    For each parameter :math:`\theta` with gradient :math:`\nabla f(\theta)`
    and step count :math:`t` (lr :math:`\gamma`, decay :math:`\tau \le 0`,
    clipping threshold :math:`d`, weight decay :math:`\lambda`)::

        G <- -grad f(theta) if maximize else grad f(theta)
        t <- t + 1
        beta2_t <- 1 - t^tau                              (so 1 - beta2_t = t^tau)
        rho_t <- min(gamma, 1 / sqrt(t))                  (relative step size)
        alpha_t <- max(eps2, RMS(theta)) * rho_t          (with theta before this step's decay)
        theta <- theta * (1 - gamma * lambda)             if lambda != 0
        if G has 2 or more dims (factored over the last two, of sizes n x m):
            R <- beta2_t * R + (1 - beta2_t) * mean_over_columns(G^2)     (row_var, n x 1)
            C <- beta2_t * C + (1 - beta2_t) * mean_over_rows(G^2)        (col_var, 1 x m)
            V <- R C / max(mean(R), eps1)                                  (rank one, n x m)
        else:
            V <- beta2_t * V + (1 - beta2_t) * G^2                         (variance)
        U <- G / sqrt(max(V, eps1^2))                                      (= G / max(sqrt V, eps1))
        theta <- theta - alpha_t / max(1, RMS(U) / d) * U                  (update clipping)

    ``eps1`` None is the machine epsilon of the first parameter's dtype,
    and then serves every parameter of the call, as in torch. Row and column
    means are squared norms over the row or column divided by its length
    (no n x m square is formed). ``row_vars``/``col_vars`` hold None for
    vectors and ``variances`` None for matrices. ``paper_epsilon=True``
    computes the ``paper_epsilon`` variant instead (see :data:`RULE`).
    """
    lr = _to_scalar(lr)
    for i, param in enumerate(params):
        grad = grads[i] if not maximize else -grads[i]
        if eps1 is None:
            eps1 = torch.finfo(param.dtype).eps
        steps[i] += 1
        step = steps[i].item()
        new_weight = step**beta2_decay  # 1 - beta2_t
        relative_step = min(lr, 1 / (step**0.5))
        alpha = max(eps2, param.norm(2).item() / (param.numel() ** 0.5)) * relative_step
        if weight_decay != 0:
            param.mul_(1 - lr * weight_decay)
        if paper_epsilon:
            variance_estimate = _paper_variance(grad, row_vars[i], col_vars[i], variances[i], new_weight, eps1)
            update = variance_estimate.rsqrt_()
        else:
            if grad.dim() > 1:
                row_var, col_var = row_vars[i], col_vars[i]
                row_var.lerp_(_mean_square(grad, dim=-1), new_weight)
                col_var.lerp_(_mean_square(grad, dim=-2), new_weight)
                variance_estimate = row_var @ col_var
                variance_estimate.div_(row_var.mean(dim=-2, keepdim=True).clamp_(min=eps1))
            else:
                variances[i].lerp_(grad * grad, new_weight)
                variance_estimate = variances[i].clone()
            # eps1 squared, because the square root follows.
            update = variance_estimate.clamp_(min=eps1 * eps1).rsqrt_()
        update.mul_(grad)
        clipping = max(1.0, update.norm(2).item() / ((update.numel() ** 0.5) * d))
        param.add_(update, alpha=-alpha / clipping)


def _mean_square(grad: Tensor, dim: int) -> Tensor:
    """(g * g).mean(dim, keepdim=True), computed as torch does: a squared norm over the length."""
    return torch.norm(grad, dim=dim, keepdim=True).square_().div_(grad.size(dim))


def _paper_variance(grad, row_var, col_var, variance, new_weight, eps1) -> Tensor:
    """The paper's (and other frameworks') estimate: eps1 added to G^2 before the averages, none after."""
    squared = grad * grad + eps1
    if grad.dim() > 1:
        row_var.lerp_(squared.mean(dim=-1, keepdim=True), new_weight)
        col_var.lerp_(squared.mean(dim=-2, keepdim=True), new_weight)
        return (row_var @ col_var).div_(row_var.mean(dim=-2, keepdim=True))
    variance.lerp_(squared, new_weight)
    return variance.clone()


class AdafactorState(NamedTuple):
    """torch's per-parameter state: ``step``, then ``row_var`` and ``col_var`` (parameters with
    2 or more dims) or ``variance`` (vectors and scalars); None where a parameter has no such key."""

    step: list[Tensor]
    row_var: list[Tensor | None]
    col_var: list[Tensor | None]
    variance: list[Tensor | None]


def _new_state(like: Tensor) -> dict[str, Tensor]:
    """One parameter's state, shaped like ``like`` (torch builds it from the gradient)."""
    state = {"step": torch.tensor(0.0, dtype=_get_scalar_dtype())}
    if like.dim() > 1:
        row_shape = list(like.shape)
        row_shape[-1] = 1
        state["row_var"] = like.new_zeros(row_shape)
        col_shape = list(like.shape)
        col_shape[-2] = 1
        state["col_var"] = like.new_zeros(col_shape)
    else:
        state["variance"] = torch.zeros_like(like, memory_format=torch.preserve_format)
    return state


def _as_lists(states: list[dict]) -> AdafactorState:
    """Per-parameter state dicts as one list per key (None where a parameter lacks the key)."""
    return AdafactorState(*([state.get(key) for state in states] for key in AdafactorState._fields))


def init(params: list[Tensor], hparams: dict | None = None) -> AdafactorState:
    return _as_lists([_new_state(param) for param in params])


def update(
    params: list[Tensor],
    grads: list[Tensor],
    state: AdafactorState,
    *,
    lr: float | Tensor = 1e-2,
    beta2_decay: float = -0.8,
    eps: tuple[float | None, float] = DEFAULT_EPS,
    d: float = 1.0,
    weight_decay: float = 0.0,
    maximize: bool = False,
    paper_epsilon: bool = False,
    **_unused,
) -> None:
    """One Adafactor step; the keywords and their defaults are the class's arguments."""
    eps1, eps2 = eps
    adafactor(
        params, grads, state.row_var, state.col_var, state.variance, state.step,
        lr=lr, beta2_decay=beta2_decay, eps1=eps1, eps2=eps2, d=d,
        weight_decay=weight_decay, maximize=maximize, paper_epsilon=paper_epsilon,
    )


def _update_with_paper_epsilon(params, grads, state: AdafactorState, **hparams) -> None:
    update(params, grads, state, **hparams, paper_epsilon=True)


class Adafactor(ScratchOptimizer):
    """Adafactor; the rule is :func:`adafactor`.

    Same arguments, validation messages, param groups and ``state_dict``
    layout (``step``, ``row_var``, ``col_var``, ``variance``) as
    ``torch.optim.Adafactor``, and bit-for-bit the parameters of its
    ``foreach=False`` implementation. ``foreach`` is accepted and kept in the
    param groups, and gdlab runs its one (single-tensor) rule whatever it
    says. Unlike torch, groups added later are checked too.
    """

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-2,
        beta2_decay: float = -0.8,
        eps: tuple[float | None, float] = DEFAULT_EPS,
        d: float = 1.0,
        weight_decay: float = 0.0,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "beta2_decay": beta2_decay,
            "eps": eps,
            "d": d,
            "weight_decay": weight_decay,
            "foreach": foreach,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    @staticmethod
    def check_group(group: dict) -> None:
        """torch's checks, in torch's order, with torch's messages."""
        lr, eps = group["lr"], group["eps"]
        if isinstance(lr, Tensor) and lr.numel() != 1:
            raise ValueError(f"Tensor lr must be 1-element, got shape {tuple(lr.shape)} (one lr per group)")
        if not 0.0 <= lr:
            raise ValueError(f"Learning rate should be >= 0 but is: {lr} (lr must be a number >= 0)")
        if not 0.0 >= group["beta2_decay"]:
            raise ValueError(
                f"beta2_decay should be <= 0 but is: {group['beta2_decay']} (e.g. beta2_decay=-0.8)"
            )
        if eps[0] is not None and not 0.0 <= eps[0]:
            raise ValueError(
                f"epsilon1 should be >= 0 but is: {eps[0]} (eps is the pair (epsilon1 or None, epsilon2))"
            )
        if not 0.0 <= eps[1]:
            raise ValueError(
                f"epsilon2 should be >= 0 but is: {eps[1]} (eps is the pair (epsilon1 or None, epsilon2))"
            )
        if not 1.0 <= group["d"]:
            raise ValueError(f"Clipping threshold d should be >= 1 but is: {group['d']} (e.g. d=1.0)")
        if not 0.0 <= group["weight_decay"]:
            raise ValueError(
                f"weight_decay should be >= 0 but is: {group['weight_decay']} (weight_decay must be a number >= 0)"
            )

    def __setstate__(self, state):
        super().__setstate__(state)
        # As torch's: only foreach is filled in; a group saved without maximize fails at the step there too.
        for group in self.param_groups:
            group.setdefault("foreach", None)
            for param in group["params"]:
                param_state = self.state.get(param, [])
                if len(param_state) != 0 and not torch.is_tensor(param_state["step"]):
                    param_state["step"] = torch.tensor(float(param_state["step"]), dtype=_get_scalar_dtype())

    def _init_group(self, group: dict) -> tuple[list[Tensor], list[Tensor], AdafactorState]:
        params, grads, states = [], [], []
        for param in group["params"]:
            if param.grad is None:
                continue
            if torch.is_complex(param):
                raise RuntimeError("Adafactor does not support complex parameters")
            if param.grad.is_sparse:
                raise RuntimeError("Adafactor does not support sparse gradients")
            params.append(param)
            grads.append(param.grad)
            state = self.state[param]
            if len(state) == 0:
                state.update(_new_state(param.grad))
            states.append(state)
        return params, grads, _as_lists(states)

    @torch.no_grad()
    def step(self, closure=None):
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            params, grads, state = self._init_group(group)
            eps1, eps2 = group["eps"]
            adafactor(
                params, grads, state.row_var, state.col_var, state.variance, state.step,
                lr=group["lr"],
                beta2_decay=group["beta2_decay"],
                eps1=eps1,
                eps2=eps2,
                d=group["d"],
                weight_decay=group["weight_decay"],
                maximize=group["maximize"],
            )
        return loss


RULE = RuleDeclaration(
    name="adafactor",
    optimizer=Adafactor,
    reference=torch.optim.Adafactor,
    reference_source="torch.optim._adafactor._single_tensor_adafactor (torch 2.13)",
    init=init,
    update=update,
    hyperparameters=(
        Hyperparameter("lr", 1e-2, log_uniform=True, label="Learning rate"),
        Hyperparameter("beta2_decay", -0.8, minimum=None, maximum=0.0, label="beta2_decay"),
        # eps, the pair (epsilon1 or None, epsilon2), has no Hyperparameter kind (a "pair" holds two
        # numbers): it stays a class argument (and an `update` keyword), not a study setting.
        Hyperparameter("d", 1.0, minimum=1.0, label="Clipping threshold d"),
        Hyperparameter("weight_decay", 0.0, log_uniform=True, label="weight_decay"),
        MAXIMIZE,
    ),
    verify_grid=(
        {"lr": 0.01},
        {"lr": 0.01, "weight_decay": 0.1},
        {"lr": 0.01, "weight_decay": 0.1, "maximize": True},
        {"lr": 0.01, "beta2_decay": -1.0, "d": 1.5},
    ),
    # Stacking along dim 0 would make every stacked bias a matrix (factored instead of a full
    # variance), and the relative step and the clipping read one norm per parameter.
    stackable=False,
    variants=(
        Variant(
            name="paper_epsilon",
            kind="variant",
            cause=(
                "epsilon1 is added to the squared gradient before the row and column averages "
                "(the paper's and other frameworks' way) instead of bounding the variance estimate "
                "from below as torch does"
            ),
            condition="close to the reference when epsilon1 is far below the squared gradients",
            update=_update_with_paper_epsilon,
        ),
    ),
    summary="Adafactor: factored (row x column) second moments, relative step size and update clipping",
)
