"""Calling the user's training function with hyperparameters under the names it uses.

The function is the course's ``f(n_epochs, model, loss_fn, train_loader,
**hparams)``: four positional arguments, then hyperparameters as keywords.
A gdlab hyperparameter is passed to the parameter of the same name, or to
the one a rename points at (``renames={"w_decay": "weight_decay"}``, user's
name -> gdlab's); a function with ``**kwargs`` receives the rest under
gdlab's names. A value the function has nowhere to receive is an error unless
it is the rule's default, because then the function's own behaviour (no
momentum, say) is what the reference does too. The learning rate always has
to arrive: no default can stand in for it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

from gdlab.check.loading import CannotCheck
from gdlab.check.rules import Rule

POSITIONAL_ROLES = ("n_epochs", "model", "loss_fn", "train_loader")


@dataclass(frozen=True)
class Call:
    """How the function will be called: keyword arguments, and its parameters left to their defaults."""

    function_name: str
    kwargs: dict[str, object]
    left_to_default: dict[str, object]

    def describe(self, epochs: int) -> str:
        arguments = [str(epochs), "model", "loss_fn", "train_loader"]
        arguments += [f"{name}={value!r}" for name, value in self.kwargs.items()]
        return f"{self.function_name}({', '.join(arguments)})"


def parse_renames(pairs: list[str]) -> dict[str, str]:
    """``["w_decay=weight_decay", ...]`` -> ``{"w_decay": "weight_decay"}`` (user's name -> gdlab's)."""
    renames: dict[str, str] = {}
    for pair in pairs:
        user_name, separator, gdlab_name = (part.strip() for part in pair.partition("="))
        if not separator or not user_name.isidentifier() or not gdlab_name.isidentifier():
            raise CannotCheck(
                f"rename {pair!r} must read YOUR_NAME=GDLAB_NAME, like --rename w_decay=weight_decay"
            )
        renames[user_name] = gdlab_name
    return renames


def bind_hyperparameters(
    function: Callable, rule: Rule, hparams: dict[str, float | bool], renames: dict[str, str] | None
) -> Call:
    """Map ``hparams`` (flat gdlab names) onto ``function``'s signature; a mismatch is a CannotCheck."""
    name = getattr(function, "__name__", repr(function))
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        raise CannotCheck(f"cannot read the signature of {name}; give a Python function") from None
    parameters = list(signature.parameters.values())
    role_names = _positional_roles(name, signature, parameters)
    hyper_parameters = [
        parameter for parameter in parameters
        if parameter.name not in role_names
        and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    ]
    keyword_names = [parameter.name for parameter in hyper_parameters]
    takes_kwargs = any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters)
    renames = dict(renames or {})
    wanted = _wanted_values(hparams)
    for user_name, gdlab_name in renames.items():
        if gdlab_name not in wanted:
            raise CannotCheck(
                f"rename {user_name}={gdlab_name}: {gdlab_name!r} is not a hyperparameter of "
                f"{rule.title}; rename to one of {', '.join(wanted)}"
            )
        if user_name not in keyword_names and not takes_kwargs:
            raise CannotCheck(
                f"rename {user_name}={gdlab_name}: {name} has no parameter {user_name!r}; "
                f"its hyperparameters are {', '.join(keyword_names) or 'none'}"
            )

    receiver = {gdlab_name: user_name for user_name, gdlab_name in renames.items()}
    for parameter_name in keyword_names:
        if parameter_name in wanted and parameter_name not in renames:
            receiver.setdefault(parameter_name, parameter_name)
    # A function may take Adam's betas as one pair or as beta1 and beta2.
    if "betas" in receiver:
        receiver.pop("beta1", None)
        receiver.pop("beta2", None)
    elif "beta1" in receiver or "beta2" in receiver:
        receiver.pop("betas", None)

    kwargs: dict[str, object] = {}
    for gdlab_name, value in wanted.items():
        if gdlab_name in receiver:
            kwargs[receiver[gdlab_name]] = value
    for gdlab_name in _unreceived(rule, receiver):
        if takes_kwargs:
            kwargs[gdlab_name] = wanted[gdlab_name]
        elif gdlab_name == "lr" or not _is_default(rule, gdlab_name, wanted[gdlab_name]):
            raise CannotCheck(
                f"{name} has no parameter for {gdlab_name}={wanted[gdlab_name]!r}; its hyperparameters "
                f"are {', '.join(keyword_names) or 'none'}. If it takes {gdlab_name} under another "
                f"name, add --rename THAT_NAME={gdlab_name} (Python: renames={{'THAT_NAME': "
                f"'{gdlab_name}'}})"
            )

    left_to_default = {}
    for parameter in hyper_parameters:
        if parameter.name in kwargs:
            continue
        if parameter.default is parameter.empty:
            raise CannotCheck(
                f"{name}'s parameter {parameter.name!r} has no default and no hyperparameter to fill "
                f"it; map it with --rename {parameter.name}=GDLAB_NAME (one of {', '.join(wanted)})"
            )
        left_to_default[parameter.name] = parameter.default
    return Call(name, kwargs, left_to_default)


def _positional_roles(name: str, signature: inspect.Signature, parameters) -> set[str]:
    """Names of the parameters that receive n_epochs, model, loss_fn and train_loader."""
    positional = [
        parameter for parameter in parameters
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)
    ]
    takes_varargs = any(parameter.kind is parameter.VAR_POSITIONAL for parameter in parameters)
    if len(positional) < len(POSITIONAL_ROLES) and not takes_varargs:
        raise CannotCheck(
            f"{name}{signature} does not take the training function's four arguments; gdlab calls "
            f"{name}(n_epochs, model, loss_fn, train_loader, **hyperparameters) "
            f"(the course's train_manual(n_epochs, model, loss_fn, train_loader, lr=1e-2))"
        )
    return {parameter.name for parameter in positional[: len(POSITIONAL_ROLES)]}


def _wanted_values(hparams: dict[str, float | bool]) -> dict[str, object]:
    """The values on offer, by every name a function may use: flat names plus ``betas`` for the pair."""
    wanted: dict[str, object] = dict(hparams)
    if "beta1" in wanted:
        wanted["betas"] = (wanted["beta1"], wanted["beta2"])
    return wanted


def _unreceived(rule: Rule, receiver: dict[str, str]) -> list[str]:
    """Hyperparameters no parameter receives, Adam's betas counted once as the pair."""
    missing = [name for name in rule.names() if name not in receiver]
    if "betas" in missing and ("beta1" in receiver or "beta2" in receiver):
        missing.remove("betas")
        missing += [name for name in ("beta1", "beta2") if name not in receiver]
    return missing


def _is_default(rule: Rule, gdlab_name: str, value: object) -> bool:
    if gdlab_name == "betas":
        return value == (rule.defaults["beta1"], rule.defaults["beta2"])
    return value == rule.defaults[gdlab_name]
