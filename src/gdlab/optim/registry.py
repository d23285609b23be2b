"""The registered update rules: one :class:`RuleDeclaration` per module of ``gdlab.optim.rules``.

Every list of rules gdlab shows or accepts (the study schema, ``gdlab check
--against``, ``gdlab verify``, the stacked backend, the tests) is read from
here. A module of ``gdlab/optim/rules/`` binds its declaration to ``RULE``;
dropping a new file there, or in a folder named by ``$GDLAB_RULE_PATH``,
registers a new rule. A user's own declaration or Optimizer class named in a
study file (``my_rules.py:RULE``) is loaded by :mod:`gdlab.optim.resolve`
without being registered, so two studies in one process cannot see each
other's rules.
"""

from __future__ import annotations

import importlib
from functools import cache

from gdlab.errors import GdlabError
from gdlab.optim.declaration import RuleDeclaration
from gdlab.usercode import BUILTIN_RULES_FOLDER, import_file, rule_files


@cache
def _registered() -> dict[str, RuleDeclaration]:
    found: dict[str, RuleDeclaration] = {}
    for path in rule_files():
        if path.parent == BUILTIN_RULES_FOLDER:
            module = importlib.import_module(f"gdlab.optim.rules.{path.stem}")
        else:  # a rule file of the user's, in $GDLAB_RULE_PATH
            module = import_file(path)
        declaration = getattr(module, "RULE", None)
        if not isinstance(declaration, RuleDeclaration):
            raise GdlabError(f"{path} must bind RULE to a gdlab.optim.declaration.RuleDeclaration")
        if declaration.name in found:
            raise GdlabError(f"two rules are named {declaration.name!r}; the second is in {path}: rename one")
        found[declaration.name] = declaration
    return found


def names() -> tuple[str, ...]:
    """The registered rules' names, sorted."""
    return tuple(sorted(_registered()))


def declarations() -> tuple[RuleDeclaration, ...]:
    """Every registered declaration, sorted by name."""
    registered = _registered()
    return tuple(registered[name] for name in sorted(registered))


def get(name: str) -> RuleDeclaration:
    """The declaration called ``name`` (any case); a GdlabError listing the names otherwise."""
    registered = _registered()
    key = name.lower() if isinstance(name, str) else name
    if key not in registered:
        raise GdlabError(f"unknown rule {name!r}; choose one of {', '.join(sorted(registered))}")
    return registered[key]


def by_optimizer(optimizer: type) -> RuleDeclaration | None:
    """The declaration whose Optimizer class (or reference) is ``optimizer``, if any."""
    for declaration in _registered().values():
        if optimizer is declaration.optimizer or optimizer is declaration.reference:
            return declaration
    return None
