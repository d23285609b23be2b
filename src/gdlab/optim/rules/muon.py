r"""Muon: momentum orthogonalized by a Newton–Schulz iteration, for 2-D parameters.

Bit-for-bit ``torch.optim.Muon`` (torch 2.13, which has only a single-tensor
implementation). The orthogonalization runs in bfloat16, as torch's does, so
its result is the same rounding of the same operations, not a float32/64
computation: a from-scratch rule that orthogonalizes in the parameter's dtype
is a different (and slower) rule, close to this one only to bfloat16
precision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor
from torch.optim.optimizer import _to_scalar

from gdlab.optim._base import ScratchOptimizer, evaluate_closure
from gdlab.optim.declaration import Hyperparameter, RuleDeclaration, Variant

# Keller Jordan's quintic coefficients (a, b, c), torch's defaults.
DEFAULT_NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
DEFAULT_NS_STEPS = 5
DEFAULT_EPS = 1e-7
ADJUST_LR_FNS = (None, "original", "match_rms_adamw")


def muon(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor],
    *,
    lr: float | Tensor,
    weight_decay: float,
    momentum: float,
    nesterov: bool,
    ns_coefficients: Sequence[float],
    ns_steps: int,
    eps: float,
    adjust_lr_fn: str | None,
    adjust_lr: bool = True,
) -> None:
    r"""Muon, as ``torch.optim.Muon``.

    For each matrix parameter :math:`\theta` of shape (A, B) with gradient
    :math:`G`, momentum buffer :math:`M` (starting at 0), lr :math:`\gamma`,
    weight decay :math:`\lambda`, momentum :math:`\mu`::

        M <- M + (1 - mu) * (G - M)                  (M.lerp_(G, 1 - mu): an average, not a sum)
        U <- G + mu * (M - G)  if nesterov  else  M
        O <- NS_k^{(a,b,c)}(U; eps)                  (see newton_schulz, in bfloat16)
        theta <- theta * (1 - gamma * lambda)        (decoupled weight decay, with the unadjusted lr)
        theta <- theta - gamma * s(A, B) * O

    with the shape factor :math:`s(A, B) = \sqrt{\max(1, A/B)}` (``adjust_lr_fn``
    None or ``"original"``, Keller Jordan's) or :math:`0.2\sqrt{\max(A, B)}`
    (``"match_rms_adamw"``, Moonshot's, so that AdamW's lr and weight decay
    carry over). ``adjust_lr=False`` drops :math:`s` (the ``unadjusted_lr``
    variant). ``lr`` may be a 1-element tensor (torch's ``_to_scalar``).
    """
    lr = _to_scalar(lr)
    for i, param in enumerate(params):
        if torch.is_complex(param):
            raise ValueError("Complex parameters are not supported")
        grad = grads[i]
        if grad.ndim != 2:
            raise ValueError("Param gradient must be a 2D matrix")
        buffer = momentum_buffers[i]
        buffer.lerp_(grad, 1 - momentum)
        direction = grad.lerp(buffer, momentum) if nesterov else buffer
        orthogonal = newton_schulz(direction, ns_coefficients, ns_steps, eps)
        step_size = lr * _shape_factor(adjust_lr_fn, param.shape) if adjust_lr else lr
        param.mul_(1 - lr * weight_decay)
        param.add_(orthogonal, alpha=-step_size)


def newton_schulz(matrix: Tensor, coefficients: Sequence[float], steps: int, eps: float) -> Tensor:
    r"""An approximately orthogonal matrix with ``matrix``'s singular vectors, in bfloat16.

    With :math:`X_0 = G / \max(\|G\|_F, \epsilon)` (so every singular value is
    at most 1; the wide orientation, :math:`X X^\top` the smaller Gram matrix),
    ``steps`` times::

        A <- X X^T
        B <- b * A + c * A A
        X <- a * X + B X

    i.e. each singular value :math:`\sigma` goes to
    :math:`a\sigma + b\sigma^3 + c\sigma^5`. The default coefficients push
    small singular values up fast and leave all of them near (not at) 1, in
    about (0.7, 1.2): :math:`U S' V^\top` rather than :math:`U V^\top`, which
    trains as well at a fraction of the cost of an SVD. The result is
    bfloat16, in ``matrix``'s orientation.
    """
    if steps >= 100:
        raise ValueError("Number of steps must be less than 100 for computational efficiency")
    if len(matrix.shape) != 2:
        raise ValueError("Input tensor gradient must be a 2D matrix")
    if len(coefficients) != 3:
        raise ValueError("Coefficients must be a tuple of exactly 3 values")
    a, b, c = coefficients
    tall = matrix.size(0) > matrix.size(1)
    # .bfloat16() of a bfloat16 matrix is the matrix itself, divided in place below, as in torch.
    x = matrix.bfloat16()
    if tall:
        x = x.T
    x.div_(x.norm().clamp(min=eps))
    for _ in range(steps):
        gram = x @ x.T
        polynomial = torch.addmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.addmm(x, polynomial, x, beta=a)
    return x.T if tall else x


def _shape_factor(adjust_lr_fn: str | None, shape: torch.Size) -> float:
    """The factor on the lr that gives the orthogonalized update the same RMS whatever (A, B)."""
    rows, columns = shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return math.sqrt(max(1, rows / columns))
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, columns))
    return 1.0


class MuonState(NamedTuple):
    """torch's per-parameter state: ``momentum_buffer`` (no step count)."""

    momentum_buffer: list[Tensor]


def _new_buffer(like: Tensor) -> Tensor:
    return torch.zeros_like(like, memory_format=torch.preserve_format)


def init(params: list[Tensor], hparams: dict | None = None) -> MuonState:
    return MuonState(momentum_buffer=[_new_buffer(param) for param in params])


def update(
    params: list[Tensor],
    grads: list[Tensor],
    state: MuonState,
    *,
    lr: float | Tensor = 1e-3,
    weight_decay: float = 0.1,
    momentum: float = 0.95,
    nesterov: bool = True,
    ns_coefficients: Sequence[float] = DEFAULT_NS_COEFFICIENTS,
    eps: float = DEFAULT_EPS,
    ns_steps: int = DEFAULT_NS_STEPS,
    adjust_lr_fn: str | None = None,
    adjust_lr: bool = True,
    **_unused,
) -> None:
    """One Muon step; the keywords and their defaults are the class's arguments."""
    muon(
        params, grads, state.momentum_buffer,
        lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
        ns_coefficients=ns_coefficients, ns_steps=ns_steps, eps=eps, adjust_lr_fn=adjust_lr_fn,
        adjust_lr=adjust_lr,
    )


def _update_with_unadjusted_lr(params, grads, state: MuonState, **hparams) -> None:
    """The ``unadjusted_lr`` variant: every matrix stepped by the bare lr."""
    update(params, grads, state, **hparams, adjust_lr=False)


class Muon(ScratchOptimizer):
    """Muon; the rule is :func:`muon`.

    Same arguments (no ``foreach`` or ``maximize``: torch's Muon has none),
    validation messages, param groups and ``state_dict`` layout
    (``momentum_buffer``) as ``torch.optim.Muon``, and bit-for-bit its
    parameters. Every parameter must be a matrix; give biases, norms and
    embeddings to another optimizer (e.g. AdamW), as torch's documentation
    says. Unlike torch, groups added later are checked too.
    """

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = DEFAULT_NS_COEFFICIENTS,
        eps: float = DEFAULT_EPS,
        ns_steps: int = DEFAULT_NS_STEPS,
        adjust_lr_fn: str | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "nesterov": nesterov,
            "ns_coefficients": ns_coefficients,
            "eps": eps,
            "ns_steps": ns_steps,
            "adjust_lr_fn": adjust_lr_fn,
        }
        super().__init__(params, defaults)

    @staticmethod
    def check_group(group: dict) -> None:
        """torch's checks and messages (ns_steps and ns_coefficients are checked at the step, as in torch)."""
        lr = group["lr"]
        if isinstance(lr, Tensor) and lr.numel() != 1:
            raise ValueError(f"Tensor lr must be 1-element, got shape {tuple(lr.shape)} (one lr per group)")
        if not 0.0 <= lr:
            raise ValueError(f"Learning rate should be >= 0 but is: {lr} (lr must be a number >= 0)")
        if not 0.0 <= group["momentum"]:
            raise ValueError(f"momentum should be >= 0 but is: {group['momentum']} (e.g. momentum=0.95)")
        if not 0.0 <= group["weight_decay"]:
            raise ValueError(
                f"weight decay should be >= 0 but is: {group['weight_decay']} (weight_decay must be a number >= 0)"
            )
        adjust_lr_fn = group["adjust_lr_fn"]
        if adjust_lr_fn is not None and adjust_lr_fn not in ADJUST_LR_FNS:
            raise ValueError(
                f"Adjust learning rate function {adjust_lr_fn} is not supported "
                f"(adjust_lr_fn must be None, 'original' or 'match_rms_adamw')"
            )

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        for param in self.param_groups[-1]["params"]:
            if param.ndim != 2:
                self.param_groups.pop()
                raise ValueError(
                    f"Muon only supports 2D parameters whereas we found a parameter with size: "
                    f"{param.size()}; optimize it with another optimizer (e.g. AdamW)"
                )

    def _init_group(self, group: dict) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        params, grads, buffers = [], [], []
        for param in group["params"]:
            if param.grad is None:
                continue
            if torch.is_complex(param):
                raise RuntimeError("Muon does not support complex parameters")
            if param.grad.is_sparse:
                raise RuntimeError("Muon does not support sparse gradients")
            params.append(param)
            grads.append(param.grad)
            state = self.state[param]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = _new_buffer(param.grad)
            buffers.append(state["momentum_buffer"])
        return params, grads, buffers

    @torch.no_grad()
    def step(self, closure=None):
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            params, grads, buffers = self._init_group(group)
            muon(
                params, grads, buffers,
                lr=group["lr"],
                weight_decay=group["weight_decay"],
                momentum=group["momentum"],
                nesterov=group["nesterov"],
                ns_coefficients=group["ns_coefficients"],
                ns_steps=group["ns_steps"],
                eps=group["eps"],
                adjust_lr_fn=group["adjust_lr_fn"],
            )
        return loss


RULE = RuleDeclaration(
    name="muon",
    optimizer=Muon,
    reference=torch.optim.Muon,
    reference_source="torch.optim._muon._single_tensor_muon (torch 2.13)",
    init=init,
    update=update,
    hyperparameters=(
        Hyperparameter("lr", 1e-3, log_uniform=True, label="Learning rate"),
        Hyperparameter("weight_decay", 0.1, log_uniform=True, label="weight decay"),
        Hyperparameter("momentum", 0.95, label="momentum"),
        Hyperparameter("nesterov", True, kind="flag", minimum=None, doc="Nesterov momentum"),
        # ns_coefficients, a triple (a, b, c), has no Hyperparameter kind: it stays a class
        # argument (and an `update` keyword), not a study setting.
        Hyperparameter("eps", DEFAULT_EPS, log_uniform=True, label="epsilon"),
        # torch refuses 100 or more at the first step.
        Hyperparameter("ns_steps", DEFAULT_NS_STEPS, kind="integer", maximum=99, doc="Newton-Schulz iterations"),
        Hyperparameter(
            "adjust_lr_fn", None, kind="choice", minimum=None, choices=ADJUST_LR_FNS,
            doc="the lr's factor for the matrix shape: None/'original' (Keller Jordan's) or 'match_rms_adamw'",
        ),
    ),
    verify_grid=(
        {"lr": 0.02},
        {"lr": 0.02, "nesterov": False, "weight_decay": 0.0},
        {"lr": 0.02, "adjust_lr_fn": "match_rms_adamw", "momentum": 0.8},
        {"lr": 0.02, "ns_steps": 6, "eps": 1e-5},
    ),
    # Stacked members would share one Frobenius norm and one matrix product in the
    # Newton-Schulz iteration (bfloat16), and the lr factor reads the matrix shape.
    stackable=False,
    verify_problem="matrices",  # torch's Muon takes 2-D parameters only
    variants=(
        Variant(
            name="unadjusted_lr",
            kind="variant",
            cause=(
                "every matrix is stepped by the bare lr; torch multiplies it by sqrt(max(1, rows/cols)) "
                "(adjust_lr_fn None/'original') or 0.2*sqrt(max(rows, cols)) ('match_rms_adamw')"
            ),
            condition="equal to the reference for matrices with rows <= cols under adjust_lr_fn None/'original'",
            update=_update_with_unadjusted_lr,
        ),
    ),
    # torch's Muon takes no foreach (it has only the single-tensor implementation).
    reference_kwargs={},
    summary="Muon: Nesterov momentum orthogonalized by a bfloat16 Newton-Schulz iteration, 2-D parameters only",
)
