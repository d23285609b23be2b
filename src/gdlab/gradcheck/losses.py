"""The loss a backward pass is checked against, and how it reduces over the batch and the outputs.

A loss is a name of :data:`gdlab.backprop.LOSSES` (the one table of losses:
"mse", "cross_entropy", "nll", each with its target) with a reduction ("mean"
or "sum"), or the user's own callable ``loss(y_pred, y_true)``, used as given.
What a reduction changes is a constant factor: the summed squared error over an
N x C output is N·C times the mean one, and its gradient too. So the check
needs to know, for the loss given, whether it averages or sums over the batch
(N) and over the outputs of one example (C); for a callable that is measured,
not assumed: the loss of the batch repeated twice is the same for a mean and
twice as large for a sum (the same with the outputs repeated, for a loss taken
element by element).
"""

from dataclasses import dataclass
from typing import Callable

import torch

from gdlab.backprop.losses import LABELS, LOSSES, MEAN_OVER_ENTRIES, names_by_target
from gdlab.errors import GdlabError

REDUCTIONS = ("mean", "sum")
# How close the loss of a doubled batch must be to 1x or 2x the loss to read it as a mean or a sum.
PROBE_RTOL = 1e-9


@dataclass(frozen=True)
class Reduction:
    """How a loss reduces: "mean", "sum", or None (unknown, or no such dimension) per dimension."""

    batch: str | None
    outputs: str | None

    def flipped(self, batch: bool, outputs: bool) -> "Reduction":
        flip = {"mean": "sum", "sum": "mean", None: None}
        return Reduction(flip[self.batch] if batch else self.batch, flip[self.outputs] if outputs else self.outputs)

    def describe(self, n: int, c: int) -> str:
        """'the summed loss (over all 12 x 2 elements of y_pred)', 'the loss averaged over the batch', ..."""
        if self.outputs is None or self.batch is None:
            known = self.batch or self.outputs
            over = "the batch" if self.batch else "the outputs"
            if known is None:
                return "the loss"
            return f"the loss {'summed' if known == 'sum' else 'averaged'} over {over}"
        if self.batch == self.outputs:
            word = "summed" if self.batch == "sum" else "mean"
            verb = "summed" if self.batch == "sum" else "averaged"
            return f"the {word} loss ({verb} over all {n} x {c} elements of y_pred)"
        summed, averaged = ("the batch", "the outputs") if self.batch == "sum" else ("the outputs", "the batch")
        return f"the loss summed over {summed} and averaged over {averaged}"

    def short(self) -> str:
        """A few words for a table title: 'summed loss', 'mean loss', 'loss summed over the outputs'."""
        if self.batch == self.outputs and self.batch is not None:
            return "summed loss" if self.batch == "sum" else "mean loss"
        parts = [f"{'summed' if red == 'sum' else 'averaged'} over {over}"
                 for red, over in ((self.batch, "the batch"), (self.outputs, "the outputs")) if red]
        return "loss " + " and ".join(parts) if parts else "loss"


@dataclass(frozen=True)
class LossSpec:
    function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    name: str | None  # a name of gdlab.backprop.LOSSES, or None for the user's own callable
    reduction: Reduction
    label: str  # how the report names it: 'mse (reduction="sum")', 'your loss summed_loss'

    @property
    def elementwise(self) -> bool:
        """True when y is shaped like y_pred (a loss over every output), False for class labels."""
        return self.name is None or LOSSES[self.name].targets != LABELS


def resolve_loss(loss, reduction: str) -> tuple[Callable | str, str]:
    """Validate ``loss`` and ``reduction`` as given; the spec itself needs the data (see ``loss_spec``)."""
    if reduction not in REDUCTIONS:
        raise GdlabError(f"check_mlp_backward: reduction must be 'mean' or 'sum', got {reduction!r}")
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise GdlabError(
                f"check_mlp_backward: unknown loss {loss!r}; use loss={names_by_target()} "
                "(with reduction='mean' or 'sum'), or pass your own loss function: loss=my_loss"
            )
        return loss, reduction
    if not callable(loss):
        raise GdlabError(
            f"check_mlp_backward: loss must be a name ({', '.join(map(repr, LOSSES))}) or a function "
            f"loss(y_pred, y_true), got {type(loss).__name__}"
        )
    return loss, reduction


def loss_spec(loss, reduction: str, y_pred: torch.Tensor, y: torch.Tensor) -> LossSpec:
    """The loss as a function of (y_pred, y) and its reduction, measured for a callable."""
    if isinstance(loss, str):
        declared = LOSSES[loss]

        def function(prediction, target):
            return declared.forward(prediction, target, reduction=reduction)

        outputs = reduction if declared.mean_over == MEAN_OVER_ENTRIES else None
        return LossSpec(function, loss, Reduction(reduction, outputs), f'{loss} (reduction="{reduction}")')
    name = getattr(loss, "__name__", None) or type(loss).__name__
    label = "your loss function" if name == "<lambda>" else f"your loss {name}"
    value = _call(loss, y_pred, y, label)
    return LossSpec(loss, None, Reduction(*_probe(loss, y_pred, y, value)), label)


def _call(loss, y_pred, y, label):
    try:
        value = loss(y_pred, y)
    except Exception as error:  # the user's code: say which call failed and how it was made
        raise GdlabError(
            f"check_mlp_backward: {label} failed when called as loss(y_pred, y) with y_pred "
            f"{tuple(y_pred.shape)} {y_pred.dtype} and y {tuple(y.shape)} {y.dtype}: "
            f"{type(error).__name__}: {error}"
        ) from error
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise GdlabError(
            f"check_mlp_backward: {label} returned {shape}, not one number; a backward pass is the "
            "gradient of a scalar loss, so reduce it the way you train (for nn.MSELoss(reduction='none'): "
            "loss=lambda y_pred, y: mse(y_pred, y).sum())"
        )
    if value.dtype != torch.float64:
        raise GdlabError(
            f"check_mlp_backward: {label} returned {value.dtype} for float64 y_pred; the check runs in "
            "float64, so the loss must too (make tensors it creates with dtype=y_pred.dtype)"
        )
    return value.detach()


def _probe(loss, y_pred, y, value):
    """("mean" | "sum" | None, "mean" | "sum" | None): how the loss reduces over the batch and the outputs."""
    if value.item() == 0:
        return None, None
    with torch.no_grad():
        batch = _ratio(loss, torch.cat([y_pred, y_pred]), torch.cat([y, y]), value)
        outputs = None
        if y.shape == y_pred.shape and y_pred.dim() == 2 and y.is_floating_point():
            outputs = _ratio(loss, torch.cat([y_pred, y_pred], 1), torch.cat([y, y], 1), value)
    return batch, outputs


def _ratio(loss, y_pred, y, value):
    try:
        doubled = loss(y_pred, y)
        ratio = (doubled / value).item()
    except Exception:  # a loss that cannot take a doubled batch simply stays unknown
        return None
    if abs(ratio - 1) <= PROBE_RTOL:
        return "mean"
    if abs(ratio - 2) <= 2 * PROBE_RTOL:
        return "sum"
    return None
