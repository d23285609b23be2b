"""One module per update rule, each binding ``RULE`` to its :class:`~gdlab.optim.declaration.RuleDeclaration`.

:mod:`gdlab.optim.registry` finds them; nothing else lists the rules.
"""
