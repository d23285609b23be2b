"""Is my optimizer right? Check hand-written update code against torch.optim, step by step.

    report = gdlab.check.check(
        train_manual_w_decay_mom,              # a training function, an update function or an Optimizer class
        against="sgd",
        hparams={"lr": 0.01, "momentum": 0.9, "weight_decay": 0.01},
    )
    report.passed, report.first_divergence, report.likely_cause, report.kind
    print(report.render())

or from the shell, ``gdlab check my_training.py:train_manual --against sgd --lr 0.01``
(``--json`` for one JSON object; exit 0 pass, 1 fail, 2 cannot check, 130 Ctrl-C;
``--timeout SECONDS`` bounds how long the code may run, see `gdlab.check.containment`).

Names are imported on first use, so that ``gdlab.check.command`` (and with
it ``gdlab --help``) loads without torch.
"""

import importlib

_EXPORTS = {
    "DTYPES": "gdlab.check.checker",
    "check": "gdlab.check.checker",
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
