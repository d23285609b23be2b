"""The training loop: ``fit`` records every iteration, ``evaluate`` measures a model on a loader.

Each iteration is the textbook ``zero_grad; loss.backward(); step`` so any
``torch.optim.Optimizer`` (torch's own or gdlab's scratch rules) drives it the
same way. A loss that is NaN or infinite ends the run at once: the optimizer is
not stepped on it, the run is marked diverged, and what was recorded so far is
kept.
"""

import contextlib
import math
import time
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

from gdlab.optim import registry
from gdlab.train.history import STATUS_DIVERGED, History

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def autocast_to(dtype: torch.dtype | None, x: torch.Tensor):
    """``torch.autocast`` to ``dtype`` on ``x``'s device for the forward pass and the loss; nothing for None."""
    return contextlib.nullcontext() if dtype is None else torch.autocast(x.device.type, dtype=dtype)


def evaluate(
    model: torch.nn.Module, loader: Iterable, loss_fn: LossFn = F.cross_entropy, autocast: torch.dtype | None = None
) -> dict:
    """Mean loss per sample and accuracy of ``model`` over every batch of ``loader``.

    Assumes ``loss_fn`` averages over its batch (the default reduction), so each
    batch's loss is weighted by its size. The model's train/eval mode is restored.
    ``autocast``: the lower precision the forward pass ran in during training (as ``fit``'s).
    """
    was_training = model.training
    model.eval()
    loss_sum = 0.0
    correct = 0
    count = 0
    for x, y in loader:
        with autocast_to(autocast, x):
            scores = model(x)
            loss = loss_fn(scores, y)
        loss_sum += loss.item() * len(y)
        correct += (scores.argmax(dim=1) == y).sum().item()
        count += len(y)
    model.train(was_training)
    if count == 0:
        return {"loss": math.nan, "accuracy": math.nan}
    return {"loss": loss_sum / count, "accuracy": correct / count}


def needs_closure(optimizer: torch.optim.Optimizer) -> bool:
    """Whether the optimizer's rule is declared to step through a closure (LBFGS, gdlab's or torch's)."""
    declaration = registry.by_optimizer(type(optimizer))
    return declaration is not None and declaration.needs_closure


def _closure(model, optimizer, loss_fn: LossFn, x, y, autocast: torch.dtype | None) -> Callable[[], torch.Tensor]:
    def closure():
        optimizer.zero_grad(set_to_none=True)
        with autocast_to(autocast, x):
            loss = loss_fn(model(x), y)
        loss.backward()
        return loss

    return closure


def fit(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable,
    epochs: int = 1,
    loss_fn: LossFn = F.cross_entropy,
    val_loader: Iterable | None = None,
    scheduler=None,
    on_iteration: Callable[[int, float], None] | None = None,
    on_epoch: Callable[[int, History], None] | None = None,
    autocast: torch.dtype | None = None,
) -> History:
    """Train ``model`` for ``epochs`` passes over ``loader``; return its History.

    ``scheduler`` (any torch LR scheduler) is stepped once per epoch, as in the
    course notebooks. With ``val_loader`` the model is evaluated after every
    epoch. ``on_iteration(iteration, loss)`` and ``on_epoch(epoch, history)``
    are for progress display. ``autocast`` (e.g. ``torch.bfloat16``): mixed
    precision, as torch's AMP recipe has it: the forward pass and the loss run
    under ``torch.autocast``, the backward pass follows, and the optimizer steps
    outside it, on parameters and gradients in their own dtype.
    """
    history = History()
    started = time.perf_counter()
    iteration = 0
    steps_through_closure = needs_closure(optimizer)
    model.train()
    for epoch in range(epochs):
        history.epoch_learning_rate.append(optimizer.param_groups[0]["lr"])
        # Correct counts stay on the device until the epoch ends: one transfer
        # per epoch instead of one per batch.
        epoch_losses: list[float] = []
        epoch_correct: list[torch.Tensor] = []
        epoch_sizes: list[int] = []
        for x, y in loader:
            optimizer.zero_grad(set_to_none=True)
            with autocast_to(autocast, x):
                scores = model(x)
                loss = loss_fn(scores, y)
            loss_value = loss.item()
            epoch_losses.append(loss_value)
            epoch_correct.append((scores.detach().argmax(dim=1) == y).sum())
            epoch_sizes.append(len(y))
            if not math.isfinite(loss_value):
                history.status = STATUS_DIVERGED
                history.diverged_at_iteration = iteration
                break
            if steps_through_closure:  # LBFGS: the rule evaluates the loss and gradients itself
                optimizer.step(_closure(model, optimizer, loss_fn, x, y, autocast))
            else:
                loss.backward()
                optimizer.step()
            if on_iteration is not None:
                on_iteration(iteration, loss_value)
            iteration += 1
        correct = torch.stack(epoch_correct).tolist() if epoch_correct else []
        history.iteration_loss.extend(epoch_losses)
        history.iteration_accuracy.extend(c / n for c, n in zip(correct, epoch_sizes))
        history.epoch_iterations.append(len(epoch_losses))
        if history.diverged:
            break
        seen = sum(epoch_sizes)
        history.epoch_train_loss.append(
            sum(loss * n for loss, n in zip(epoch_losses, epoch_sizes)) / seen if seen else math.nan
        )
        history.epoch_train_accuracy.append(sum(correct) / seen if seen else math.nan)
        if val_loader is not None:
            val = evaluate(model, val_loader, loss_fn, autocast)
            history.epoch_val_loss.append(val["loss"])
            history.epoch_val_accuracy.append(val["accuracy"])
        if scheduler is not None:
            scheduler.step()
        if on_epoch is not None:
            on_epoch(epoch, history)
    history.seconds = time.perf_counter() - started
    return history
