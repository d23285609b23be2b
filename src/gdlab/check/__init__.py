"""Is my training function right? Check a hand-written update rule against torch.optim, step by step.

    report = gdlab.check.check_training_function(
        train_manual_w_decay_mom, against="sgd",
        hparams={"lr": 0.01, "momentum": 0.9, "weight_decay": 0.01},
        renames={"w_decay": "weight_decay", "c_mom": "momentum"},
    )
    report.passed, report.first_divergence, report.likely_cause
    print(report.render())

or from the shell, ``gdlab check my_training.py:train_manual --against sgd --lr 0.01``.

Names are imported on first use, so that ``gdlab.check.command`` (and with
it ``gdlab --help``) loads without torch.
"""

import importlib

_EXPORTS = {
    "DTYPES": "gdlab.check.checker",
    "check_training_function": "gdlab.check.checker",
    "CannotCheck": "gdlab.check.loading",
    "load_function": "gdlab.check.loading",
    "CheckReport": "gdlab.check.report",
    "Divergence": "gdlab.check.report",
    "RULES": "gdlab.check.rules",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gdlab.check' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))
