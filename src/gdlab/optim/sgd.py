"""SGD: hyperparameters and momentum buffers, handed to ``functional.sgd``."""

import torch
from torch import Tensor

from gdlab.optim import functional
from gdlab.optim._base import (
    ScratchOptimizer,
    check_flag,
    check_implementation,
    check_non_negative,
    check_number,
    evaluate_closure,
    scalars,
)


class SGD(ScratchOptimizer):
    """Stochastic gradient descent with momentum; the rule is :func:`gdlab.optim.functional.sgd`.

    torch.optim.SGD's signature, defaults, checks, param groups and
    ``state_dict`` layout (``momentum_buffer`` per parameter, only when
    momentum is not 0), and bit-for-bit the same parameters as its
    ``foreach=False`` implementation: a 1-element tensor lr (which torch's
    schedulers update in place), complex parameters and sparse gradients
    included. ``foreach`` is stored and ignored (gdlab has one implementation);
    ``differentiable=True`` or ``fused=True`` is refused with a ValueError.
    """

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float | Tensor = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
    ):
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
            "foreach": foreach,
            "differentiable": differentiable,
            "fused": fused,
        }
        super().__init__(params, defaults)

    def __setstate__(self, state):
        super().__setstate__(state)
        self.restore_group_defaults(
            {"nesterov": False, "maximize": False, "foreach": None, "differentiable": False, "fused": False}
        )

    @staticmethod
    def check_group(group: dict) -> None:
        check_non_negative("lr", group["lr"], "learning rate")
        check_non_negative("momentum", group["momentum"], "momentum value")
        check_number("dampening", group["dampening"])
        check_non_negative("weight_decay", group["weight_decay"], "weight_decay value")
        check_flag("nesterov", group["nesterov"])
        check_flag("maximize", group["maximize"])
        check_implementation(group)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                f"Nesterov momentum requires a momentum and zero dampening: got nesterov=True "
                f"with momentum={group['momentum']}, dampening={group['dampening']}; "
                f"set momentum > 0 and dampening=0, or nesterov=False"
            )

    @torch.no_grad()
    def step(self, closure=None):
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            params = self.params_with_grad(group, sparse=True)
            uses_momentum = group["momentum"] != 0
            momentum_buffers = (
                [self.state[param].get("momentum_buffer") for param in params] if uses_momentum else []
            )
            functional.sgd(
                params,
                [param.grad for param in params],
                momentum_buffers,
                **scalars(group, ("lr", "weight_decay", "momentum", "dampening")),
                nesterov=group["nesterov"],
                maximize=group["maximize"],
            )
            if uses_momentum:
                # The rule creates each buffer on its first step; keep it for the next.
                for param, buffer in zip(params, momentum_buffers, strict=True):
                    self.state[param]["momentum_buffer"] = buffer
        return loss
