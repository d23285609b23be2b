"""Adam and AdamW: hyperparameters and moment estimates, handed to ``functional.adam``."""

import torch

from gdlab.optim import functional
from gdlab.optim._base import (
    ScratchOptimizer,
    check_betas,
    check_flag,
    check_non_negative,
    evaluate_closure,
    new_step_counter,
)


class Adam(ScratchOptimizer):
    """Adam; the rule is :func:`gdlab.optim.functional.adam`.

    Same arguments, param groups and ``state_dict`` layout (``step``,
    ``exp_avg``, ``exp_avg_sq``, and ``max_exp_avg_sq`` with amsgrad) as
    ``torch.optim.Adam``, and bit-for-bit the same parameters as its
    ``foreach=False`` implementation. As in torch, ``decoupled_weight_decay``
    (keyword only, a param group key) turns a group into AdamW; state dicts
    move between gdlab and torch either way.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        maximize: bool = False,
        *,
        decoupled_weight_decay: bool = False,
    ):
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "maximize": maximize,
            "decoupled_weight_decay": decoupled_weight_decay,
        }
        super().__init__(params, defaults)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("decoupled_weight_decay", False)

    @staticmethod
    def check_group(group: dict) -> None:
        check_non_negative("lr", group["lr"], "learning rate")
        check_non_negative("eps", group["eps"], "epsilon value")
        check_betas(group["betas"])
        check_non_negative("weight_decay", group["weight_decay"], "weight_decay value")
        check_flag("amsgrad", group["amsgrad"])
        check_flag("maximize", group["maximize"])

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
                beta1=beta1,
                beta2=beta2,
                lr=group["lr"],
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                maximize=group["maximize"],
                decoupled_weight_decay=group["decoupled_weight_decay"],
            )
        return loss


class AdamW(Adam):
    """AdamW (Adam with decoupled weight decay); the rule is :func:`gdlab.optim.functional.adam`
    with ``decoupled_weight_decay=True``. Matches ``torch.optim.AdamW`` like :class:`Adam` matches Adam."""

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        maximize: bool = False,
    ):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay=True)

    def __setstate__(self, state):
        super().__setstate__(state)
        # What makes AdamW AdamW is the class, whatever a loaded group says (as in torch).
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
