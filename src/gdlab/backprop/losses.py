"""Losses with mean reduction, each with its gradient with respect to the
network output right beside it.

mse:            L = (1/n) Σ (y - t)²                 over all n = N·C elements
                dL/dy = 2 (y - t) / n                (as F.mse_loss)
cross_entropy:  L = (1/N) Σ_i [logsumexp(y_i) - y_i[t_i]]   for integer labels t
                dL/dy = (softmax(y) - onehot(t)) / N          (as F.cross_entropy)

Softmax and logsumexp subtract each row's maximum first: exp never
overflows, and the result is unchanged because softmax(y - c) = softmax(y).
"""

from typing import Callable, NamedTuple

import torch


class Loss(NamedTuple):
    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    gradient: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (y_pred, y_true) -> dL/dy_pred


def mse(y_pred, y_true):
    return ((y_pred - y_true) ** 2).mean()


def mse_gradient(y_pred, y_true):
    return 2 * (y_pred - y_true) / y_pred.numel()


def _shifted(logits):
    return logits - logits.max(dim=1, keepdim=True).values


def cross_entropy(logits, labels):
    shifted = _shifted(logits)
    log_probabilities = shifted - shifted.exp().sum(dim=1, keepdim=True).log()
    return -log_probabilities.gather(1, labels[:, None]).mean()


def cross_entropy_gradient(logits, labels):
    exponentials = _shifted(logits).exp()
    probabilities = exponentials / exponentials.sum(dim=1, keepdim=True)
    rows = torch.arange(len(labels), device=labels.device)
    probabilities[rows, labels] -= 1
    return probabilities / len(labels)


LOSSES = {
    "mse": Loss(mse, mse_gradient),
    "cross_entropy": Loss(cross_entropy, cross_entropy_gradient),
}
