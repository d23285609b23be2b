r"""``fit_fast``: what ``fit`` does for a gdlab MLP, through the stacked code's gradient path at K = 1.

Only the gradient path differs from :func:`gdlab.train.fit`. Instead of
autograd over the model's modules, each step runs the stacked MLP's forward
pass (:class:`gdlab.train.stacked.models.StackedMLP`, one member), the loss
and its gradient with respect to the scores (cross-entropy in closed form,
:mod:`gdlab.train.stacked.score_gradients`) and gdlab's one MLP backward pass
(:func:`gdlab.backprop.mlp_backward`), which writes the gradients into
buffers kept from step to step: the parameters' own ``.grad``. Then
``optimizer.step()`` runs, whatever the optimizer: a gdlab scratch rule or
torch's own, exactly as in ``fit``. Hence:

- a rule's parameters differ from ``fit``'s only by the rounding of the
  gradients (the matrix products are summed in another order), within the
  tolerances ``fit_stacked`` is held to (``tests/test_stacked.py``);
- two optimizers trained with ``fit_fast`` from one start on one batch order
  (a scratch/torch pair) get bit-identical gradients for as long as their
  parameters are equal, so bit-exact rules stay bit-equal: the pair's
  difference stays 0, as it does under ``fit``.

No host synchronization per step: each iteration's loss and correct count
stay on the device until the epoch ends and are read in one transfer. A
non-finite loss is therefore found at the end of its epoch; the epoch is then
replayed from its start (parameters and optimizer state saved when it began,
the loader set back with ``set_epoch``), reading each loss as it comes, so the
run stops where ``fit`` stops: before the step on the first non-finite loss,
its parameters as they gave that loss. A loader without ``set_epoch`` and
``epoch`` (``gdlab.data.TensorLoader`` has both), or an ``on_iteration``
callback, which needs every loss as a number at once, make every epoch read
its losses as they come.
"""

import copy
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gdlab.backprop.backward import mlp_backward
from gdlab.errors import GdlabError
from gdlab.train.history import STATUS_DIVERGED, History
from gdlab.train.loop import LossFn, evaluate, needs_closure
from gdlab.train.stacked.models import StackedMLP, stacked_model, supports_stacking
from gdlab.train.stacked.score_gradients import losses_and_score_gradients, score_gradients


def fast_fit_problem(model: nn.Module, optimizer: torch.optim.Optimizer) -> str | None:
    """Why ``fit_fast`` cannot train ``model`` with ``optimizer``, with what to do; None when it can."""
    if not supports_stacking(model) or not isinstance(stacked_model(model), StackedMLP):
        return (
            f"fit_fast trains gdlab.models.MLP only (its gradients come from gdlab's hand-written MLP "
            f"backward pass), got {type(model).__name__}; use gdlab.train.fit"
        )
    frozen = [name for name, param in model.named_parameters() if not param.requires_grad]
    if frozen:
        return (
            f"fit_fast computes every parameter's gradient, but {', '.join(frozen)} has requires_grad=False; "
            f"use gdlab.train.fit for partly frozen models"
        )
    if needs_closure(optimizer):
        return (
            f"{type(optimizer).__name__} evaluates the loss itself through a closure, which needs autograd; "
            f"use gdlab.train.fit"
        )
    return None


