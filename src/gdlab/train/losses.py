"""Losses a study can name, each taking raw scores (logits) and integer labels.

``nll`` is the course's ``log_softmax`` + ``nll_loss`` pair (equal to
cross-entropy); ``mse`` compares scores with one-hot targets, as the
backpropagation course project does. All use mean reduction.
"""

import torch
import torch.nn.functional as F

from gdlab.errors import GdlabError


def nll_of_log_softmax(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.nll_loss(F.log_softmax(scores, dim=1), labels)


def mse_one_hot(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    targets = F.one_hot(labels, num_classes=scores.shape[1]).to(scores.dtype)
    return F.mse_loss(scores, targets)


LOSSES = {
    "cross_entropy": F.cross_entropy,
    "nll": nll_of_log_softmax,
    "mse": mse_one_hot,
}


def get_loss(name: str):
    if name not in LOSSES:
        raise GdlabError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return LOSSES[name]
