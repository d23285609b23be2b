"""Every member's loss and dL_k/dscores_k, the start of the stacked backward pass.

Cross-entropy, the declared one (:data:`gdlab.backprop.LOSSES`), has its closed
form for all members in one pass; any other loss gets its gradient from one
autograd call over the kept members' rows.
"""

import torch
from torch import Tensor

from gdlab.backprop.losses import LOSSES, cross_entropy_and_gradient
from gdlab.train.loop import LossFn

CROSS_ENTROPY = LOSSES["cross_entropy"].forward


def losses_and_score_gradients(
    loss_fn: LossFn, scores: Tensor, y: Tensor, per_member: bool = False
) -> tuple[Tensor, Tensor | None]:
    """Every member's loss ``loss_fn(scores_k, y)`` (``y[k]`` when ``per_member``: each member's
    own labels), shape (K,); and dL_k/dscores_k now when it comes at no extra cost
    (cross-entropy), else None: ``score_gradients`` computes it."""
    if (loss_fn is CROSS_ENTROPY and scores.dim() == 3 and y.dim() == 1 + per_member
            and not y.is_floating_point()):
        return cross_entropy_and_gradient(scores, y)
    targets = y if per_member else [y] * len(scores)
    return torch.stack([loss_fn(member_scores, target) for member_scores, target in zip(scores, targets)]), None


def score_gradients(
    loss_fn: LossFn, scores: Tensor, y: Tensor, kept_slots: list[int], per_member: bool = False
) -> Tensor:
    """dL_k/dscores_k for the kept members k (zero for the others), from one call of ``loss_fn``.

    For a loss that averages over the samples of its batch, the mean over the
    M kept members' M*N rows is the mean of their losses, so
    ``M * loss_fn(their rows, labels repeated)`` = sum_k L_k, whose gradient
    with respect to member k's scores is dL_k/dscores_k: a few small
    operations per iteration instead of M times as many.
    """
    scores = scores.detach().requires_grad_()
    kept = scores if len(kept_slots) == len(scores) else scores[kept_slots]
    if per_member:  # each member's own labels, (K, N, ...)
        labels = (y if len(kept_slots) == len(scores) else y[kept_slots]).flatten(0, 1)
    else:
        labels = y.repeat(len(kept), *([1] * (y.dim() - 1)))
    with torch.enable_grad():
        (len(kept) * loss_fn(kept.flatten(0, 1), labels)).backward()
    return scores.grad
