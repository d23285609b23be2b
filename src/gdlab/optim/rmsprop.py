"""RMSprop: hyperparameters and running averages, handed to ``functional.rmsprop``."""

import torch
from torch import Tensor

from gdlab.optim import functional
from gdlab.optim._base import (
    ScratchOptimizer,
    check_flag,
    check_implementation,
    check_non_negative,
    evaluate_closure,
    new_step_counter,
    scalars,
)


class RMSprop(ScratchOptimizer):
    """RMSprop; the rule is :func:`gdlab.optim.functional.rmsprop`.

    torch.optim.RMSprop's signature, defaults, checks, param groups and
    ``state_dict`` layout (``step``, ``square_avg``, ``momentum_buffer`` when
    momentum > 0, ``grad_avg`` when centered), and bit-for-bit the same
    parameters as its ``foreach=False`` implementation: a 1-element tensor lr
    and complex parameters included. ``foreach`` is stored and ignored (gdlab
    has one implementation); ``capturable`` or ``differentiable`` set to True
    is refused with a ValueError.
    """

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
    ):
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "alpha": alpha,
            "eps": eps,
            "centered": centered,
            "weight_decay": weight_decay,
            "capturable": capturable,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
        }
        super().__init__(params, defaults)

    def __setstate__(self, state):
        super().__setstate__(state)
        self.restore_group_defaults(
            {
                "momentum": 0,
                "centered": False,
                "foreach": None,
                "maximize": False,
                "differentiable": False,
                "capturable": False,
            }
        )

    @staticmethod
    def check_group(group: dict) -> None:
        check_non_negative("lr", group["lr"], "learning rate")
        check_non_negative("eps", group["eps"], "epsilon value")
        check_non_negative("momentum", group["momentum"], "momentum value")
        check_non_negative("weight_decay", group["weight_decay"], "weight_decay value")
        check_non_negative("alpha", group["alpha"], "alpha value")
        check_flag("centered", group["centered"])
        check_flag("maximize", group["maximize"])
        check_implementation(group)

    def _state_of(self, param: torch.Tensor, group: dict) -> dict:
        state = self.state[param]
        if not state:
            state["step"] = new_step_counter()
            state["square_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            if group["momentum"] > 0:
                state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            if group["centered"]:
                state["grad_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        return state

    @torch.no_grad()
    def step(self, closure=None):
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            params = self.params_with_grad(group)
            states = [self._state_of(param, group) for param in params]
            functional.rmsprop(
                params,
                [param.grad for param in params],
                [state["square_avg"] for state in states],
                [state["grad_avg"] for state in states] if group["centered"] else [],
                [state["momentum_buffer"] for state in states] if group["momentum"] > 0 else [],
                [state["step"] for state in states],
                **scalars(group, ("lr", "alpha", "eps", "weight_decay", "momentum")),
                centered=group["centered"],
                maximize=group["maximize"],
            )
        return loss
