"""`check_training_function`: run a user's training function beside torch's rule and judge every step.

Order of work: resolve the rule and its hyperparameters, fit them to the
function's signature, build the problem (`gdlab.check.problem`), run the
function on an `ObservedLoader` that records each step, let torch take each
recorded step from the same parameters (`gdlab.check.compare`), and, at the
first step that differs beyond rounding, test the known mistakes
(`gdlab.check.diagnose`).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from gdlab.check.binding import bind_hyperparameters
from gdlab.check.compare import TorchReference, relative_difference, tolerance
from gdlab.check.diagnose import StepRecord, diagnose
from gdlab.check.loading import CannotCheck, describe_exception, source_file
from gdlab.check.observe import ObservedLoader, ObservedStep, StepLimitReached, snapshot
from gdlab.check.problem import make_problem
from gdlab.check.report import CheckReport, Divergence
from gdlab.check.rules import format_hparams, get_rule
from gdlab.errors import GdlabError
from gdlab.threads import one_thread

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def check_training_function(
    fn: Callable,
    against: str = "sgd",
    hparams: dict[str, object] | None = None,
    renames: dict[str, str] | None = None,
    epochs: int = 2,
    dtype: torch.dtype | str = torch.float32,
    seed: int = 0,
) -> CheckReport:
    """Check ``fn(n_epochs, model, loss_fn, train_loader, **hparams)`` against ``torch.optim.<against>``.

    ``hparams`` uses gdlab's names (``lr``, ``momentum``, ``weight_decay``,
    ``betas`` ...; see `gdlab.check.rules`), the rest take the rule's
    defaults; ``renames`` maps the function's own parameter names onto them
    (``{"w_decay": "weight_decay"}``). ``epochs`` is passed as ``n_epochs``;
    two epochs let mistakes at epoch boundaries show. ``seed`` fixes the
    initialization and the batch order.

    Returns a `CheckReport` (``passed``, ``first_divergence``,
    ``likely_cause``, ``max_relative_difference``, ``render()``). Raises
    `CannotCheck` when the function cannot be called or run to its end, and
    `GdlabError` for hyperparameters torch refuses.
    """
    with one_thread():
        return _check(fn, against, hparams, renames, epochs, dtype, seed)




def _check(fn, against, hparams, renames, epochs, dtype, seed) -> CheckReport:
    rule = get_rule(against)
    dtype = _resolve_dtype(dtype)
    if not isinstance(epochs, int) or epochs < 1:
        raise GdlabError(f"epochs must be a whole number >= 1, got {epochs!r}")
    resolved = rule.resolve(hparams)
    call = bind_hyperparameters(fn, rule, resolved, renames)

    problem = make_problem(dtype, seed)
    per_epoch = problem.batches_per_epoch
    expected = epochs * per_epoch
    initial = snapshot(problem.model)
    reference = TorchReference(problem.model, problem.loss_fn, rule, resolved)
    # Room for an epoch or two too many, so that such a loop is reported as a wrong step count.
    loader = ObservedLoader(
        problem.model, problem.x, problem.y, problem.batch_size, seed, max_steps=expected + 2 * per_epoch
    )
    stopped = _run(fn, call.kwargs, epochs, problem, loader)
    loader.close_step()
    _refuse_unobservable(loader.steps, call.function_name)

    judgement = _judge_steps(loader.steps, initial, reference, rule, resolved, dtype)
    divergence, cause = judgement.divergence, judgement.cause
    taken = len(loader.steps)
    if divergence is None and (stopped or taken != expected):
        epoch, iteration = divmod(min(taken, expected), per_epoch)
        divergence = Divergence(min(taken, expected) + 1, epoch + 1, iteration + 1, None)
        cause = _describe_step_count(taken, expected, epochs, per_epoch, stopped)
    if judgement.first_differing is not None:
        diagnosis = diagnose(judgement.records, judgement.first_differing, rule, resolved, problem.batch_size)
        cause = diagnosis.describe()

    return CheckReport(
        function=_label(fn, call.function_name),
        reference=f"{rule.title}({format_hparams(resolved)})",
        hparams=resolved,
        call=call.describe(epochs),
        problem=problem.describe(),
        dtype=dtype,
        epochs=epochs,
        steps_expected=expected,
        steps_taken=taken,
        max_relative_difference=judgement.largest,
        tolerance=tolerance(dtype),
        first_divergence=divergence,
        likely_cause=cause,
        notes=tuple(
            f"{call.function_name}'s parameter {name} was left at its default {value!r}: no gdlab "
            f"hyperparameter maps to it (--rename {name}=GDLAB_NAME if it is one)"
            for name, value in call.left_to_default.items()
        ),
    )


@dataclass
class _Judgement:
    """Every step compared: the records for the diagnosis and the first place the function parts from torch."""

    records: list[StepRecord] = field(default_factory=list)
    largest: float = 0.0
    divergence: Divergence | None = None
    cause: str | None = None
    first_differing: int | None = None


def _judge_steps(steps, initial, reference: TorchReference, rule, hparams, dtype) -> _Judgement:
    """Let torch take each observed step from the same parameters and compare, parameter by parameter."""
    limit = tolerance(dtype)
    judgement = _Judgement()
    previous_after = initial
    for step in steps:
        structure = _structure_problem(initial, step, dtype)
        if structure is not None:
            if judgement.divergence is None:
                judgement.divergence = Divergence(step.number, step.epoch, step.iteration, None)
                judgement.cause = structure
            break
        moved = next((name for name in initial if not torch.equal(previous_after[name], step.before[name])), None)
        if moved is not None and judgement.divergence is None:
            judgement.divergence = Divergence(step.number, step.epoch, step.iteration, moved)
            judgement.cause = _moved_between_steps(step, moved)
        previous_after = step.after

        gradients, torch_after = reference.step(step.before, step.x, step.y)
        _refuse_diverged_reference(step, torch_after, rule.title, hparams)
        judgement.records.append(
            StepRecord(step.number, step.epoch, step.iteration, step.before, step.after, gradients, torch_after)
        )
        differences = {
            name: relative_difference(step.before[name], torch_after[name], step.after[name]) for name in initial
        }
        judgement.largest = max(judgement.largest, *differences.values())
        beyond = next((name for name, value in differences.items() if value > limit), None)
        if beyond is not None and judgement.divergence is None:
            judgement.divergence = _divergence(step, beyond, differences[beyond], torch_after[beyond])
            judgement.first_differing = len(judgement.records) - 1
    return judgement


def _resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise GdlabError(f"dtype {dtype!r} is not supported; choose {' or '.join(DTYPES)}")
        return DTYPES[dtype]
    if dtype not in DTYPES.values():
        raise GdlabError(f"dtype {dtype} is not supported; choose torch.float32 or torch.float64")
    return dtype


def _run(fn: Callable, kwargs: dict, epochs: int, problem, loader: ObservedLoader) -> bool:
    """Run the user's function (its printing swallowed); True when it had to be stopped."""
    try:
        with contextlib.redirect_stdout(io.StringIO()), torch.enable_grad():
            fn(epochs, problem.model, problem.loss_fn, loader, **kwargs)
    except StepLimitReached:
        return True
    except Exception as error:
        name = getattr(fn, "__name__", "the function")
        message = f"{name} raised an exception while training, so it cannot be checked:\n"
        message += describe_exception(error, source_file(fn))
        if "cuda" in str(error).lower():
            message += (
                "\n  gdlab check runs on the CPU; if your code picks its device with "
                "torch.cuda.is_available(), run the check with CUDA_VISIBLE_DEVICES= (empty)"
            )
        raise CannotCheck(message) from None
    return False


