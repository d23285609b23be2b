"""Small pieces the rule declarations share: state lists, the usual hyperparameters, variant helpers."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from gdlab.optim._base import new_step_counter
from gdlab.optim.declaration import Hyperparameter


def zeros_like_each(params: list[Tensor]) -> list[Tensor]:
    return [torch.zeros_like(param, memory_format=torch.preserve_format) for param in params]


def step_counters(params: list[Tensor]) -> list[Tensor]:
    """One 0-dim step counter per parameter, as torch's ``state["step"]``."""
    return [new_step_counter() for _ in params]


def uses(value: float | Tensor) -> bool:
    """Whether a term scaled by ``value`` runs (as in the rules: always for a tensor of K values)."""
    return isinstance(value, Tensor) or value != 0


def filled_like_each(params: list[Tensor], value: float | Tensor) -> list[Tensor]:
    """Each parameter's shape filled with ``value``: a number, or one value per stacked member
    (a tensor of K values, broadcast along each parameter's first dimension)."""
    if isinstance(value, Tensor) and value.dim() > 0:
        return [
            value.to(param).view((-1,) + (1,) * (param.dim() - 1)).expand_as(param).contiguous()
            for param in params
        ]
    return [torch.full_like(param, float(value), memory_format=torch.preserve_format) for param in params]


def betas_of(hparams: Mapping) -> dict:
    beta1, beta2 = hparams["betas"]
    return {"beta1": beta1, "beta2": beta2}


def lr(default: float) -> Hyperparameter:
    return Hyperparameter("lr", default, minimum=0.0, log_uniform=True, label="learning rate")


def weight_decay(default: float = 0.0) -> Hyperparameter:
    return Hyperparameter("weight_decay", default, minimum=0.0, log_uniform=True, label="weight_decay value")


def eps(default: float) -> Hyperparameter:
    return Hyperparameter("eps", default, minimum=0.0, log_uniform=True, label="epsilon value")


def betas(default: tuple[float, float]) -> Hyperparameter:
    return Hyperparameter("betas", default, kind="pair", minimum=0.0, maximum=1.0, maximum_inclusive=False,
                          label="beta parameter")


def flag(name: str, doc: str = "") -> Hyperparameter:
    return Hyperparameter(name, False, kind="flag", minimum=None, doc=doc)


MAXIMIZE = flag("maximize", "ascend the objective instead of descending it")


# --- Variants -------------------------------------------------------------------------------------
#
# A rule's known mistakes and variants (``variants=`` of its declaration) each have an ``update``
# with the rule's ``update`` signature and state that computes what such code computes, so the check
# can replay it on the user's own gradients; ``applies`` says for which hyperparameters it can be
# told apart from the rule. Where a variant is the rule with other hyperparameters, it calls the
# rule's own update with them (`with_hparams`); the formulations torch has no flag for are written
# out in the rule's module, as a student would write them.


def with_hparams(update: Callable, init: Callable, change: Callable[[Mapping], dict]) -> dict:
    """``update`` and ``init`` of the rule run with ``change(hparams)`` over its hyperparameters."""

    def changed_update(params, grads, state, **hparams):
        update(params, grads, state, **{**hparams, **change(hparams)})

    def changed_init(params, hparams):
        return init(params, {**hparams, **change(hparams)})

    return {"update": changed_update, "init": changed_init}


def hparam_used(name: str) -> Callable[[Mapping], bool]:
    """An ``applies`` for a variant that needs the hyperparameter ``name`` to be nonzero."""
    return lambda hparams: hparams[name] != 0
