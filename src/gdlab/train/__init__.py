"""Training: ``fit`` (records every iteration), ``evaluate``, the History it returns, named losses."""

from gdlab.train.history import STATUS_DIVERGED, STATUS_OK, History
from gdlab.train.loop import evaluate, fit
from gdlab.train.losses import LOSSES, get_loss

__all__ = ["LOSSES", "STATUS_DIVERGED", "STATUS_OK", "History", "evaluate", "fit", "get_loss"]
