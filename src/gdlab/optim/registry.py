"""The registered update rules: one :class:`RuleDeclaration` per module of ``gdlab.optim.rules``.

Every list of rules gdlab shows or accepts (the study schema, ``gdlab check
--against``, ``gdlab verify``, the stacked backend, the tests) is read from
here. A module of ``gdlab/optim/rules/`` binds its declaration to ``RULE``;
dropping a new file there registers a new rule. A user's own declaration
(``my_rules.py:RULE`` in a study file) is loaded by :func:`load_declaration`
without being registered, so two studies in one process cannot see each
other's rules.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from gdlab.errors import GdlabError
from gdlab.optim.declaration import RuleDeclaration


@cache
def _registered() -> dict[str, RuleDeclaration]:
    import gdlab.optim.rules as package

    found: dict[str, RuleDeclaration] = {}
    for module_info in sorted(pkgutil.iter_modules(package.__path__), key=lambda info: info.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{module_info.name}")
        declaration = getattr(module, "RULE", None)
        if not isinstance(declaration, RuleDeclaration):
            raise TypeError(f"{module.__name__} must bind RULE to a gdlab.optim.declaration.RuleDeclaration")
        if declaration.name in found:
            raise TypeError(f"two rules are named {declaration.name!r}: {module.__name__} and another module")
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
