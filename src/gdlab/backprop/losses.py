r"""The losses gdlab knows, each declared once: its target, its reduction, its value, its gradient.

A name means one loss everywhere: a study's ``[train] loss`` (through
``gdlab.train.get_loss``, what ``fit`` and ``fit_stacked`` are given),
``MLP.backward(loss=)`` and ``check_mlp_backward(loss=)``. With scores ``y``
of shape (N, C):

cross_entropy  target: integer class labels t, shape (N,)         mean over the N samples
               L = (1/N) Σ_n [logsumexp(y_n) - y_n[t_n]]           (F.cross_entropy)
               dL/dy = (softmax(y) - onehot(t)) / N
nll            the course's log_softmax then nll_loss: the same function as
               cross_entropy, written as two steps; same target, reduction, gradient
mse            target: a float tensor T shaped like the scores     mean over all N·C entries
               L = (1/(N·C)) Σ (y - T)²                            (F.mse_loss)
               dL/dy = 2 (y - T) / (N·C)

A trainer's data are class labels, so it hands a loss on targets shaped like
the scores their one-hot rows: ``mse`` on labels t is ``mse`` with T = onehot(t),
the same function (``gdlab.train.get_loss`` does that, in one place).

``forward`` is torch's own function (taking ``reduction=``: the gradient
check's reference); ``gradient`` is the closed form of the mean loss's
gradient, for scores with any leading dimensions (K stacked members: (K, N, C)).
"""

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

# Targets
LABELS = "integer class labels, shape (N,)"
LIKE_SCORES = "a float tensor shaped like the scores (N, C)"
# Reductions: what the mean divides by
MEAN_OVER_SAMPLES = "the N samples"
MEAN_OVER_ENTRIES = "all N·C entries"


@dataclass(frozen=True)
class Loss:
    """One loss, as every part of gdlab uses it; see the module docstring."""

    name: str
    targets: str  # LABELS or LIKE_SCORES
    mean_over: str  # MEAN_OVER_SAMPLES or MEAN_OVER_ENTRIES
    forward: Callable[..., Tensor]  # forward(scores, target, reduction="mean"), torch's own
    gradient: Callable[[Tensor, Tensor], Tensor]  # (scores, target) -> dL/dscores of the mean loss
    gradient_formula: str  # the gradient before the reduction divides it, as error messages write it


def cross_entropy_and_gradient(scores: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    r"""``F.cross_entropy`` (mean) and its gradient with respect to the scores, in closed form, in one pass.

    ``scores``: (N, C), or (K, N, C) for K members, with ``labels`` (N,) that they
    share or (K, N), each member's own (then one loss per member, shape (K,)). With :math:`p_n = \mathrm{softmax}(s_n)`:
    :math:`L = -\frac1N \sum_n \log p_n[y_n]` and
    :math:`\partial L / \partial s_n = (p_n - \mathrm{onehot}(y_n)) / N`.
    ``log_softmax`` subtracts each row's maximum first, so exp never overflows
    however large the scores. Equal to F.cross_entropy and its autograd
    gradient up to rounding (integer labels 0..C-1; no ignore_index, weights or
    label smoothing).
    """
    samples = labels.shape[-1]
    leading = scores.shape[:-1]  # (N,) or (K, N)
    log_probabilities = torch.log_softmax(scores, dim=-1)
    label_index = labels.view(*([1] * (scores.dim() - labels.dim() - 1)), *labels.shape, 1).expand(*leading, 1)
    losses = log_probabilities.gather(-1, label_index).mean(dim=(-2, -1)).neg_()
    minus_one = torch.full((1,) * scores.dim(), -1.0, dtype=scores.dtype, device=scores.device)
    gradients = log_probabilities.exp_().scatter_add_(-1, label_index, minus_one.expand(*leading, 1))
    return losses, gradients.div_(samples)


def cross_entropy_gradient(scores: Tensor, labels: Tensor) -> Tensor:
    return cross_entropy_and_gradient(scores, labels)[1]


def nll_of_log_softmax(scores: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
    """The course's ``log_softmax`` + ``nll_loss`` pair: cross-entropy in two steps."""
    return F.nll_loss(F.log_softmax(scores, dim=1), labels, reduction=reduction)


def mse_gradient(scores: Tensor, targets: Tensor) -> Tensor:
    return 2 * (scores - targets) / (scores.shape[-2] * scores.shape[-1])


SOFTMAX_MINUS_ONE_HOT = "(softmax(y_pred) - onehot(y_true))"

# nll is cross-entropy written in two steps: the same function, so the same gradient.
LOSSES = {
    "cross_entropy": Loss(
        "cross_entropy", LABELS, MEAN_OVER_SAMPLES, F.cross_entropy, cross_entropy_gradient, SOFTMAX_MINUS_ONE_HOT
    ),
    "nll": Loss("nll", LABELS, MEAN_OVER_SAMPLES, nll_of_log_softmax, cross_entropy_gradient, SOFTMAX_MINUS_ONE_HOT),
    "mse": Loss("mse", LIKE_SCORES, MEAN_OVER_ENTRIES, F.mse_loss, mse_gradient, "2 (y_pred - y_true)"),
}


def target_problem(loss: Loss, y_pred: Tensor, y_true: Tensor, target: str = "y_true") -> str | None:
    """What is wrong with ``y_true`` as ``loss``'s target for ``y_pred`` (N, C), with the fix; None if nothing.

    ``target`` is what the caller's user calls it, for the message.
    """
    got = f"got {y_true.dtype} of shape {tuple(y_true.shape)}"
    if loss.targets == LIKE_SCORES:
        if y_true.shape != y_pred.shape:
            return (
                f"loss={loss.name!r} needs {target} shaped like y_pred {tuple(y_pred.shape)}, {got}; for class "
                f"labels pass F.one_hot(labels, num_classes).to(y_pred.dtype), or loss='cross_entropy'"
            )
        if not y_true.is_floating_point():
            return f"loss={loss.name!r} needs floating-point {target}, {got}; convert it with {target}.to(y_pred.dtype)"
        return None
    if y_true.shape != y_pred.shape[:1] or y_true.is_floating_point() or y_true.dtype == torch.bool:
        return (
            f"loss={loss.name!r} needs integer class labels of shape ({y_pred.shape[0]},), {got}; "
            f"for one-hot targets pass {target}.argmax(dim=1)"
        )
    classes = y_pred.shape[1]
    if len(y_true) and (y_true.min() < 0 or y_true.max() >= classes):
        return (
            f"labels must lie in 0..{classes - 1} for {classes} outputs, "
            f"got values from {int(y_true.min())} to {int(y_true.max())}"
        )
    return None


def names_by_target() -> str:
    """The loss names grouped by target, for error messages: which to use for which data."""
    like_scores = ", ".join(repr(name) for name, loss in LOSSES.items() if loss.targets == LIKE_SCORES)
    labels = ", ".join(repr(name) for name, loss in LOSSES.items() if loss.targets == LABELS)
    return f"{like_scores} (targets shaped like y_pred) or {labels} (integer class labels)"
