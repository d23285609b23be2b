"""Training: ``fit`` (records every iteration), ``evaluate``, the History it returns, ``get_loss`` (a
declared loss as a trainer calls it); ``fit_stacked`` trains many configurations of one model at once;
``fit_fast`` is ``fit`` for an MLP through the hand-written gradient path, without a host sync per step."""

from gdlab.train.fast import fast_fit_problem, fit_fast, supports_fast_fit
from gdlab.train.history import STATUS_DIVERGED, STATUS_OK, History
from gdlab.train.loop import evaluate, fit
from gdlab.train.losses import get_loss
from gdlab.train.stacked import fit_stacked, supports_stacking

__all__ = [
    "STATUS_DIVERGED",
    "STATUS_OK",
    "History",
    "evaluate",
    "fit",
    "fast_fit_problem",
    "fit_fast",
    "fit_stacked",
    "get_loss",
    "supports_fast_fit",
    "supports_stacking",
]

