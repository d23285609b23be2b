"""Training: ``fit`` (records every iteration), ``evaluate``, the History it returns, ``get_loss`` (a
declared loss as a trainer calls it); ``fit_stacked`` trains many configurations of one model at once."""

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
    "fit_stacked",
    "get_loss",
    "supports_stacking",
]

