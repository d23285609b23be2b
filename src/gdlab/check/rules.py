"""The rules a user's code is checked against, read off the rule declarations (`gdlab.optim.registry`).

Every registered rule can be checked against. The reference is the rule's
torch class in its single-tensor form (``foreach=False``, the declaration's
``reference_kwargs``): one tensor at a time, the path whose rounding a
hand-written loop over ``model.parameters()`` is closest to. A rule torch
lacks (Lion) is checked against gdlab's own class, which its declaration
proves against the published equations.

Hyperparameters keep the declaration's names and kinds: Adam's ``betas`` is
one pair here; `gdlab.check.binding` lets a function take it as ``beta1`` and
``beta2``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from gdlab.errors import GdlabError
from gdlab.optim import registry
from gdlab.optim.declaration import REQUIRED, RuleDeclaration


@dataclass(frozen=True)
class Rule:
    """One rule as the check uses it: its declaration, its reference class and the check's defaults."""

    declaration: RuleDeclaration

    @property
    def name(self) -> str:
        return self.declaration.name

    @property
    def optimizer(self) -> type[torch.optim.Optimizer]:
        """The class the user's steps are compared with: torch's, else gdlab's own."""
        return self.declaration.reference or self.declaration.optimizer

    @property
    def title(self) -> str:
        if self.declaration.reference is not None:
            return f"torch.optim.{self.declaration.reference.__name__}"
        return f"gdlab.optim.{self.declaration.optimizer.__name__}"

    @property
    def defaults(self) -> dict[str, Any]:
        return {
            hyperparameter.name: hyperparameter.default
            for hyperparameter in self.declaration.hyperparameters
            if hyperparameter.default is not REQUIRED
        }

    def kind(self, name: str) -> str:
        return self.declaration.hyperparameter(name).kind

    def names(self) -> list[str]:
        return [hyperparameter.name for hyperparameter in self.declaration.hyperparameters]

    def resolve(self, given: Mapping[str, object] | None) -> dict[str, Any]:
        """Every hyperparameter: ``given`` (the declaration's names) over the defaults, checked by torch."""
        resolved = self.defaults
        for name, value in (given or {}).items():
            if name not in self.names():
                raise GdlabError(
                    f"{name!r} is not a hyperparameter of {self.title}; "
                    f"its hyperparameters are {', '.join(self.names())}"
                )
            resolved[name] = coerce(value, self.kind(name), name)
        missing = [name for name in self.names() if name not in resolved]
        if missing:
            raise GdlabError(f"{self.title} has no default for {', '.join(missing)}; give a value")
        self.make_optimizer([torch.zeros(2, 2, requires_grad=True)], resolved)
        return resolved

    def make_optimizer(self, params, hparams: Mapping[str, Any]) -> torch.optim.Optimizer:
        """The reference over ``params``; a value it refuses becomes a GdlabError naming it."""
        kwargs = dict(self.declaration.reference_kwargs) if self.declaration.reference is not None else {}
        try:
            return self.optimizer(params, **kwargs, **hparams)
        except (ValueError, TypeError, RuntimeError) as error:
            raise GdlabError(f"{self.title} refuses these hyperparameters ({format_hparams(hparams)}): {error}") from None


def coerce(value: object, kind: str, name: str) -> Any:
    """``value`` as the declaration's ``kind`` wants it (a float, a bool, a pair of floats ...)."""
    try:
        if kind == "flag":
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            if not isinstance(value, bool):
                raise TypeError
            return value
        if kind == "pair":
            first, second = value  # type: ignore[misc]
            return (float(first), float(second))
        if kind == "integer":
            if isinstance(value, bool) or float(value) != int(float(value)):  # type: ignore[arg-type]
                raise TypeError
            return int(float(value))  # type: ignore[arg-type]
        if kind in ("choice", "optional"):
            if value is None or (isinstance(value, str) and value.lower() == "none"):
                return None
            if kind == "choice":
                return value
        if isinstance(value, bool):
            raise TypeError
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        wanted = {
            "flag": "True or False", "pair": "a pair of numbers like (0.9, 0.999)", "integer": "a whole number",
        }.get(kind, "a number")
        raise GdlabError(f"{name} must be {wanted}, got {value!r}") from None


def format_value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "(" + ", ".join(format_value(item) for item in value) + ")"
    return repr(value) if isinstance(value, str) else str(value)


def format_hparams(hparams: Mapping[str, Any]) -> str:
    return ", ".join(f"{name}={format_value(value)}" for name, value in hparams.items())


def rule_names() -> tuple[str, ...]:
    return registry.names()


def get_rule(name: str) -> Rule:
    key = name.lower() if isinstance(name, str) else name
    if key not in registry.names():
        raise GdlabError(f"unknown rule {name!r} to check against; choose one of {', '.join(registry.names())}")
    return Rule(registry.get(key))


def infer_rule(label: str) -> str | None:
    """The rule a name like ``MyAdam`` or ``rmsprop_update`` names, if exactly one does (longest wins)."""
    text = label.lower()
    found = [name for name in registry.names() if name in text]
    # "adamw" contains "adam", "asgd" contains "sgd": keep the longest of names that overlap.
    found = [name for name in found if not any(name != other and name in other for other in found)]
    return found[0] if len(found) == 1 else None


def rule_of_class(cls: type) -> str | None:
    """The rule a user's Optimizer class derives from (a torch or gdlab class), if any."""
    for base in cls.__mro__[1:]:
        declaration = registry.by_optimizer(base)
        if declaration is not None:
            return declaration.name
    return None


class _Rules(Mapping):
    """Every registered rule by name (read from the registry when first looked at)."""

    def __getitem__(self, name: str) -> Rule:
        if name not in registry.names():
            raise KeyError(name)
        return Rule(registry.get(name))

    def __iter__(self):
        return iter(registry.names())

    def __len__(self) -> int:
        return len(registry.names())


RULES: Mapping[str, Rule] = _Rules()