def supports_fast_fit(model: nn.Module, optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``fit_fast`` can train ``model`` with ``optimizer`` (see ``fast_fit_problem``)."""
    return fast_fit_problem(model, optimizer) is None


def fit_fast(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable,
    epochs: int = 1,
    loss_fn: LossFn = F.cross_entropy,
    val_loader: Iterable | None = None,
    scheduler=None,
    on_iteration: Callable[[int, float], None] | None = None,
    on_epoch: Callable[[int, History], None] | None = None,
) -> History:
    """``fit``'s arguments and History, through the hand-written MLP gradient path (module docstring).

    ``model``: a ``gdlab.models.MLP``; ``optimizer``: any ``torch.optim.Optimizer``
    that steps without a closure; ``loss_fn(scores, labels)`` must average over
    the batch, as ``fit``'s does. Anything else is a GdlabError naming why
    (``fast_fit_problem``).
    """
    problem = fast_fit_problem(model, optimizer)
    if problem is not None:
        raise GdlabError(problem)
    gradient_path = _GradientPath(model, loss_fn)
    replayable = on_iteration is None and hasattr(loader, "set_epoch") and hasattr(loader, "epoch")
    history = History()
    started = time.perf_counter()
    iteration = 0
    model.train()
    for epoch in range(epochs):
        history.epoch_learning_rate.append(optimizer.param_groups[0]["lr"])
        gradient_path.attach()
        if replayable:
            start = _EpochStart(model, optimizer, loader)
            figures = _train_epoch(gradient_path, optimizer, loader, read_each_loss=False)
            if figures.diverged_at is not None:
                start.restore()
                figures = _train_epoch(gradient_path, optimizer, loader, read_each_loss=True)
        else:
            figures = _train_epoch(gradient_path, optimizer, loader, read_each_loss=True, on_iteration=on_iteration,
                                   first_iteration=iteration)
        history.iteration_loss.extend(figures.losses)
        history.iteration_accuracy.extend(c / n for c, n in zip(figures.correct, figures.sizes))
        history.epoch_iterations.append(len(figures.losses))
        if figures.diverged_at is not None:
            history.status = STATUS_DIVERGED
            history.diverged_at_iteration = iteration + figures.diverged_at
            break
        iteration += len(figures.losses)
        seen = sum(figures.sizes)
        history.epoch_train_loss.append(
            sum(loss * n for loss, n in zip(figures.losses, figures.sizes)) / seen if seen else math.nan
        )
        history.epoch_train_accuracy.append(sum(figures.correct) / seen if seen else math.nan)
        if val_loader is not None:
            val = evaluate(model, val_loader, loss_fn)
            history.epoch_val_loss.append(val["loss"])
            history.epoch_val_accuracy.append(val["accuracy"])
        if scheduler is not None:
            scheduler.step()
        if on_epoch is not None:
            on_epoch(epoch, history)
    history.seconds = time.perf_counter() - started
    return history


class _GradientPath:
    """The model's parameters as one stacked member, and the step from a batch to their ``.grad``."""

    def __init__(self, model: nn.Module, loss_fn: LossFn):
        self.parameters = list(model.parameters())
        self.network = stacked_model(model)
        self.loss_fn = loss_fn
        # Views of the model's own tensors: the optimizer's in-place updates are what the next step reads.
        self.stacked = [param.detach().unsqueeze(0) for param in self.parameters]
        self.gradients = [torch.empty_like(param) for param in self.stacked]

    def attach(self) -> None:
        """Make the kept gradient buffers the parameters' ``.grad`` (again, should anything have reset them)."""
        for param, gradient in zip(self.parameters, self.gradients):
            if param.grad is None or param.grad.data_ptr() != gradient.data_ptr():
                param.grad = gradient[0]

    @torch.no_grad()
    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, tuple]:
        """The loss (shape (1,)) and correct count on (x, y), on the device, and what ``backward`` needs."""
        scores, saved = self.network.forward(self.stacked, x)
        losses, gradients_of_scores = losses_and_score_gradients(self.loss_fn, scores, y)
        correct = (scores.argmax(dim=-1) == y).sum(dim=1)
        return losses, correct, (scores, saved, y, gradients_of_scores)

    def backward(self, pending: tuple) -> None:
        """Write dL/dparams of the last ``forward``'s batch into the parameters' ``.grad``."""
        scores, (layer_inputs, pre_activations), y, gradients_of_scores = pending
        if gradients_of_scores is None:
            gradients_of_scores = score_gradients(self.loss_fn, scores, y, [0])
        with torch.no_grad():
            mlp_backward(
                self.stacked[0::2], layer_inputs, pre_activations, gradients_of_scores,
                self.network.activation.derivative, out=self.gradients,
            )


@dataclass
class _EpochFigures:
    losses: list[float] = field(default_factory=list)
    correct: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    diverged_at: int | None = None  # index in the epoch of the first non-finite loss


def _train_epoch(
    gradient_path: _GradientPath, optimizer, loader, read_each_loss: bool, on_iteration=None, first_iteration=0,
) -> _EpochFigures:
    """One pass over ``loader``. Reading each loss as it comes, the pass stops before the step on the
    first non-finite one; otherwise every batch is stepped on and the losses are read at the end."""
    losses: list[Tensor] = []
    correct: list[Tensor] = []
    sizes: list[int] = []
    for x, y in loader:
        loss, batch_correct, pending = gradient_path.forward(x, y)
        losses.append(loss)
        correct.append(batch_correct)
        sizes.append(len(y))
        if read_each_loss:
            value = loss.item()
            if not math.isfinite(value):
                break
        gradient_path.backward(pending)
        optimizer.step()
        if on_iteration is not None:
            on_iteration(first_iteration + len(losses) - 1, value)
    if not losses:
        return _EpochFigures()
    figures = _EpochFigures(torch.cat(losses).tolist(), torch.cat(correct).tolist(), sizes)
    figures.diverged_at = next((index for index, value in enumerate(figures.losses) if not math.isfinite(value)), None)
    return figures


class _EpochStart:
    """The parameters, the optimizer's state and the loader's epoch as an epoch began, to replay it."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, loader):
        self.model, self.optimizer, self.loader = model, optimizer, loader
        self.parameters = [param.detach().clone() for param in model.parameters()]
        self.optimizer_state = copy.deepcopy(optimizer.state_dict())
        self.epoch = loader.epoch

    @torch.no_grad()
    def restore(self) -> None:
        for param, saved in zip(self.model.parameters(), self.parameters):
            param.copy_(saved)
        self.optimizer.load_state_dict(self.optimizer_state)
        self.loader.set_epoch(self.epoch)
