"""`check`: run a user's training function, update function or Optimizer class beside the reference rule.

Order of work: load the code (a ``FILE.py:NAME`` target, or an object, as
defined in a notebook cell), choose the rule (``against``, else the one its
name names, else SGD), read what each of its parameters is
(`gdlab.check.binding`), settle the hyperparameters (given, else the code's
own defaults, else the rule's), choose the dtype (`gdlab.check.dtypes`), run
the code on the check's problem (`gdlab.check.problem`) while an
`ObservedLoader` records every step (a training function runs its own loop;
gdlab runs the loop around an update function or an Optimizer,
`gdlab.check.stepping`), let the reference take each recorded step from the
same parameters (`gdlab.check.compare`), and, at the first step that differs
beyond rounding, test the known mistakes and variants
(`gdlab.check.diagnose`).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from gdlab.check import dtypes
from gdlab.check.binding import OPTIMIZER, TRAINING, UPDATE, Binding, bind
from gdlab.check.compare import TorchReference, relative_difference, tolerance
from gdlab.check.containment import DEFAULT_TIMEOUT, Containment, run_contained
from gdlab.check.diagnose import StepRecord, diagnose
from gdlab.check.dtypes import DTYPES, DtypeChoice, DtypeMismatch
from gdlab.check.loading import CannotCheck, describe_exception, load_function, source_file
from gdlab.check.observe import ObservedLoader, ObservedStep, PlainLoader, StepLimitReached, snapshot
from gdlab.check.problem import Problem, make_problem
from gdlab.check.report import CheckReport, Divergence
from gdlab.check.rules import Rule, coerce, format_hparams, format_value, get_rule, infer_rule, rule_of_class
from gdlab.check.stepping import FirstCallFailed, describe_layout, run_optimizer_class, run_update_function, state_layouts
from gdlab.errors import GdlabError
from gdlab.threads import one_thread

__all__ = ["DTYPES", "check", "check_training_function"]


def check(
    code: Callable | type | str,
    against: str | None = None,
    hparams: dict[str, object] | None = None,
    binds: dict[str, str] | None = None,
    epochs: int = 2,
    dtype: torch.dtype | str = "auto",
    seed: int = 0,
    renames: dict[str, str] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> CheckReport:
    """Check ``code`` against the rule ``against`` (a name of `gdlab.optim.registry`), step by step.

    ``code`` is a training function (it runs its own loop over a training
    loader), an update function (gdlab calls it once per step), or a
    ``torch.optim.Optimizer`` subclass; an object, or a ``"FILE.py:NAME"``
    target. Its parameters are recognized by name in any order;
    ``binds={"its_name": "role or hyperparameter"}`` settles the others
    (``renames`` is the older name for it).

    ``hparams`` uses the rule's names (``lr``, ``momentum``,
    ``weight_decay``, ``betas`` ...); a hyperparameter not given takes the
    code's own default, else the rule's. One the code has no parameter for
    is still used by the reference: the code is taken to fix it itself, and
    a mismatch is diagnosed (and the code's value estimated). ``against``
    defaults to the rule the code's name names (``MyAdam``, ``rmsprop_update``),
    else SGD. ``epochs`` passes over the 10 batches of the problem (two let
    mistakes at epoch boundaries show); ``dtype`` is ``"auto"`` (the dtype the
    code computes in), ``"float32"`` or ``"float64"``; ``seed`` fixes the
    initialization and the batch order.

    ``timeout`` bounds the wall-clock seconds the code may run in all
    during the check, importing a ``"FILE.py:NAME"`` included and gdlab's
    own work not (None: no limit): code still running then is stopped and
    reported (`CannotCheck`) with the line it was on. Code that calls
    ``sys.exit()`` or raises ``KeyboardInterrupt`` itself is reported the
    same way, while a real Ctrl-C still raises ``KeyboardInterrupt`` (see
    `gdlab.check.containment`; ``os._exit`` is beyond its reach).

    Returns a `CheckReport` (``passed``, ``first_divergence``,
    ``likely_cause``, ``kind``, ``evidence``, ``render()``, ``to_json()``).
    Raises `CannotCheck` when the code cannot be called or run to its end
    (in time), and `GdlabError` for hyperparameters the reference refuses.
    """
    binds = {**(renames or {}), **(binds or {})}
    with one_thread():
        return run_contained(timeout, lambda guard: _check(code, against, hparams, binds, epochs, dtype, seed, guard))


def check_training_function(
    fn: Callable | type | str,
    against: str | None = None,
    hparams: dict[str, object] | None = None,
    renames: dict[str, str] | None = None,
    epochs: int = 2,
    dtype: torch.dtype | str = "auto",
    seed: int = 0,
    binds: dict[str, str] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> CheckReport:
    """`check` under its first name (which took training functions only); any entry point works."""
    return check(fn, against, hparams, binds, epochs, dtype, seed, renames, timeout)


# --- choosing what to check against ----------------------------------------------------------------


def _choose_rule(code, against: str | None) -> tuple[Rule, str]:
    """The rule, and why it was chosen when not given."""
    if against is not None:
        return get_rule(against), ""
    name = getattr(code, "__name__", "")
    if inspect.isclass(code):
        derived = rule_of_class(code)
        if derived is not None:
            return get_rule(derived), f"{name} derives from it"
    inferred = infer_rule(name)
    if inferred is not None:
        return get_rule(inferred), f"from the name {name}"
    return get_rule("sgd"), "the default; --against to choose another"


def _settle_hyperparameters(rule: Rule, binding: Binding, given: dict | None) -> tuple[dict, dict[str, str]]:
    """Every hyperparameter's value, and where it came from (given, the code's default, the rule's default)."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, value in binding.own_defaults().items():
        try:
            values[name] = coerce(value, rule.kind(name), name)
            sources[name] = "your default"
        except GdlabError:
            continue
    for name, value in (given or {}).items():
        values[name] = value
        sources[name] = "given"
    resolved = rule.resolve(values)
    for name in resolved:
        sources.setdefault(name, "the rule's default")
    return resolved, sources


# --- running the code ------------------------------------------------------------------------------


@dataclass
class _Run:
    """One run of the user's code in one dtype: the steps observed and what to say about them."""

    problem: Problem
    loader: ObservedLoader
    reference: TorchReference
    initial: dict[str, torch.Tensor]
    stopped: bool = False
    placeholders: dict[str, str] = field(default_factory=dict)
    call_suffix: str = ""
    notes: list[str] = field(default_factory=list)
    read_from_dict: set[str] | None = None
    lr_at: Callable[[int], float] | None = None


def _prepare(rule: Rule, hparams: dict, dtype: torch.dtype, seed: int, epochs: int) -> _Run:
    problem = make_problem(dtype, seed)
    per_epoch = problem.batches_per_epoch
    initial = snapshot(problem.model)
    reference = TorchReference(problem.model, problem.loss_fn, rule, hparams)
    # Room for an epoch or two too many, so that such a loop is reported as a wrong step count.
    loader = ObservedLoader(
        problem.model, problem.x, problem.y, problem.batch_size, seed, max_steps=epochs * per_epoch + 2 * per_epoch
    )
    return _Run(problem, loader, reference, initial)


def _run_training_function(fn, binding: Binding, rule: Rule, hparams: dict, epochs: int, run: _Run) -> None:
    problem = run.problem
    values = {
        "n_epochs": epochs, "model": problem.model, "loss_fn": problem.loss_fn, "train_loader": run.loader,
        "val_loader": PlainLoader(problem.x, problem.y, problem.batch_size), "device": torch.device("cpu"),
    }
    run.placeholders = {"n_epochs": str(epochs)}
    if binding.role("optimizer") is not None:
        values["optimizer"] = rule.make_optimizer(problem.model.parameters(), hparams)
        run.placeholders["optimizer"] = f"{rule.title}(model.parameters(), ...)"
        run.notes.append(
            f"{binding.role('optimizer').name} was given {rule.title} itself over model.parameters(): "
            "what is checked is the loop around it"
        )
    args, kwargs = binding.arguments(values, hparams)
    calls = 1 if binding.role("n_epochs") is not None else epochs
    if calls > 1:
        run.call_suffix = f", once per epoch ({calls} calls: it takes no number of epochs)"
    try:
        with contextlib.redirect_stdout(io.StringIO()), torch.enable_grad():
            for _ in range(calls):
                fn(*args, **kwargs)
    except StepLimitReached:
        run.stopped = True
    run.loader.close_step()


def _attempt(code, binding: Binding, rule: Rule, hparams: dict, epochs: int, dtype: torch.dtype, seed: int,
             strict: bool, guard: Containment, lr_at: Callable[[int], float] | None = None) -> _Run:
    """Run the code once in ``dtype``; a dtype problem is a `DtypeMismatch`, other failures `CannotCheck`.

    Only the run itself is inside ``guard``'s time: gdlab's preparation does not count against the user's code.
    """
    if binding.entry == UPDATE and binding.roles("state"):
        layouts = state_layouts(code)
    else:
        layouts = [None]
    first_failure: BaseException | None = None
    while layouts:
        layout = layouts.pop(0)
        run = _prepare(rule, hparams, dtype, seed, epochs)
        run.lr_at = lr_at
        problem = run.problem
        try:
            with guard.running(f"running {binding.name}"), contextlib.redirect_stdout(io.StringIO()):
                if binding.entry == TRAINING:
                    _run_training_function(code, binding, rule, hparams, epochs, run)
                elif binding.entry == UPDATE:
                    outcome = run_update_function(
                        code, binding, problem.model, problem.loss_fn, run.loader, hparams, epochs, layout, lr_at
                    )
                    run.loader.close_step()
                    _describe_update_run(binding, outcome, run)
                else:
                    run_optimizer_class(
                        code, binding, problem.model, problem.loss_fn, run.loader, hparams, epochs, lr_at
                    )
                    run.loader.close_step()
        except FirstCallFailed as failed:
            error = failed.error
            if dtypes.is_dtype_error(error):
                raise DtypeMismatch("raised " + _describe_failure(code, error)) from None
            first_failure = first_failure or error
            unpacked = re.search(r"values to unpack \(expected (\d+)", str(error))
            if unpacked and f"tuples of {unpacked.group(1)}" not in layouts:
                layouts.insert(0, f"tuples of {unpacked.group(1)}")
            if layouts:
                continue
            raise CannotCheck(_raised_message(code, binding, first_failure)) from None
        except (CannotCheck, StepLimitReached):
            raise
        except Exception as error:
            if dtypes.is_dtype_error(error):
                raise DtypeMismatch("raised " + _describe_failure(code, error)) from None
            raise CannotCheck(_raised_message(code, binding, error)) from None
        changed = _changed_dtype(run, dtype)
        if changed is not None and not strict:
            raise DtypeMismatch(changed)
        return run
    raise AssertionError("no state layout was tried")


def _describe_update_run(binding: Binding, outcome, run: _Run) -> None:
    weight = binding.role("weight")
    if weight is not None:
        config = binding.role("hparams")
        kept = f", with one {config.name} dict per parameter kept from step to step" if config is not None else ""
        arrays = " (numpy arrays: views of the parameter and its gradient)" if outcome.numpy_arrays else ""
        run.notes.append(
            f"gdlab called {binding.name} once per parameter at every step{kept}, as cs231n's Solver does; "
            f"{weight.name} was the parameter{arrays}"
        )
    for slot in binding.roles("state"):
        run.notes.append(f"{slot.name} was given as {describe_layout(outcome.layout)}, kept from step to step")
    if outcome.returned_parameters:
        run.notes.append(f"{binding.name} returned new parameters; gdlab wrote them back into the model")
    if outcome.hyperparameter_dict is not None:
        hyper = outcome.hyperparameter_dict
        run.read_from_dict = set(hyper.read)
        spelled = [f"{key!r} as {meaning}" for key, meaning in hyper.aliases.items()]
        if spelled:
            run.notes.append(f"{binding.role('hparams').name} was read with {', '.join(spelled)}")
    if not outcome.computes_own_gradients:
        run.notes.append("gdlab computed fresh gradients (p.grad) before every call, as the loop around it would")
    batch_size = binding.role("batch_size")
    if batch_size is not None:
        run.notes.append(
            f"{batch_size.name} was given the batch size ({run.problem.batch_size}), and the gradients were those "
            f"of the loss summed over the batch, as d2l's l.sum().backward() makes them"
        )


def _changed_dtype(run: _Run, dtype: torch.dtype) -> str | None:
    for step in run.loader.steps:
        for name, tensor in (step.after or {}).items():
            if tensor.dtype != dtype:
                return f"turned parameter {name} into {dtypes.name(tensor.dtype)}"
    return None


def _describe_failure(code, error: BaseException) -> str:
    """The exception on one line: ``Type: message (file, line N: the line)``."""
    first, *where = describe_exception(error, source_file(code)).split("\n")
    if not where:
        return first
    place = where[0].strip().removeprefix("at ").rstrip(":")
    line = where[1].strip() if len(where) > 1 else ""
    return f"{first} ({place}" + (f": {line})" if line else ")")


def _raised_message(code, binding: Binding, error: BaseException) -> str:
    name = getattr(code, "__name__", "the function")
    doing = {TRAINING: "while training", UPDATE: "while gdlab called it", OPTIMIZER: "while stepping"}[binding.entry]
    message = f"{name} raised an exception {doing}, so it cannot be checked:\n"
    message += describe_exception(error, source_file(code if not inspect.isclass(code) else code.step))
    if isinstance(error, KeyError) and binding.role("hparams") is not None:
        message += (
            f"\n  {binding.role('hparams').name} holds {binding.rule.title}'s hyperparameters under gdlab's names "
            f"({', '.join(binding.rule.names())}) and their usual spellings, and a step count t"
        )
    if "cuda" in str(error).lower():
        message += (
            "\n  gdlab check runs on the CPU; if your code picks its device with "
            "torch.cuda.is_available(), run the check with CUDA_VISIBLE_DEVICES= (empty)"
        )
    return message


def _run_in_some_dtype(code, binding, rule, hparams, epochs, requested, seed, guard) -> tuple[_Run, DtypeChoice]:
    choices = dtypes.plan(requested, code)
    strict = len(choices) == 1
    failures: list[tuple[DtypeChoice, str]] = []
    for choice in choices:
        if failures:
            tried, why = failures[-1]
            choice = DtypeChoice(choice.dtype, f"auto: in {dtypes.name(tried.dtype)} your code {why}")
        try:
            with dtypes.default_dtype(choice.dtype):
                return _attempt(code, binding, rule, hparams, epochs, choice.dtype, seed, strict, guard), choice
        except DtypeMismatch as mismatch:
            failures.append((choice, _short(mismatch.description)))
    name = getattr(code, "__name__", "the function")
    if strict:
        (choice, why), = failures
        other = "float64" if choice.dtype == torch.float32 else "float32"
        raise CannotCheck(
            f"{name} does not compute in {dtypes.name(choice.dtype)}, the dtype asked for: it {why}. "
            f"Run the check in the dtype your code uses: --dtype {other}, or --dtype auto (Python: dtype='auto')"
        )
    tried = "; ".join(f"in {dtypes.name(choice.dtype)} it {why}" for choice, why in failures)
    raise CannotCheck(
        f"{name} fails with a dtype error in float32 and in float64, so it mixes dtypes ({tried}). "
        "Make the model, the data and every tensor it creates one dtype"
    )


def _short(description: str) -> str:
    return description if len(description) < 400 else description[:400] + " ..."


# --- judging ---------------------------------------------------------------------------------------


def _check(code, against, hparams, binds, epochs, dtype, seed, guard: Containment) -> CheckReport:
    if isinstance(code, str):
        with guard.running(f"importing {code.rpartition(':')[0] or code}"):
            code = load_function(code)
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise GdlabError(f"epochs must be a whole number >= 1, got {epochs!r}")
    rule, chosen_because = _choose_rule(code, against)
    binding = bind(code, rule, binds)
    resolved, sources = _settle_hyperparameters(rule, binding, hparams)
    dtypes.plan(dtype, code)  # refuse an unsupported dtype before running anything

    run, choice = _run_in_some_dtype(code, binding, rule, resolved, epochs, dtype, seed, guard)
    with dtypes.default_dtype(choice.dtype):
        return _judge(code, binding, rule, resolved, sources, chosen_because, run, choice, epochs, guard)


def _judge(code, binding, rule, resolved, sources, chosen_because, run: _Run, choice, epochs, guard) -> CheckReport:
    dtype = choice.dtype
    problem = run.problem
    steps = run.loader.steps
    per_epoch = problem.batches_per_epoch
    expected = epochs * per_epoch
    if binding.entry == TRAINING:
        _refuse_unobservable(steps, binding.name)

    judgement = _judge_steps(steps, run.initial, run.reference, rule, resolved, dtype, run.lr_at)
    divergence, cause = judgement.divergence, judgement.cause
    kind, evidence = ("bug" if cause else "none"), None
    taken = len(steps)
    if divergence is None and (run.stopped or taken != expected):
        epoch, iteration = divmod(min(taken, expected), per_epoch)
        divergence = Divergence(min(taken, expected) + 1, epoch + 1, iteration + 1, None)
        cause = _describe_step_count(taken, expected, epochs, per_epoch, run.stopped)
        kind = "bug"
    unreceived = _unreceived(binding, rule, run)
    short_cause = cause
    hint = ""
    if judgement.first_differing is not None:
        diagnosis = diagnose(
            judgement.records, judgement.first_differing, rule, resolved, problem.batch_size, unreceived,
            summed_gradients=binding.role("batch_size") is not None,
        )
        cause, short_cause, kind, evidence, hint = (
            diagnosis.describe(), diagnosis.cause, diagnosis.kind, diagnosis.evidence(), diagnosis.hint
        )

    schedule_notes: list[str] = []
    if divergence is None and binding.entry in (UPDATE, OPTIMIZER) and "lr" not in unreceived and epochs > 1:
        finding = _probe_schedule(code, binding, rule, resolved, epochs, choice, run, unreceived, guard)
        if finding is not None:
            short_cause, kind, evidence, hint, described = finding
            schedule_notes.append(described)

    return CheckReport(
        function=_label(code, binding.name),
        reference=f"{rule.title}({format_hparams(resolved)})",
        hparams=resolved,
        call=_describe_call(binding, resolved, run),
        problem=problem.describe() + (f" ({choice.reason})" if choice.reason else ""),
        dtype=dtype,
        epochs=epochs,
        steps_expected=expected,
        steps_taken=taken,
        max_relative_difference=judgement.largest,
        tolerance=tolerance(dtype),
        first_divergence=divergence,
        likely_cause=cause,
        notes=tuple(_notes(binding, rule, resolved, sources, unreceived, run) + schedule_notes),
        entry=binding.entry,
        against=rule.name,
        chosen_because=chosen_because,
        bound=tuple(binding.renamed()),
        cause=short_cause,
        kind=kind,
        evidence=evidence,
        hint=hint,
        dtype_reason=choice.reason,
    )


# A pass with a constant learning rate is tested again with the rate halved from the second epoch on
# (as StepLR with gamma 0.5 would), for code that takes it at every step: forms that keep the rate
# inside their state (the classic heavy-ball momentum) equal torch's only while it is constant.
SCHEDULE_FACTOR = 0.5


def _probe_schedule(code, binding, rule, hparams, epochs, choice, run: _Run, unreceived, guard):
    """What changes when the learning rate does: None if the steps still match the reference, else
    (cause, kind, evidence, hint, the whole description)."""
    per_epoch = run.problem.batches_per_epoch
    lr = hparams["lr"]

    def lr_at(step: int) -> float:
        return lr if step <= per_epoch else lr * SCHEDULE_FACTOR

    try:
        probe = _attempt(code, binding, rule, hparams, epochs, choice.dtype, run.loader.seed, True, guard, lr_at)
    except (CannotCheck, DtypeMismatch):
        return None
    judgement = _judge_steps(probe.loader.steps, probe.initial, probe.reference, rule, hparams, choice.dtype, lr_at)
    if judgement.first_differing is None:
        return None
    record = judgement.records[judgement.first_differing]
    diagnosis = diagnose(judgement.records, judgement.first_differing, rule, hparams,
                         probe.problem.batch_size, unreceived, summed_gradients=binding.role("batch_size") is not None)
    change = (
        f"with the learning rate multiplied by {SCHEDULE_FACTOR:g} from step {per_epoch + 1} on (as a scheduler "
        f"would), your steps part from {rule.title}'s at step {record.number}"
    )
    evidence = change + (f"; {diagnosis.evidence()}" if diagnosis.evidence() else "")
    kind = diagnosis.kind if diagnosis.explained_steps else "none"
    return diagnosis.cause, kind, evidence, diagnosis.hint, f"{change}: {diagnosis.describe()}"


def _describe_call(binding: Binding, hparams: dict, run: _Run) -> str:
    text = binding.describe_call(run.placeholders, hparams)
    if binding.entry == UPDATE:
        return text + " at every step"
    if binding.entry == OPTIMIZER:
        return text.replace("(params", "(model.parameters()", 1) if binding.role("params") else text
    return text + run.call_suffix


def _unreceived(binding: Binding, rule: Rule, run: _Run) -> set[str]:
    received = set(binding.received())
    if run.read_from_dict is not None:
        received |= run.read_from_dict
    return set(rule.names()) - received


def _notes(binding: Binding, rule: Rule, hparams: dict, sources: dict, unreceived: set[str], run: _Run) -> list[str]:
    notes = list(run.notes)
    given = [name for name in rule.names() if name in unreceived and sources[name] == "given"]
    for name in given:
        notes.append(
            f"{binding.name} has no parameter for {name}; the reference uses {name}={format_value(hparams[name])} "
            "as given, taking your code to fix that value itself"
        )
    # Constants worth knowing about: the numbers the code takes no parameter for and that are not 0.
    defaulted = [
        name for name in rule.names()
        if name in unreceived and sources[name] != "given" and rule.kind(name) in ("number", "pair")
        and hparams[name] not in (0, 0.0)
    ]
    if defaulted:
        shown = ", ".join(f"{name}={format_value(hparams[name])}" for name in defaulted)
        notes.append(f"{binding.name} takes no {', '.join(defaulted)}: checked at {rule.title}'s {shown}")
    for slot in binding.slots:
        if not slot.filled and slot.has_default:
            notes.append(
                f"{binding.name}'s parameter {slot.name} was left at its default {slot.default!r}: no gdlab role "
                f"or hyperparameter has that name (--bind {slot.name}=ROLE if it is one)"
            )
    return notes


@dataclass
class _Judgement:
    """Every step compared: the records for the diagnosis and the first place the code parts from the reference."""

    records: list[StepRecord] = field(default_factory=list)
    largest: float = 0.0
    divergence: Divergence | None = None
    cause: str | None = None
    first_differing: int | None = None


def _judge_steps(steps, initial, reference: TorchReference, rule, hparams, dtype, lr_at=None) -> _Judgement:
    """Let the reference take each observed step from the same parameters and compare, parameter by parameter."""
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

        lr = lr_at(step.number) if lr_at is not None else None
        gradients, torch_after = reference.step(step.before, step.x, step.y, lr)
        _refuse_diverged_reference(step, torch_after, rule.title, hparams)
        judgement.records.append(
            StepRecord(step.number, step.epoch, step.iteration, step.before, step.after, gradients, torch_after, lr)
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


def _label(code, name: str) -> str:
    path = source_file(code if not inspect.isclass(code) else getattr(code, "step", code))
    if path and Path(path).is_file():
        return f"{name} ({Path(path).name})"
    return name