def _refuse_unobservable(steps: list[ObservedStep], name: str) -> None:
    for step in steps:
        if step.forward_calls == 0:
            raise CannotCheck(
                f"{name} asked train_loader for batch {step.number + 1} before running the model on "
                f"batch {step.number}, so its steps cannot be told apart. gdlab sees a step end when "
                "the next batch is drawn: loop `for x, y in train_loader:` and finish each step inside "
                "the loop (no list(train_loader), no drawing batches ahead)"
            )


def _structure_problem(initial: dict, step: ObservedStep, dtype: torch.dtype) -> str | None:
    for moment, parameters in (("before", step.before), ("after", step.after)):
        if list(parameters) != list(initial):
            return (
                f"the model's parameters are not the same set {moment} this step: expected "
                f"{', '.join(initial)}, found {', '.join(parameters)} (were modules or parameters replaced?)"
            )
        for name, tensor in parameters.items():
            if tensor.shape != initial[name].shape:
                return f"parameter {name} changed shape from {tuple(initial[name].shape)} to {tuple(tensor.shape)}"
            if tensor.dtype != dtype:
                return (
                    f"parameter {name} became {tensor.dtype} (the check runs in {dtype}); "
                    "does the code convert tensors with .float() or .double()?"
                )
    return None


def _moved_between_steps(step: ObservedStep, name: str) -> str:
    if step.number == 1:
        return (
            f"the parameters changed before the first batch was drawn ({name} first): the function "
            "must start training from the model it is given (is it re-initialized or updated outside the loop?)"
        )
    return (
        f"the parameters changed between step {step.number - 1} and step {step.number} ({name} first), "
        "outside the loop over batches"
        + (f", at the end of epoch {step.epoch - 1}" if step.iteration == 1 else "")
    )


def _divergence(step: ObservedStep, name: str, relative: float, torch_after: torch.Tensor) -> Divergence:
    before, after = step.before[name].double(), step.after[name].double()
    torch_after = torch_after.double()
    torch_update = (torch_after - before).norm().item()
    error = (after - torch_after).norm().item()
    return Divergence(
        step.number,
        step.epoch,
        step.iteration,
        name,
        relative_difference=relative,
        update_error=error / torch_update if torch_update > 0 else float("inf"),
        max_abs_difference=(after - torch_after).abs().max().item(),
    )


def _refuse_diverged_reference(step: ObservedStep, torch_after: dict, title: str, hparams: dict) -> None:
    finite_before = all(torch.isfinite(tensor).all() for tensor in step.before.values())
    finite_after = all(torch.isfinite(tensor).all() for tensor in torch_after.values())
    if finite_before and not finite_after:
        raise CannotCheck(
            f"{title} itself produces non-finite parameters at step {step.number} with "
            f"{format_hparams(hparams)}; choose a smaller learning rate"
        )


def _describe_step_count(taken: int, expected: int, epochs: int, per_epoch: int, stopped: bool) -> str:
    plan = f"n_epochs={epochs} passes over train_loader's {per_epoch} batches = {expected} steps"
    if stopped:
        return f"the function kept drawing batches and was stopped after {taken} steps; {plan}"
    if taken == 0:
        return (
            "the function never drew a batch from train_loader; does it loop over another loader "
            "(a global one) instead of its train_loader argument?"
        )
    if taken % per_epoch == 0:
        ran = taken // per_epoch
        return (
            f"the function ran {ran} epoch{'s' if ran != 1 else ''} ({taken} steps) where {plan}"
            + ("; range(1, n_epochs) runs one epoch too few" if ran == epochs - 1 else "")
        )
    return f"the function took {taken} steps where {plan} (does it leave the loop early?)"


def _label(fn: Callable, name: str) -> str:
    path = source_file(fn)
    return f"{name} ({Path(path).name})" if path else name
