"""Is my training function right? Check a hand-written update rule against torch.optim, step by step.

    report = gdlab.check.check_training_function(
        train_manual_w_decay_mom, against="sgd",
        hparams={"lr": 0.01, "momentum": 0.9, "weight_decay": 0.01},
        renames={"w_decay": "weight_decay", "c_mom": "momentum"},
    )
    report.passed, report.first_divergence, report.likely_cause
    print(report.render())

or from the shell, ``gdlab check my_training.py:train_manual --against sgd --lr 0.01``.
"""

from gdlab.check.checker import DTYPES, check_training_function
from gdlab.check.loading import CannotCheck, load_function
from gdlab.check.report import CheckReport, Divergence
from gdlab.check.rules import RULES

__all__ = [
    "DTYPES",
    "RULES",
    "CannotCheck",
    "CheckReport",
    "Divergence",
    "check_training_function",
    "load_function",
]
