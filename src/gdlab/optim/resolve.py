"""The rule a study names: a registered rule, a user's own declaration, or a user's Optimizer class.

``[optimizer] name`` in a study file is ``"sgd"`` (any registered rule),
``"path/to/file.py:Class"`` or ``"package.module:Class"``. A user's object is
either a :class:`~gdlab.optim.declaration.RuleDeclaration` (then it is a
declared rule like gdlab's own, and can train stacked) or a
``torch.optim.Optimizer`` subclass, whose hyperparameters and defaults are
read off its constructor's signature. Either way the study sees one
:class:`StudyRule`: the class to build, the reference to pair it with, the
hyperparameters and their defaults, and the file's SHA-256.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gdlab.errors import GdlabError
from gdlab.optim import registry
from gdlab.optim.declaration import REQUIRED, RuleDeclaration
from gdlab.usercode import is_target, load_object

# Drawn log-uniformly in a random search when the rule declares nothing (a user's class).
CONVENTIONAL_LOG_UNIFORM = frozenset({"lr", "weight_decay", "eps"})

# torch's implementation switches: they choose a kernel, not the rule, so they are no study settings.
IMPLEMENTATION_SWITCHES = frozenset({"foreach", "fused", "capturable", "differentiable"})


@dataclass(frozen=True)
class StudyRule:
    name: str  # as the study wrote it
    optimizer: type[torch.optim.Optimizer]  # what "scratch" (the rule under study) builds
    reference: type[torch.optim.Optimizer] | None  # what "torch" builds, the rule a pair compares with
    declaration: RuleDeclaration | None  # the rule's declaration, when it has one (stackable rules)
    defaults: Mapping[str, Any]  # every hyperparameter and its default (REQUIRED where none)
    log_uniform: frozenset[str]
    sha256: str | None = None  # of the user's file; None for gdlab's own rules

    @property
    def stackable(self) -> bool:
        return self.declaration is not None and self.declaration.stackable and self.declaration.update is not None

    def build(self, params, hyperparameters: Mapping[str, Any], implementation: str) -> torch.optim.Optimizer:
        """The rule's own class ("scratch") or its reference ("torch", single-tensor path)."""
        if implementation == "scratch":
            return self.optimizer(params, **hyperparameters)
        if self.reference is None:
            raise GdlabError(f"rule {self.name!r} has no reference to train with implementation 'torch'")
        extra = {"foreach": False} if "foreach" in inspect.signature(self.reference).parameters else {}
        return self.reference(params, **hyperparameters, **extra)


def _signature_defaults(cls: type) -> dict[str, Any]:
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]  # without self
    defaults = {}
    for parameter in parameters:
        if parameter.name == "params" or parameter.name in IMPLEMENTATION_SWITCHES:
            continue
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        defaults[parameter.name] = REQUIRED if parameter.default is inspect.Parameter.empty else parameter.default
    return defaults


def _from_declaration(name: str, declaration: RuleDeclaration, sha256: str | None = None) -> StudyRule:
    return StudyRule(
        name=name,
        optimizer=declaration.optimizer,
        reference=declaration.reference,
        declaration=declaration,
        defaults=declaration.defaults(),
        log_uniform=frozenset(declaration.log_uniform_names),
        sha256=sha256,
    )


def resolve_rule(name: str, base_dir: str | Path | None = None, reference: str | None = None) -> StudyRule:
    """The rule ``name`` stands for; ``reference`` (a registered rule's name) pairs a user's class
    with it (``implementation = "both"``). GdlabError names what is wrong and what to write.

    A user's file is imported once per version: the result is kept under the file's path, size
    and modification time (at most ``_CACHE_SIZE`` of them), so a study that validates many
    configurations does not import it again, and an edited file is read anew.
    """
    return _resolve(name, str(base_dir) if base_dir is not None else None, reference, _file_version(name, base_dir))


_CACHE_SIZE = 32


def _file_version(name: str, base_dir) -> tuple | None:
    if not is_target(name):
        return None
    where = name.rpartition(":")[0]
    for candidate in ([Path(base_dir) / where] if base_dir is not None else []) + [Path(where)]:
        if candidate.is_file():
            stat = candidate.stat()
            return (str(candidate.resolve()), stat.st_size, stat.st_mtime_ns)
    return None


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _resolve(name: str, base_dir: str | None, reference: str | None, version: tuple | None) -> StudyRule:
    if not isinstance(name, str) or not name:
        raise GdlabError(f"[optimizer] name = {name!r} must be a rule ({', '.join(registry.names())}) "
                         f"or a class of your own, like my_rules.py:Lion")
    if not is_target(name):
        rule = _from_declaration(name, registry.get(name))
        if reference is not None and registry.get(reference).reference is not rule.reference:
            raise GdlabError(
                f"[optimizer] reference = {reference!r} is for a rule of your own; {name!r} is gdlab's and is "
                f"paired with its own torch reference: remove reference"
            )
        return rule
    try:
        user = load_object(name, base_dir)
    except GdlabError:
        raise
    except Exception as error:  # the user's file failed while importing: say so in their terms
        raise GdlabError(f"[optimizer] name = {name!r}: importing it failed: {type(error).__name__}: {error}") from None
    value = user.value
    if isinstance(value, RuleDeclaration):
        rule = _from_declaration(name, value, user.sha256)
    elif isinstance(value, type) and issubclass(value, torch.optim.Optimizer):
        rule = StudyRule(
            name=name,
            optimizer=value,
            reference=None,
            declaration=None,
            defaults=_signature_defaults(value),
            log_uniform=CONVENTIONAL_LOG_UNIFORM,
            sha256=user.sha256,
        )
    else:
        raise GdlabError(
            f"{name!r} is a {type(value).__name__}; a study trains with a torch.optim.Optimizer subclass "
            f"(class Lion(torch.optim.Optimizer): ...) or a gdlab RuleDeclaration"
        )
    if reference is not None:
        declared = registry.get(reference)
        rule = dataclasses.replace(rule, reference=declared.reference)
    return rule
