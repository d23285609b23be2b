"""Each member's hyperparameters, checked and completed; and how the stack hands them to the rule.

Everything a rule has is read off its declaration (:mod:`gdlab.optim.declaration`):
its defaults, the values its own class accepts, the flags members must share.
"""

import torch
from torch import Tensor

from gdlab.errors import GdlabError
from gdlab.optim import registry
from gdlab.optim.declaration import REQUIRED, RuleDeclaration

Rule = str | RuleDeclaration

# A hyperparameter as the stack hands it to the rule: a float (or flag) all members
# share, a tensor of one value per member, or a pair of these.
Keywords = dict[str, object]


def declaration_of(rule: Rule) -> RuleDeclaration:
    """The declaration of ``rule`` (a registered name, or a user's own declaration), checked stackable."""
    declaration = rule if isinstance(rule, RuleDeclaration) else _registered(rule)
    if not declaration.stackable or declaration.init is None or declaration.update is None:
        raise GdlabError(
            f"fit_stacked: rule {declaration.name!r} does not declare a stackable update (init/update taking "
            f"one hyperparameter value per member); train its configurations one by one with gdlab.train.fit"
        )
    return declaration


def _registered(name: str) -> RuleDeclaration:
    try:
        return registry.get(name)
    except GdlabError as error:
        raise GdlabError(f"fit_stacked: {error}") from None


def normalize_hparams(rule: Rule, hparams: list[dict], count: int) -> list[dict]:
    """Each member's full hyperparameters (the optimizer class's defaults filled in), checked.

    Raises GdlabError for an unknown rule or key, a value the optimizer class
    refuses, a wrong number of dicts, or flags that differ between members.
    """
    declaration = declaration_of(rule)
    if not isinstance(hparams, (list, tuple)) or len(hparams) != count:
        got = len(hparams) if isinstance(hparams, (list, tuple)) else type(hparams).__name__
        raise GdlabError(f"fit_stacked: hparams must be a list of {count} dicts, one per model; got {got}")
    defaults = declaration.defaults()
    settings = []
    for index, member in enumerate(hparams):
        if not isinstance(member, dict):
            raise GdlabError(f"fit_stacked: hparams[{index}] must be a dict, got {type(member).__name__}")
        unknown = sorted(set(member) - set(defaults))
        if unknown:
            raise GdlabError(
                f"fit_stacked: hparams[{index}] has unknown key(s) {', '.join(unknown)} for rule {declaration.name!r}; "
                f"its keys are {', '.join(defaults)}"
            )
        full = {**defaults, **member}
        missing = [name for name, value in full.items() if value is REQUIRED]
        if missing:
            raise GdlabError(
                f"fit_stacked: hparams[{index}] must set {', '.join(missing)} for rule {declaration.name!r}"
            )
        try:  # the rule's own class checks the values, with torch's messages
            declaration.optimizer([torch.zeros(1, requires_grad=True)], **full)
        except (TypeError, ValueError) as error:
            raise GdlabError(f"fit_stacked: hparams[{index}] for rule {declaration.name!r}: {error}") from None
        settings.append(full)
    for flag in declaration.shared_names:
        values = [member[flag] for member in settings if flag in member]
        if values and any(value != values[0] for value in values):
            differing = next(index for index, value in enumerate(values) if value != values[0])
            raise GdlabError(
                f"fit_stacked: hparams disagree on {flag!r}: hparams[0] has {values[0]}, "
                f"hparams[{differing}] has {values[differing]}; stacked members share their flags, "
                f"so train configurations with different {flag} in separate groups"
            )
    return settings


def stacked_value(values: list, like: Tensor) -> float | bool | Tensor:
    """One hyperparameter of every member, as the rule takes it: the value itself when all
    members agree (the rule's float path, as the optimizer classes take), else a tensor of
    one value per member on ``like``'s dtype and device."""
    if all(value == values[0] for value in values):
        return values[0]
    return torch.tensor(values, dtype=like.dtype, device=like.device)


def stacked_keywords(settings: list[dict], like: Tensor) -> Keywords:
    """The rule's keyword arguments for members with these ``settings``, each via ``stacked_value``."""
    keywords = {}
    for key, first in settings[0].items():
        if isinstance(first, (tuple, list)):  # a pair of numbers: each entry on its own
            keywords[key] = tuple(
                stacked_value([member[key][entry] for member in settings], like) for entry in range(len(first))
            )
        else:
            keywords[key] = stacked_value([member[key] for member in settings], like)
    return keywords
