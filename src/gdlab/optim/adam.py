"""Adam and AdamW: hyperparameters and moment estimates, handed to ``functional.adam``."""

import torch
from torch import Tensor

from gdlab.optim import functional
from gdlab.optim._base import (
    ScratchOptimizer,
    check_betas,
    check_flag,
    check_implementation,
    check_non_negative,
    check_tensor_hyperparameters_with_foreach,
    evaluate_closure,
    new_step_counter,
    to_scalar,
)


class Adam(ScratchOptimizer):
    """Adam; the rule is :func:`gdlab.optim.functional.adam`.

    torch.optim.Adam's signature, defaults, checks, param groups and
    ``state_dict`` layout (``step``, ``exp_avg``, ``exp_avg_sq``, and
    ``max_exp_avg_sq`` with amsgrad), and bit-for-bit the same parameters as
    its ``foreach=False`` implementation: 1-element tensor lr and betas and
    complex parameters included. As in torch, ``decoupled_weight_decay``
    (keyword only, a param group key) turns a group into AdamW; state dicts
    move between gdlab and torch either way. ``foreach`` is stored and ignored
    (gdlab has one implementation); ``capturable``, ``differentiable`` or
    ``fused`` set to True is refused with a ValueError.
    """

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-3,
        betas: tuple[float | Tensor, float | Tensor] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
    ):
        check_betas(betas)
        defaults = {
            "lr": lr,
            "betas": tuple(map(to_scalar, betas)),  # as torch stores them
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "maximize": maximize,
            "foreach": foreach,
            "capturable": capturable,
            "differentiable": differentiable,
            "fused": fused,
            "decoupled_weight_decay": decoupled_weight_decay,
        }
        super().__init__(params, defaults)

    def __setstate__(self, state):
        super().__setstate__(state)
        self.restore_group_defaults(
            {
                "amsgrad": False,
                "maximize": False,
                "foreach": None,
                "capturable": False,
                "differentiable": False,
                "decoupled_weight_decay": False,
                "fused": None,
            },
            step_dtype_follows_fused=True,
        )

    @staticmethod
    def check_group(group: dict) -> None:
        check_non_negative("lr", group["lr"], "learning rate")
        check_non_negative("eps", group["eps"], "epsilon value")
        check_betas(group["betas"])
        check_non_negative("weight_decay", group["weight_decay"], "weight_decay value")
        check_flag("amsgrad", group["amsgrad"])
        check_flag("maximize", group["maximize"])
        check_flag("decoupled_weight_decay", group["decoupled_weight_decay"])
        check_tensor_hyperparameters_with_foreach(group, ("lr",))
        betas = group["betas"]
        if isinstance(betas[0], Tensor) and group.get("foreach") and not group.get("capturable"):
            raise ValueError("betas[0] as a Tensor is not supported for capturable=False and foreach=True")
        check_implementation(group)

    def _state_of(self, param: torch.Tensor, amsgrad: bool) -> dict:
        state = self.state[param]
        if not state:
            state["step"] = new_step_counter()
            state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            if amsgrad:
                state["max_exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        return state

    @torch.no_grad()
    def step(self, closure=None):
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            params = self.params_with_grad(group)
            states = [self._state_of(param, group["amsgrad"]) for param in params]
            beta1, beta2 = group["betas"]
            functional.adam(
                params,
                [param.grad for param in params],
                [state["exp_avg"] for state in states],
                [state["exp_avg_sq"] for state in states],
                [state["max_exp_avg_sq"] for state in states] if group["amsgrad"] else [],
                [state["step"] for state in states],
                amsgrad=group["amsgrad"],
                beta1=to_scalar(beta1),
                beta2=to_scalar(beta2),
                lr=to_scalar(group["lr"]),
                weight_decay=to_scalar(group["weight_decay"]),
                eps=to_scalar(group["eps"]),
                maximize=group["maximize"],
                decoupled_weight_decay=group["decoupled_weight_decay"],
            )
        return loss


class AdamW(Adam):
    """AdamW (Adam with decoupled weight decay); the rule is :func:`gdlab.optim.functional.adam`
    with ``decoupled_weight_decay=True``. Matches ``torch.optim.AdamW`` (signature included)
    like :class:`Adam` matches Adam."""

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-3,
        betas: tuple[float | Tensor, float | Tensor] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ):
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            foreach=foreach,
            maximize=maximize,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=True,
        )

    def __setstate__(self, state):
        super().__setstate__(state)
        # What makes AdamW AdamW is the class, whatever a loaded group says (as in torch).
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
