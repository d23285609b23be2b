"""The torch.optim rules a training function is checked against, and their hyperparameters.

Hyperparameters are kept flat under gdlab's names (Adam's ``betas`` is the
pair ``beta1``, ``beta2``) so that each can be mapped onto a parameter of the
user's function on its own. The reference is always torch's single-tensor
implementation (``foreach=False``): one tensor at a time, the path whose
rounding a hand-written loop over ``model.parameters()`` is closest to.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gdlab.errors import GdlabError


@dataclass(frozen=True)
class Rule:
    """One reference rule: its torch class and its hyperparameters with their defaults.

    The defaults are torch's, except SGD's learning rate: torch's 1e-3 gives
    updates so small that float32 rounding hides more of a wrong rule, so the
    check uses the course's 1e-2.
    """

    name: str
    optimizer: type[torch.optim.Optimizer]
    defaults: dict[str, float | bool]
    decoupled_weight_decay: bool = False

    @property
    def title(self) -> str:
        return f"torch.optim.{self.optimizer.__name__}"

    def resolve(self, given: dict[str, object] | None) -> dict[str, float | bool]:
        """The full flat hyperparameters: ``given`` (gdlab names; ``betas`` as a pair) over the defaults."""
        resolved = dict(self.defaults)
        for name, value in (given or {}).items():
            if name == "betas" and "beta1" in resolved:
                beta1, beta2 = _pair(value, "betas")
                resolved["beta1"], resolved["beta2"] = beta1, beta2
            elif name in resolved:
                resolved[name] = _coerce(value, self.defaults[name], name)
            else:
                raise GdlabError(
                    f"{name!r} is not a hyperparameter of {self.title}; "
                    f"its hyperparameters are {', '.join(self.names())}"
                )
        self.make_optimizer([torch.zeros(1, requires_grad=True)], resolved)
        return resolved

    def names(self) -> list[str]:
        """gdlab's names for this rule's hyperparameters, ``betas`` standing for the pair."""
        names = [name for name in self.defaults if name not in ("beta1", "beta2")]
        if "beta1" in self.defaults:
            names.insert(names.index("eps"), "betas")
        return names

    def torch_kwargs(self, hparams: dict[str, float | bool]) -> dict[str, object]:
        kwargs: dict[str, object] = dict(hparams)
        if "beta1" in kwargs:
            kwargs["betas"] = (kwargs.pop("beta1"), kwargs.pop("beta2"))
        return kwargs

    def make_optimizer(self, params, hparams: dict[str, float | bool]) -> torch.optim.Optimizer:
        """torch's optimizer over ``params``; a value torch refuses becomes a GdlabError naming it."""
        try:
            return self.optimizer(params, foreach=False, **self.torch_kwargs(hparams))
        except ValueError as error:
            raise GdlabError(
                f"{self.title} refuses these hyperparameters ({format_hparams(hparams)}): {error}"
            ) from None


def _pair(value: object, name: str) -> tuple[float, float]:
    try:
        first, second = value  # type: ignore[misc]
        return float(first), float(second)
    except (TypeError, ValueError):
        raise GdlabError(f"{name} must be a pair of numbers like (0.9, 0.999), got {value!r}") from None


def _coerce(value: object, default: float | bool, name: str) -> float | bool:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise GdlabError(f"{name} must be True or False, got {value!r}")
        return value
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise GdlabError(f"{name} must be a number, got {value!r}") from None


def format_hparams(hparams: dict[str, float | bool]) -> str:
    return ", ".join(f"{name}={value:g}" if not isinstance(value, bool) else f"{name}={value}"
                     for name, value in hparams.items())


RULES: dict[str, Rule] = {
    "sgd": Rule(
        "sgd",
        torch.optim.SGD,
        {"lr": 1e-2, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False},
    ),
    "adam": Rule(
        "adam",
        torch.optim.Adam,
        {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False},
    ),
    "adamw": Rule(
        "adamw",
        torch.optim.AdamW,
        {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 1e-2, "amsgrad": False},
        decoupled_weight_decay=True,
    ),
    "rmsprop": Rule(
        "rmsprop",
        torch.optim.RMSprop,
        {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0, "centered": False},
    ),
    "adagrad": Rule(
        "adagrad",
        torch.optim.Adagrad,
        {"lr": 1e-2, "lr_decay": 0.0, "weight_decay": 0.0, "initial_accumulator_value": 0.0, "eps": 1e-10},
    ),
}


def get_rule(name: str) -> Rule:
    key = name.lower()
    if key not in RULES:
        raise GdlabError(f"unknown rule {name!r} to check against; choose one of {', '.join(RULES)}")
    return RULES[key]
