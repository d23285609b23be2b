"""The losses as a trainer calls them: ``loss(scores, labels)``, labels the integer classes of the data.

Each loss is declared once, in :data:`gdlab.backprop.LOSSES` (its target, its
reduction, its value and gradient). A loss on class labels (``cross_entropy``,
``nll``) is called as declared. A loss on targets shaped like the scores
(``mse``) is handed each label's one-hot row: ``mse`` in a study is
``F.mse_loss(scores, onehot(labels))``, the very loss ``MLP.backward(loss="mse")``
and ``check_mlp_backward(loss="mse")`` differentiate for that target.
"""

import functools

import torch
import torch.nn.functional as F

from gdlab.backprop.losses import LABELS, LOSSES, Loss
from gdlab.errors import GdlabError
from gdlab.train.loop import LossFn


def get_loss(name: str) -> LossFn:
    """The loss ``name`` as a function of (scores, integer labels), mean over the batch."""
    if not isinstance(name, str) or name not in LOSSES:
        raise GdlabError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return _on_labels(name)


@functools.cache  # one function per name, so that every caller gets the same one
def _on_labels(name: str) -> LossFn:
    loss = LOSSES[name]
    if loss.targets == LABELS:
        return loss.forward
    return _on_one_hot_rows(loss)


def _on_one_hot_rows(loss: Loss) -> LossFn:
    def on_one_hot_rows(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return loss.forward(scores, F.one_hot(labels, num_classes=scores.shape[1]).to(scores.dtype))

    on_one_hot_rows.__name__ = on_one_hot_rows.__qualname__ = f"{loss.name}_one_hot"
    return on_one_hot_rows
