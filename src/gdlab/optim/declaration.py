r"""One declaration per update rule, from which everything else is derived.

A rule is declared once, in the file that holds its code
(``gdlab/optim/rules/<name>.py``), as a :class:`RuleDeclaration` bound to the
module-level name ``RULE``. The declaration holds, in one place:

- ``name``: what a study file, ``gdlab check --against`` and ``gdlab verify`` call it;
- the pure update, optax-style: ``init(params, hparams) -> state`` builds the
  rule's state (a ``NamedTuple`` whose fields are torch's per-parameter
  ``state_dict`` keys, each a list over ``params``) and
  ``update(params, grads, state, **hparams)`` applies one step in place. The
  Optimizer class, the stacked backend and the checker all build state with
  ``init`` and step with ``update``, so none of them knows a rule's layout;
- ``optimizer``: the thin ``torch.optim.Optimizer`` class users construct;
- ``reference``: the torch class it is bit-for-bit equal to (``foreach=False``),
  or ``None`` with ``reference_source`` saying where the equations come from
  (a rule torch lacks, such as Lion);
- ``hyperparameters``: the schema (kind, default, range, log-uniform in a
  random search, whether stacked members must share it);
- ``verify_grid``: the hyperparameter settings ``gdlab verify`` walks;
- ``variants``: the rule's known mistakes and known variants, which
  ``gdlab check`` names when a user's code departs from the reference.

The study schema, the stacked rules, ``check``'s options, ``verify``'s table,
test parametrizations and the docs' rule lists are all read off the
registered declarations (:mod:`gdlab.optim.registry`): adding a rule is one
file plus its tests.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

# "number": a real number; "flag": True/False; "pair": two numbers (Adam's betas);
# "integer": a whole number (LBFGS's history_size); "choice": one of ``choices``
# (LBFGS's line_search_fn, None included); "optional": a number or None.
HyperparameterKind = Literal["number", "flag", "pair", "integer", "choice", "optional"]

REQUIRED = object()  # the default of a hyperparameter that has none


@dataclass(frozen=True)
class Hyperparameter:
    """One hyperparameter of a rule, as a study file, the CLI and the checks see it.

    ``minimum``/``maximum`` bound a number (or each entry of a pair);
    ``maximum_inclusive=False`` makes the bound open (betas < 1).
    ``log_uniform``: a random search draws it log-uniformly (lr, weight decay, eps).
    ``shared``: stacked members must agree on it, because it chooses the shape
    of the computation (flags, integers, choices); numbers may differ per member.
    ``label`` is torch's own word for it in error messages ("learning rate").
    """

    name: str
    default: Any
    kind: HyperparameterKind = "number"
    minimum: float | None = 0.0
    maximum: float | None = None
    maximum_inclusive: bool = True
    log_uniform: bool = False
    shared: bool | None = None
    choices: tuple = ()
    label: str = ""
    doc: str = ""

    @property
    def is_shared(self) -> bool:
        if self.shared is not None:
            return self.shared
        return self.kind in ("flag", "integer", "choice")

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True)
class Variant:
    """A known departure of hand-written code from the reference rule.

    ``kind``: ``"variant"`` (a recognized formulation: equal to the reference
    under ``condition``, or differing from it in the way ``cause`` states) or
    ``"bug"``. ``update`` has the rule's ``update`` signature and state
    (``init``), and computes what such code computes, so the checker can replay
    it on the user's own gradients; ``applies(hparams)`` says for which
    hyperparameters it is a hypothesis worth testing (a weight-decay mistake
    needs a weight decay). ``init`` overrides the rule's when the variant keeps
    other state.
    """

    name: str
    kind: Literal["variant", "bug"]
    cause: str
    update: Callable[..., None]
    condition: str = ""
    applies: Callable[[Mapping[str, Any]], bool] = lambda hparams: True
    init: Callable[..., Any] | None = None


def flag_grid(base: Mapping[str, Any], **axes: list) -> tuple[dict[str, Any], ...]:
    """``base`` crossed with every combination of ``axes`` (``verify_grid=flag_grid({"lr": 0.01},
    amsgrad=[False, True], ...)``); combinations the reference refuses are skipped by verify."""
    return tuple({**base, **dict(zip(axes, values))} for values in itertools.product(*axes.values()))


@dataclass(frozen=True)
class RuleDeclaration:
    """Everything gdlab knows about one update rule; see the module docstring."""

    name: str
    optimizer: type[torch.optim.Optimizer]
    hyperparameters: tuple[Hyperparameter, ...]
    reference: type[torch.optim.Optimizer] | None
    reference_source: str = ""
    init: Callable[..., Any] | None = None
    update: Callable[..., None] | None = None
    verify_grid: tuple[Mapping[str, Any], ...] = ({},)
    stackable: bool = True
    variants: tuple[Variant, ...] = ()
    # Extra keywords for building the reference (torch's single-tensor path).
    reference_kwargs: Mapping[str, Any] = field(default_factory=lambda: {"foreach": False})
    summary: str = ""
    # The problem ``gdlab verify`` trains both sides on: "mlp" (a small MLP, two param groups),
    # "matrices" (the same MLP's weight matrices only: rules for 2-D parameters, Muon),
    # "sparse" (an embedding bag with sparse gradients: SparseAdam).
    verify_problem: Literal["mlp", "matrices", "sparse"] = "mlp"
    # The rule evaluates the loss itself, several times a step (LBFGS): ``step(closure)``,
    # the closure computing loss and gradients from scratch, is how it is called.
    needs_closure: bool = False

    def defaults(self) -> dict[str, Any]:
        """Every hyperparameter with its default (``REQUIRED`` where there is none)."""
        return {hyperparameter.name: hyperparameter.default for hyperparameter in self.hyperparameters}

    def hyperparameter(self, name: str) -> Hyperparameter:
        for hyperparameter in self.hyperparameters:
            if hyperparameter.name == name:
                return hyperparameter
        raise KeyError(name)

    @property
    def shared_names(self) -> tuple[str, ...]:
        """Hyperparameters stacked members must share (flags and other shape-choosing ones)."""
        return tuple(hyperparameter.name for hyperparameter in self.hyperparameters if hyperparameter.is_shared)

    @property
    def log_uniform_names(self) -> tuple[str, ...]:
        return tuple(hyperparameter.name for hyperparameter in self.hyperparameters if hyperparameter.log_uniform)
