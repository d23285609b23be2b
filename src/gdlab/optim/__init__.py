"""Update rules from scratch, bit-for-bit equal to ``torch.optim`` (``foreach=False``).

Every rule is declared once, in its module of :mod:`gdlab.optim.rules`
(:class:`~gdlab.optim.declaration.RuleDeclaration`): its pure update
(``init``/``update`` over lists of tensors, the docstring stating the
equations), its thin ``torch.optim.Optimizer`` class, its torch reference and
its hyperparameters. :mod:`gdlab.optim.registry` collects them; this package
exports each rule's class under torch's name (``gdlab.optim.SGD``,
``gdlab.optim.NAdam`` ...), so param groups, ``state_dict`` and torch's LR
schedulers work on them as on torch's own.
"""

from gdlab.optim import functional, registry  # noqa: F401  (public submodules)

# Every registered rule's class under torch's name: gdlab.optim.SGD, gdlab.optim.NAdam, ...
for _declaration in registry.declarations():
    globals()[_declaration.optimizer.__name__] = _declaration.optimizer

__all__ = sorted(
    {declaration.optimizer.__name__ for declaration in registry.declarations()} | {"functional", "registry"}
)
del _declaration
