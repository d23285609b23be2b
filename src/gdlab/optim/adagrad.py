"""Adagrad: hyperparameters and sums of squared gradients, handed to ``functional.adagrad``."""

import warnings

import torch

from gdlab.optim import functional
from gdlab.optim._base import (
    ScratchOptimizer,
    check_flag,
    check_non_negative,
    evaluate_closure,
    new_step_counter,
)


class Adagrad(ScratchOptimizer):
    """Adagrad; the rule is :func:`gdlab.optim.functional.adagrad`.

    Same arguments, param groups and ``state_dict`` layout (``step`` and
    ``sum`` for every parameter, created at construction) as
    ``torch.optim.Adagrad``, and bit-for-bit the same parameters as its
    ``foreach=False`` implementation.

    As in torch, every sum starts at the constructor's
    ``initial_accumulator_value``, including in param groups that set their
    own; such a group gets a warning, since its value is not used.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        maximize: bool = False,
    ):
        defaults = {
            "lr": lr,
            "lr_decay": lr_decay,
            "weight_decay": weight_decay,
            "initial_accumulator_value": initial_accumulator_value,
            "eps": eps,
            "maximize": maximize,
        }
        super().__init__(params, defaults)
        for group in self.param_groups:
            for param in group["params"]:
                self._state_of(param)

    @staticmethod
    def check_group(group: dict) -> None:
        check_non_negative("lr", group["lr"], "learning rate")
        check_non_negative("lr_decay", group["lr_decay"], "lr_decay value")
        check_non_negative("weight_decay", group["weight_decay"], "weight_decay value")
        check_non_negative(
            "initial_accumulator_value",
            group["initial_accumulator_value"],
            "initial_accumulator_value value",
        )
        check_non_negative("eps", group["eps"], "epsilon value")
        check_flag("maximize", group["maximize"])

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        initial_value = self.param_groups[-1]["initial_accumulator_value"]
        if initial_value != self.defaults["initial_accumulator_value"]:
            warnings.warn(
                f"Adagrad param group sets initial_accumulator_value={initial_value}, but every sum "
                f"starts at the constructor's {self.defaults['initial_accumulator_value']} (as in "
                f"torch.optim.Adagrad); use one optimizer per initial value to get it",
                stacklevel=2,
            )

    def _state_of(self, param: torch.Tensor) -> dict:
        state = self.state[param]
        if not state:
            state["step"] = new_step_counter()
            state["sum"] = torch.full_like(
                param, self.defaults["initial_accumulator_value"], memory_format=torch.preserve_format
            )
        return state

    @torch.no_grad()
    def step(self, closure=None):
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            params = self.params_with_grad(group)
            states = [self._state_of(param) for param in params]
            functional.adagrad(
                params,
                [param.grad for param in params],
                [state["sum"] for state in states],
                [state["step"] for state in states],
                lr=group["lr"],
                weight_decay=group["weight_decay"],
                lr_decay=group["lr_decay"],
                eps=group["eps"],
                maximize=group["maximize"],
            )
        return loss
