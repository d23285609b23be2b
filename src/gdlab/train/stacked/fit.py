"""``fit_stacked``: the epoch loop of members training together, chunk after chunk."""

import itertools
import math
import time
from collections.abc import Callable, Iterable

import torch.nn.functional as F
from torch import nn

from gdlab.errors import GdlabError
from gdlab.train.history import STATUS_DIVERGED, History
from gdlab.train.loop import LossFn
from gdlab.train.stacked.arguments import check_count, check_learning_rates
from gdlab.train.stacked.chunks import EpochBatches, MemberLoaders, chunk_size
from gdlab.train.stacked.hparams import Rule, declaration_of, normalize_hparams
from gdlab.train.stacked.models import check_same_architecture, write_member
from gdlab.train.stacked.records import EpochRecord
from gdlab.train.stacked.stack import Stack

IterationCallback = Callable[[int, dict[int, float]], None]


def fit_stacked(
    models: list[nn.Module],
    rule: Rule,
    hparams: list[dict],
    loader: Iterable,
    epochs: int = 1,
    loss_fn: LossFn = F.cross_entropy,
    val_loader: Iterable | None = None,
    learning_rates: list[list[float]] | None = None,
    on_iteration: IterationCallback | None = None,
    max_members: int | None = None,
) -> list[History]:
    """Train ``models[k]`` with ``rule`` and ``hparams[k]`` for every k at once; one History each.

    ``models``: K models of one architecture (``supports_stacking``), each
    already initialized; their trained parameters are written back into them.
    ``rule``: the name of a registered rule whose declaration is stackable
    (``gdlab.optim.registry.names()``), or a user's own
    :class:`~gdlab.optim.declaration.RuleDeclaration`;
    ``hparams[k]``: member k's keyword arguments of the rule's class (missing
    ones take its declared defaults). Numbers may differ between members; the
    hyperparameters the declaration marks shared (flags) must not.
    ``loss_fn(scores, labels)`` must average over the batch. ``learning_rates[e][k]``
    is member k's learning rate in epoch e (a schedule; ``gdlab.study`` reads
    them off torch's scheduler, one param group per member, so that any
    schedule, ``eta_min`` of a cosine included, is torch's exactly); without
    it every member keeps its ``hparams`` lr.
    ``loader``: the training loader all members share, or
    :class:`~gdlab.train.stacked.MemberLoaders`, one loader per member (runs of
    different seeds, each with its own batch order); members handed one loader
    object share its batches.
    ``on_iteration(iteration, {member: loss})`` is called after every step with
    the members that took it. ``max_members`` caps how many train together;
    fewer do when memory is short (``max_members_in_memory``).

    Each History's ``seconds`` is its chunk's wall time divided by the chunk's
    members: stacked members share every step, so the shares add up to the time taken.
    """
    check_same_architecture(models)
    settings = normalize_hparams(rule, hparams, len(models))
    check_count("epochs", epochs, minimum=0)
    if max_members is not None:
        check_count("max_members", max_members, minimum=1)
    rates = check_learning_rates(learning_rates, epochs, [member["lr"] for member in settings])
    if isinstance(loader, MemberLoaders):
        if len(loader.loaders) != len(models):
            raise GdlabError(f"fit_stacked: MemberLoaders holds {len(loader.loaders)} loaders for {len(models)} "
                             f"models; give one loader per model")
        loaders, lane_of = loader.lanes()
    else:
        loaders, lane_of = [loader], [0] * len(models)
    batches = EpochBatches(loaders)
    histories = [History() for _ in models]
    # Lane by lane, so that each lane's members are consecutive in the stack (stable: in order within a lane).
    pending = sorted(range(len(models)), key=lambda member: lane_of[member])
    while pending:
        trained = _train_chunk(
            models, pending, rule, settings, batches, epochs, loss_fn, val_loader, rates,
            on_iteration, max_members, histories, lane_of,
        )
        pending = pending[len(trained):]
    return histories


def _train_chunk(
    models, pending, rule, settings, batches, epochs, loss_fn, val_loader, rates, on_iteration, max_members,
    histories, lane_of,
) -> list[int]:
    """Train the first chunk of ``pending`` members from the first epoch to the last; return that chunk."""
    started = time.perf_counter()
    stack = None
    iteration = 0
    for epoch in range(epochs):
        epoch_batches = batches.of_epoch(epoch)
        first = next(epoch_batches, None)
        if first is None:
            raise GdlabError(f"fit_stacked: the training loader gave no batches in epoch {epoch}")
        if stack is None:
            size = chunk_size(
                models[pending[0]], rule, [settings[index] for index in pending], max_members, first[0][0]
            )
            stack = Stack(models, pending[:size], declaration_of(rule), settings, lane_of)
            batches.expect_repeats(size < len(pending))
        stack.set_learning_rates([rates[epoch][member] for member in stack.members])
        for member in stack.members:
            histories[member].epoch_learning_rate.append(rates[epoch][member])
        record = EpochRecord(stack.members)
        for step_batches in itertools.chain([first], epoch_batches):
            batches.mark(step_batches)
            loss_values, correct = stack.forward(step_batches, loss_fn)
            record.add(stack.members, loss_values, correct, len(step_batches[0][1]))
            diverged = [slot for slot, value in enumerate(loss_values) if not math.isfinite(value)]
            for slot in diverged:
                # As fit leaves a diverged run: stopped before the step, parameters as they gave the loss.
                member = stack.members[slot]
                histories[member].status = STATUS_DIVERGED
                histories[member].diverged_at_iteration = iteration
                write_member(models[member], stack.params, slot)
            if len(diverged) < len(loss_values):
                stack.step(diverged)
                if on_iteration is not None:
                    on_iteration(iteration, {
                        member: value for slot, (member, value) in enumerate(zip(stack.members, loss_values))
                        if slot not in diverged
                    })
            if diverged:
                stack.drop(diverged)
            iteration += 1
            if not stack.members:
                break
        else:
            batches.end_epoch(epoch)
        record.write(histories)
        if not stack.members:
            break
        if val_loader is not None:
            for member, metrics in zip(stack.members, stack.evaluate(val_loader, loss_fn)):
                histories[member].epoch_val_loss.append(metrics["loss"])
                histories[member].epoch_val_accuracy.append(metrics["accuracy"])
    if stack is None:  # epochs == 0: nothing trained, nothing to stack
        return list(pending)
    for slot, member in enumerate(stack.members):
        write_member(models[member], stack.params, slot)
    seconds = (time.perf_counter() - started) / len(stack.all_members)
    for member in stack.all_members:
        histories[member].seconds = seconds
    return stack.all_members
