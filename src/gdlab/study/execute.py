"""Training the runs of a study: one at a time, a scratch/torch pair from one start, or stacked.

A *job* is the unit a backend hands out: a single run, a pair that must
share its initialization and batch order (``implementation = "both"``), or
runs that differ only in the rule's numbers, trained as one stacked model.
``run_job`` is a plain function of picklable inputs so that the sequential,
vectorized and Ray backends all call it.
"""

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from gdlab.study.problem import (
    PreparedData,
    build_model,
    build_optimizer,
    build_scheduler,
    eval_loader,
    epoch_learning_rates,
    prepare_data,
    resolve_device,
    train_loader,
)
from gdlab.study.search import RunPlan
from gdlab.train import History, evaluate, fit, fit_stacked, get_loss


# on_epoch(run_ids, epochs_done, epochs): the runs ``run_ids`` (one run, or runs stacked into one
# model) finished epoch ``epochs_done`` of ``epochs``; for progress display, in this process only.
OnEpoch = Callable[[tuple[str, ...], int, int], None]


@dataclass(frozen=True)
class Job:
    kind: str  # "single" | "pair" | "stacked"
    plans: tuple[RunPlan, ...]


@dataclass
class RunOutcome:
    plan: RunPlan
    history: History
    train_metrics: dict | None  # {"loss", "accuracy"} of the final model on the training split; None if diverged
    val_metrics: dict | None
    state_dict: dict
    max_loss_difference: float | None = None


def data_for(plan: RunPlan) -> PreparedData:
    train = plan.settings.train
    return prepare_data(plan.settings.data, resolve_device(train.device), getattr(torch, train.dtype))


def new_model(plan: RunPlan, data: PreparedData) -> torch.nn.Module:
    """The run's model, initialized from its seed: the same seed gives the same start."""
    torch.manual_seed(plan.seed)
    model = build_model(plan.settings.model, data.input_shape, data.num_classes)
    return model.to(device=data.train_x.device, dtype=data.train_x.dtype)


def finish_run(plan: RunPlan, model: torch.nn.Module, history: History, data: PreparedData) -> RunOutcome:
    """Final figures of a trained model; a diverged run gets none rather than fake ones."""
    if history.diverged:
        train_metrics = val_metrics = None
    else:
        loss_fn = get_loss(plan.settings.train.loss)
        train_metrics = evaluate(model, eval_loader(data.train_x, data.train_y), loss_fn)
        val_metrics = {"loss": history.epoch_val_loss[-1], "accuracy": history.epoch_val_accuracy[-1]}
    state_dict = {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()}
    return RunOutcome(plan, history, train_metrics, val_metrics, state_dict)


def train_run(
    plan: RunPlan, data: PreparedData, model: torch.nn.Module | None = None, on_epoch: OnEpoch | None = None
) -> RunOutcome:
    settings = plan.settings
    model = model if model is not None else new_model(plan, data)
    optimizer = build_optimizer(settings.optimizer, model.parameters(), plan.implementation)
    history = fit(
        model,
        optimizer,
        train_loader(data, settings.train, plan.seed),
        epochs=settings.train.epochs,
        loss_fn=get_loss(settings.train.loss),
        val_loader=eval_loader(data.val_x, data.val_y),
        scheduler=build_scheduler(settings.train, optimizer),
        on_epoch=None if on_epoch is None else lambda epoch, _: on_epoch((plan.id,), epoch + 1, settings.train.epochs),
    )
    return finish_run(plan, model, history, data)


def max_loss_difference(first: History, second: History) -> float:
    """Largest per-iteration training-loss difference; infinite if one stopped earlier.

    Losses that are equal, or both NaN (runs that diverged together), differ by 0.
    """
    if len(first.iteration_loss) != len(second.iteration_loss):
        return math.inf

    def gap(a: float, b: float) -> float:
        if a == b or (math.isnan(a) and math.isnan(b)):
            return 0.0
        difference = abs(a - b)
        return math.inf if math.isnan(difference) else difference

    return max(map(gap, first.iteration_loss, second.iteration_loss), default=0.0)


def run_pair(
    scratch: RunPlan, reference: RunPlan, data: PreparedData, on_epoch: OnEpoch | None = None
) -> list[RunOutcome]:
    """Scratch and torch rule from one initialization and one batch order."""
    model = new_model(scratch, data)
    twin = copy.deepcopy(model)
    outcomes = [train_run(scratch, data, model, on_epoch), train_run(reference, data, twin, on_epoch)]
    difference = max_loss_difference(outcomes[0].history, outcomes[1].history)
    for outcome in outcomes:
        outcome.max_loss_difference = difference
    return outcomes


def run_stacked(plans: list[RunPlan], data: PreparedData, on_epoch: OnEpoch | None = None) -> list[RunOutcome]:
    """Runs that differ only in the rule's numbers, trained as one stacked model on one batch order."""
    train = plans[0].settings.train
    loader = train_loader(data, train, plans[0].seed)
    run_ids = tuple(plan.id for plan in plans)

    def count_epochs(iteration: int, losses: dict) -> None:
        # fit_stacked reports iterations; an epoch ends every len(loader) of them.
        if (iteration + 1) % len(loader) == 0:
            on_epoch(run_ids, (iteration + 1) // len(loader), train.epochs)

    models = [new_model(plan, data) for plan in plans]
    hyperparameters = [plan.settings.optimizer.hyperparameters() for plan in plans]
    histories = fit_stacked(
        models,
        plans[0].settings.optimizer.rule().declaration,
        hyperparameters,
        loader,
        epochs=train.epochs,
        loss_fn=get_loss(train.loss),
        val_loader=eval_loader(data.val_x, data.val_y),
        learning_rates=epoch_learning_rates(train, [settings["lr"] for settings in hyperparameters]),
        on_iteration=None if on_epoch is None else count_epochs,
    )
    return [finish_run(plan, model, history, data) for plan, model, history in zip(plans, models, histories)]


def test_metrics(plan: RunPlan, state_dict: dict) -> dict:
    """A finished run's model, rebuilt from its saved parameters, on the test set."""
    data = data_for(plan)
    model = new_model(plan, data)
    model.load_state_dict(state_dict)
    return evaluate(model, eval_loader(data.test_x, data.test_y), get_loss(plan.settings.train.loss))


def run_job(job: Job, on_epoch: OnEpoch | None = None) -> list[RunOutcome]:
    data = data_for(job.plans[0])
    if job.kind == "pair":
        return run_pair(job.plans[0], job.plans[1], data, on_epoch)
    if job.kind == "stacked":
        return run_stacked(list(job.plans), data, on_epoch)
    return [train_run(plan, data, on_epoch=on_epoch) for plan in job.plans]
