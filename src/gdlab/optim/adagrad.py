"""Adagrad: hyperparameters and sums of squared gradients, handed to ``functional.adagrad``."""

import warnings

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
    scalar_dtype,
    scalars,
)


class Adagrad(ScratchOptimizer):
    """Adagrad; the rule is :func:`gdlab.optim.functional.adagrad`.

    torch.optim.Adagrad's signature, defaults, checks, param groups and
    ``state_dict`` layout (``step`` and ``sum`` for every parameter, created
    at construction), and bit-for-bit the same parameters as its
    ``foreach=False`` implementation: a 1-element tensor lr, complex
    parameters and sparse gradients included. ``foreach`` is stored and
    ignored (gdlab has one implementation); ``differentiable=True`` or
    ``fused=True`` is refused with a ValueError.

    As in torch, every sum starts at the constructor's
    ``initial_accumulator_value``, including in param groups that set their
    own; such a group gets a warning, since its value is not used.
    """

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ):
        defaults = {
            "lr": lr,
            "lr_decay": lr_decay,
            "eps": eps,
            "weight_decay": weight_decay,
            "initial_accumulator_value": initial_accumulator_value,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "fused": fused,
        }
        super().__init__(params, defaults)
        for group in self.param_groups:
            for param in group["params"]:
                self._state_of(param)

    def __setstate__(self, state):
        super().__setstate__(state)
        self.restore_group_defaults(
            {"foreach": None, "maximize": False, "differentiable": False, "fused": None},
            step_dtype_follows_fused=True,
        )
        # torch: a state whose steps are numbers throughout (an old checkpoint) counts in tensors.
        for param_state in self.state.values():
            if "step" in param_state and not torch.is_tensor(param_state["step"]):
                param_state["step"] = torch.tensor(float(param_state["step"]), dtype=scalar_dtype())

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
        check_implementation(group)

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
            initial_value = self.defaults["initial_accumulator_value"]
            if torch.is_complex(param):  # torch starts both parts at the value
                initial_value = complex(initial_value, initial_value)
            state["sum"] = torch.full_like(param, initial_value, memory_format=torch.preserve_format)
        return state

    @torch.no_grad()
    def step(self, closure=None):
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            params = self.params_with_grad(group, sparse=True)
            states = [self._state_of(param) for param in params]
            functional.adagrad(
                params,
                [param.grad for param in params],
                [state["sum"] for state in states],
                [state["step"] for state in states],
                **scalars(group, ("lr", "weight_decay", "lr_decay", "eps")),
                maximize=group["maximize"],
            )
        return loss
