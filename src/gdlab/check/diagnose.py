"""Why the user's steps part from the reference: known mistakes and variants tested against what it did.

Each hypothesis is an update rule: a variant from the rule's declaration
(`gdlab.optim.declaration.Variant`), or one built here from the declaration alone, for
any rule: a hyperparameter ignored (its default used), a flag the other way,
weight decay with the wrong sign or applied twice, gradients never zeroed,
the state started afresh every epoch or every step. It is replayed over the
user's whole run: at every step it starts from the user's parameters and
sees the same gradients, so its state is what the user's state would be if
the code made exactly that mistake. It explains a step when its result
matches the user's within the same rounding tolerance the check itself uses
(`gdlab.check.compare`).

The cause named is the first hypothesis (the rule's own variants first,
then the generic ones) that explains the first differing step and every
later one. Failing that comes "a constant multiple of the reference's
update" (a learning rate scaled wrongly, or fixed in code that takes none;
no update at all; a step in the wrong direction), fitted at the first
differing step and tested on the later ones; it goes first because a hidden
constant can mimic a multiple. Then a constant fixed in the code: when the
code has no parameter for a hyperparameter, its steps are replayed with the
usual values of it (``eps = 1e-6`` as d2l's Adam fixes it), with each known
variant and alone, to estimate the value the code uses. Last, the
hypothesis explaining most of the steps, or "no known pattern" with the
numbers.

Each cause is a *bug* or a *variant*: a known formulation, equal to the
reference under a stated condition or differing from it in a stated way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from gdlab.check.compare import relative_difference, tolerance
from gdlab.check.rules import Rule, format_value
from gdlab.optim.declaration import Variant


@dataclass(eq=False)
class StepRecord:
    """One step as the check saw it: the user's parameters before and after, the gradients and the reference's result."""

    number: int
    epoch: int
    iteration: int
    before: dict[str, torch.Tensor]
    after: dict[str, torch.Tensor]
    gradients: dict[str, torch.Tensor]
    reference: dict[str, torch.Tensor]
    lr: float | None = None  # the step's learning rate when it changes during the run (a scheduler's)


Stepper = Callable[[StepRecord], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Hypothesis:
    """A mistake or a variant: what it is, whether it is a bug, the rule that makes it, where to look."""

    cause: str
    make_stepper: Callable[[], Stepper]
    kind: str = "bug"
    hint: str = ""
    condition: str = ""


@dataclass(frozen=True)
class Diagnosis:
    """The likely cause, and how many of the steps from the first difference on it explains."""

    cause: str
    explained_steps: int
    compared_steps: int
    first_step: int
    hint: str = ""
    kind: str = "bug"
    condition: str = ""
    factor: float | None = None  # for a constant multiple of the reference's update: the multiple

    def evidence(self) -> str | None:
        """How many steps the cause reproduces, when it was replayed (None for no known pattern)."""
        if self.explained_steps == 0:
            return None
        if self.explained_steps == self.compared_steps:
            steps = "your step" if self.compared_steps == 1 else f"all {self.compared_steps} of your steps"
            return f"this matches {steps} from step {self.first_step} on"
        return (
            f"this matches {self.explained_steps} of your {self.compared_steps} steps from step "
            f"{self.first_step} on, so there may be more than one mistake"
        )

    def describe(self) -> str:
        """The cause, the evidence (how many steps it matches), what kind it is, then where to look."""
        evidence = self.evidence()
        text = self.cause + (f"; {evidence}" if evidence else "") + "."
        if self.kind == "variant":
            text += " This is a known variant" + (f": {self.condition}." if self.condition else ".")
        return text + (f" {self.hint}" if self.hint else "")


# --- replaying a rule on the user's gradients ------------------------------------------------------


class RuleStepper:
    """A rule's pure ``update`` stepping copies of the user's parameters with the recorded gradients.

    ``transform_gradient(step, gradients)`` changes what the rule is fed;
    ``restart`` (``"epoch"`` or ``"step"``) builds fresh state at every
    epoch's first step or at every step. Each step runs at the record's
    learning rate when it has one, unless ``fixed_lr``.
    """

    def __init__(
        self,
        update: Callable,
        init: Callable,
        hparams: dict,
        transform_gradient: Callable[[StepRecord, dict], dict] | None = None,
        restart: str | None = None,
        fixed_lr: bool = False,
    ):
        self.update, self.init, self.hparams = update, init, dict(hparams)
        self.transform_gradient = transform_gradient
        self.restart = restart
        self.fixed_lr = fixed_lr
        self.leaves: list[torch.Tensor] | None = None
        self.state: Any = None

    def __call__(self, step: StepRecord) -> dict[str, torch.Tensor]:
        names = list(step.before)
        if (
            self.leaves is None or self.restart == "step"
            or (self.restart == "epoch" and step.iteration == 1)
        ):
            self.leaves = [step.before[name].clone() for name in names]
            self.state = self.init(self.leaves, self.hparams)
        gradients = self.transform_gradient(step, step.gradients) if self.transform_gradient else step.gradients
        hparams = self.hparams if step.lr is None or self.fixed_lr else {**self.hparams, "lr": step.lr}
        with torch.no_grad():
            for leaf, name in zip(self.leaves, names):
                leaf.copy_(step.before[name])
            self.update(self.leaves, [gradients[name].clone() for name in names], self.state, **hparams)
        return {name: leaf.detach().clone() for name, leaf in zip(names, self.leaves)}


class TorchStepper:
    """The reference optimizer itself stepping copies of the user's parameters, for a rule declared without
    a pure ``update``. Same options as `RuleStepper`."""

    def __init__(self, rule: Rule, hparams: dict, transform_gradient=None, restart: str | None = None,
                 fixed_lr: bool = False):
        self.rule, self.hparams = rule, dict(hparams)
        self.transform_gradient, self.restart, self.fixed_lr = transform_gradient, restart, fixed_lr
        self.leaves: dict[str, torch.Tensor] | None = None
        self.optimizer: torch.optim.Optimizer | None = None

    def __call__(self, step: StepRecord) -> dict[str, torch.Tensor]:
        if self.optimizer is None or self.restart == "step" or (self.restart == "epoch" and step.iteration == 1):
            self.leaves = {name: tensor.clone() for name, tensor in step.before.items()}
            self.optimizer = self.rule.make_optimizer(list(self.leaves.values()), self.hparams)
        gradients = self.transform_gradient(step, step.gradients) if self.transform_gradient else step.gradients
        if step.lr is not None and not self.fixed_lr:
            for group in self.optimizer.param_groups:
                group["lr"] = step.lr
        with torch.no_grad():
            for name, leaf in self.leaves.items():
                leaf.copy_(step.before[name])
                leaf.grad = gradients[name].clone()
        self.optimizer.step()
        return {name: leaf.detach().clone() for name, leaf in self.leaves.items()}


def rule_stepper(rule: Rule, hparams: dict, **options) -> Callable[[], Stepper]:
    """A factory of the rule itself (its pure update when declared, else its reference) with ``hparams``."""
    declaration = rule.declaration
    if declaration.update is not None and declaration.init is not None:
        return lambda: RuleStepper(declaration.update, declaration.init, hparams, **options)
    return lambda: TorchStepper(rule, hparams, **options)


class AccumulatedGradients:
    """What ``p.grad`` holds when it is never zeroed: the sum of every gradient so far."""

    def __init__(self):
        self.total: dict[str, torch.Tensor] | None = None

    def __call__(self, step: StepRecord, gradients: dict) -> dict:
        if self.total is None:
            self.total = {name: gradient.clone() for name, gradient in gradients.items()}
        else:
            self.total = {name: self.total[name] + gradients[name] for name in gradients}
        return self.total


# --- the hypotheses --------------------------------------------------------------------------------

# Words for a hyperparameter that is ignored, where the name alone reads badly.
_IGNORED = {
    "momentum": (
        "momentum is never applied: every update equals plain {title}'s with momentum=0",
        "Is the momentum buffer stored at the first step, and used from the second on? A buffer reset at "
        "every step, or rebound to a new tensor inside the loop (v = m*v + g on the loop variable of "
        "`for v, p in zip(buffers, params)`), is never carried over: update it in place (v.mul_(m).add_(g)) "
        "or store it (buffers[i] = ...).",
    ),
    "weight_decay": ("weight decay is missing: the updates equal those with weight_decay=0", ""),
}


def variants_of(rule: Rule) -> tuple[Variant, ...]:
    """The rule's known mistakes and variants, as its declaration holds them (``variants=``)."""
    return tuple(rule.declaration.variants)


def _variant_stepper(rule: Rule, variant: Variant, hparams: dict) -> Callable[[], Stepper]:
    init = variant.init or rule.declaration.init
    return lambda: RuleStepper(variant.update, init, hparams)


def _applies(variant: Variant, hparams: dict) -> bool:
    try:
        return bool(variant.applies(hparams))
    except (KeyError, TypeError):
        return False


def hypotheses(rule: Rule, hparams: dict, lr_changes: bool = False) -> list[Hypothesis]:
    """The known mistakes and variants that can be told apart from the rule under these hyperparameters
    (``lr_changes``: and a learning rate that changes during the run)."""
    found: list[Hypothesis] = []
    title = rule.title
    defaults = rule.defaults
    for variant in variants_of(rule):
        if _applies(variant, hparams):
            found.append(Hypothesis(variant.cause, _variant_stepper(rule, variant, hparams), variant.kind,
                                    condition=variant.condition))
    # Generic: a number never applied (0) or left at its default, a flag the other way.
    for name in rule.names():
        kind, value, default = rule.kind(name), hparams[name], defaults.get(name)
        if kind != "number" or name == "lr" or not isinstance(value, float):
            if kind == "flag" and name != "maximize":
                found.append(Hypothesis(
                    f"{name}={not value} is used: every update equals {title}'s with {name}={not value}, "
                    f"but {name}={value}",
                    rule_stepper(rule, {**hparams, name: not value}),
                ))
            continue
        minimum = rule.declaration.hyperparameter(name).minimum
        if value != 0 and (minimum is None or minimum <= 0):
            cause, hint = _IGNORED.get(name, ("{name} is never applied: every update equals {title}'s with {name}=0", ""))
            found.append(Hypothesis(cause.format(name=name, title=title), rule_stepper(rule, {**hparams, name: 0.0}),
                                    hint=hint))
        if default is not None and default != 0 and value != default:
            found.append(Hypothesis(
                f"{name} is ignored: every update equals {title}'s with its default {name}={format_value(default)}",
                rule_stepper(rule, {**hparams, name: default}),
            ))
    weight_decay = hparams.get("weight_decay")
    if isinstance(weight_decay, float) and weight_decay != 0:
        found.append(Hypothesis(
            "weight decay has the wrong sign: the updates equal those with weight_decay="
            f"{format_value(-weight_decay)}, so weights grow instead of shrinking",
            rule_stepper(rule, {**hparams, "weight_decay": -weight_decay}),
        ))
        found.append(Hypothesis(
            f"weight decay is applied twice: the updates equal those with weight_decay={format_value(2 * weight_decay)} "
            "(is it added to the gradient and again in the update, or also in the loss?)",
            rule_stepper(rule, {**hparams, "weight_decay": 2 * weight_decay}),
        ))
    if lr_changes:
        found.append(Hypothesis(
            "the learning rate is read once: when it changes (as a scheduler changes param_groups' lr, or "
            "the lr passed in), your steps go on with the first one",
            rule_stepper(rule, hparams, fixed_lr=True),
            hint="Is the learning rate stored when the state is made (self.lr = lr) instead of read at every step?",
        ))
    found.append(Hypothesis(
        "gradients are never zeroed: each step uses the sum of all gradients so far",
        rule_stepper(rule, hparams, transform_gradient=AccumulatedGradients()),
        hint="backward() adds into p.grad: call p.grad.zero_() or model.zero_grad() in every step.",
    ))
    found.append(Hypothesis(
        f"the optimizer state ({_state_words(rule)}) starts afresh every epoch",
        rule_stepper(rule, hparams, restart="epoch"),
        hint="Is it created inside the loop over epochs?",
    ))
    found.append(Hypothesis(
        f"the optimizer state ({_state_words(rule)}) starts afresh at every step, so it is never carried over",
        rule_stepper(rule, hparams, restart="step"),
        hint="Is it created inside the loop over batches, or rebound to a new tensor (v = ... on a loop "
             "variable) instead of stored?",
    ))
    return found


def _state_words(rule: Rule) -> str:
    init = rule.declaration.init
    if init is None:
        return "its buffers"
    try:
        fields = getattr(init([torch.zeros(2, 2)], rule.defaults), "_fields", ())
    except Exception:
        fields = ()
    fields = [field.replace("_", " ") for field in fields if field != "step"]
    return ", ".join(fields) if fields else "its buffers"


# --- constants the code fixes ----------------------------------------------------------------------

_FRACTIONS = (0.0, 0.1, 0.2, 0.25, 0.5, 0.75, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9999)
_LOG_GRID = tuple(mantissa * 10.0**exponent for exponent in range(-12, 2) for mantissa in (1.0, 2.0, 5.0))


def _usual_values(rule: Rule, name: str, current: float) -> list[float]:
    """The values people write for a hyperparameter, within its declared range, other than ``current``."""
    declared = rule.declaration.hyperparameter(name)
    # Beyond 1 a momentum or a decay rate stops being one; a fixed value there is no one's constant.
    values = _LOG_GRID if declared.log_uniform else sorted(set(_FRACTIONS) | {v for v in _LOG_GRID if 1e-6 <= v < 1})
    low, high = declared.minimum, declared.maximum
    kept = []
    for value in values:
        if low is not None and value < low or high is not None and (
            value > high or (value == high and not declared.maximum_inclusive)
        ):
            continue
        if value != current:
            kept.append(float(value))
    return kept


def constant_candidates(rule: Rule, hparams: dict, unreceived: set[str]) -> list[tuple[str, object]]:
    """Each (hyperparameter, value) to try for the hyperparameters the code has no parameter for."""
    candidates: list[tuple[str, object]] = []
    for name in rule.names():
        if name not in unreceived:
            continue
        kind, current = rule.kind(name), hparams[name]
        if kind == "number" and isinstance(current, float):
            candidates += [(name, value) for value in _usual_values(rule, name, current)]
        elif kind == "pair" and isinstance(current, tuple):
            for index in (0, 1):
                for value in _usual_values(rule, name, current[index]):
                    pair = list(current)
                    pair[index] = value
                    candidates.append((name, tuple(pair)))
    return candidates


# --- judging a hypothesis --------------------------------------------------------------------------


def steps_agree(before: dict, expected: dict, observed: dict, limit: float) -> bool:
    return all(relative_difference(before[name], expected[name], observed[name]) <= limit for name in before)


def _explained(make_stepper: Callable[[], Stepper], records: list[StepRecord], first: int, limit: float) -> int:
    """How many steps from ``first`` on the hypothesis reproduces (0 when it misses the first of them)."""
    stepper = make_stepper()
    explained = 0
    for index, record in enumerate(records):
        try:
            candidate = stepper(record)
        except (RuntimeError, ValueError, ZeroDivisionError):
            return 0
        if index < first:
            continue
        if steps_agree(record.before, candidate, record.after, limit):
            explained += 1
        elif index == first:
            return 0
    return explained


def diagnose(
    records: list[StepRecord], first: int, rule: Rule, hparams: dict, batch_size: int,
    unreceived: set[str] | None = None, summed_gradients: bool = False,
) -> Diagnosis:
    """The likely cause of ``records[first]`` differing from the reference (see the module docstring).

    ``summed_gradients``: the user's code was handed the gradients of the loss summed over the
    batch (it takes the batch size, as d2l's ``sgd`` does), for it to divide by the batch size."""
    dtype = next(iter(records[first].before.values())).dtype
    limit = tolerance(dtype)
    compared = len(records) - first
    first_step = records[first].number
    best: Diagnosis | None = None
    candidates = hypotheses(rule, hparams, lr_changes=len({record.lr for record in records}) > 1)
    for hypothesis in candidates:
        explained = _explained(hypothesis.make_stepper, records, first, limit)
        diagnosis = Diagnosis(hypothesis.cause, explained, compared, first_step, hypothesis.hint, hypothesis.kind,
                              hypothesis.condition)
        if explained == compared:
            return diagnosis
        if explained and (best is None or explained > best.explained_steps):
            best = diagnosis
    # A constant multiple first: a hidden constant can mimic one (Nesterov with momentum 0.001 is
    # about 1.001 times plain SGD), and the multiple is the plainer account.
    scaled = _constant_factor(records, first, limit, batch_size, summed_gradients)
    if scaled is not None and scaled.explained_steps == compared:
        return _fixed_learning_rate(records, first, rule, hparams, unreceived or set(), limit, scaled) or scaled
    unchanged = steps_agree(records[first].before, records[first].before, records[first].after, limit)
    if best is None and not unchanged:
        constant = _fixed_constant(records, first, rule, hparams, unreceived or set(), limit)
        if constant is not None:
            return constant
    if scaled is not None and (best is None or scaled.explained_steps > best.explained_steps):
        return scaled
    if best is not None:
        return best
    return Diagnosis(_no_known_pattern(records[first]), 0, compared, first_step, kind="none")


def _fixed_learning_rate(records, first, rule: Rule, hparams: dict, unreceived: set[str], limit: float,
                         scaled: Diagnosis) -> Diagnosis | None:
    """A learning rate the code fixes, when its steps are a constant multiple c of the reference's:
    ``lr * c`` to three digits, if the rule at that rate gives the code's steps."""
    if "lr" not in unreceived or scaled.factor is None or scaled.factor <= 0:
        return None
    value = float(f"{hparams['lr'] * scaled.factor:.3g}")
    explained = _explained(rule_stepper(rule, {**hparams, "lr": value}), records, first, limit)
    if explained != scaled.compared_steps:
        return None
    cause = (
        f"your steps match {rule.title} with lr={format_value(value)}: your code has no parameter for lr and "
        f"uses lr={format_value(value)}, not the {format_value(hparams['lr'])} checked against"
    )
    return Diagnosis(cause, explained, scaled.compared_steps, scaled.first_step, kind="variant",
                     condition=f"equal to {rule.title} with lr={format_value(value)}")


def _fixed_constant(records, first, rule: Rule, hparams: dict, unreceived: set[str], limit: float) -> Diagnosis | None:
    """A value the code fixes for a hyperparameter it takes no parameter for, alone or with a known variant."""
    candidates = constant_candidates(rule, hparams, unreceived)
    if not candidates:
        return None
    compared = len(records) - first
    title = rule.title
    # The variants first: where one with a constant and the rule with another constant give the same
    # steps (Adagrad's sqrt(sum + eps) is torch's with initial_accumulator_value = eps), the variant
    # is what the code says.
    bases: list[tuple[Variant | None, Callable]] = [
        (variant, lambda changed, variant=variant: _variant_stepper(rule, variant, changed))
        for variant in variants_of(rule) if variant.kind == "variant"
    ]
    bases.append((None, lambda changed: rule_stepper(rule, changed)))
    for variant, make in bases:
        for name, value in candidates:
            changed = {**hparams, name: value}
            if variant is not None and not _applies(variant, changed):
                continue
            explained = _explained(make(changed), records, first, limit)
            if explained != compared:
                continue
            fixed = (
                f"your code has no parameter for {name} and uses {name}={format_value(value)}, "
                f"not the {format_value(hparams[name])} checked against"
            )
            if variant is None:
                cause = f"your steps match {title} with {name}={format_value(value)}: {fixed}"
                return Diagnosis(cause, explained, compared, records[first].number, kind="variant",
                                 condition=f"equal to {title} with {name}={format_value(value)}")
            cause = f"{variant.cause}; and {fixed}"
            return Diagnosis(cause, explained, compared, records[first].number, kind=variant.kind,
                             condition=variant.condition)
    return None


# --- a constant multiple of the reference's update -------------------------------------------------


def _flat_updates(record: StepRecord) -> tuple[torch.Tensor, torch.Tensor]:
    """The user's update and the reference's, all parameters in one float64 vector each."""
    names = list(record.before)
    user = torch.cat([(record.after[n].double() - record.before[n].double()).flatten() for n in names])
    torch_update = torch.cat([(record.reference[n].double() - record.before[n].double()).flatten() for n in names])
    return user, torch_update


def _constant_factor(
    records: list[StepRecord], first: int, limit: float, batch_size: int, summed_gradients: bool = False
) -> Diagnosis | None:
    """A constant multiple c of the reference's update, fitted at the first differing step (least squares)."""
    record = records[first]
    if steps_agree(record.before, record.before, record.after, limit):
        hint = (
            "p = p - lr*g only rebinds the loop variable; write p.data = p.data - lr*g, or p -= lr*g "
            "under torch.no_grad()."
        )
        explained, compared = _count_scaled(records, first, 0.0, limit)
        cause = "the parameters did not change: the update never reached the model"
        return Diagnosis(cause, explained, compared, record.number, hint)
    user, reference = _flat_updates(record)
    reference_norm = reference.dot(reference).item()
    if reference_norm == 0 or not torch.isfinite(user).all():
        return None
    factor = user.dot(reference).item() / reference_norm
    explained, compared = _count_scaled(records, first, factor, limit)
    if explained == 0:
        return None
    cause, hint = _describe_factor(factor, batch_size, summed_gradients)
    return Diagnosis(cause, explained, compared, record.number, hint, factor=factor)


def _count_scaled(records: list[StepRecord], first: int, factor: float, limit: float) -> tuple[int, int]:
    explained = 0
    for record in records[first:]:
        expected = {
            name: record.before[name].double()
            + factor * (record.reference[name].double() - record.before[name].double())
            for name in record.before
        }
        before = {name: tensor.double() for name, tensor in record.before.items()}
        # The reference's update carries the rounding of its result (an ulp of p); scaling it by c scales that too.
        if steps_agree(before, expected, record.after, limit * max(1.0, abs(factor))):
            explained += 1
        elif record is records[first]:
            break
    return explained, len(records) - first


def _describe_factor(factor: float, batch_size: int, summed_gradients: bool = False) -> tuple[str, str]:
    """The cause and the hint for updates that are ``factor`` times the reference's."""
    if abs(factor + 1) < 1e-3:
        return (
            "every update has the wrong sign: parameters move up the gradient instead of down",
            "Is it p + lr*g where p - lr*g belongs?",
        )
    # Near 1, six digits would print 1.000001 as "1": show the deviation instead.
    shown = f"{factor:.6g}" if abs(factor - 1) >= 1e-4 else f"(1 {'+' if factor > 1 else '-'} {abs(factor - 1):.3g})"
    cause = f"the learning rate is scaled wrongly: every update is {shown} times torch's"
    if abs(factor * batch_size - 1) < 1e-3:
        return cause + f" (1/{batch_size}, one over the batch size)", (
            "The loss is already a mean over the batch: is the gradient divided by the batch size again?"
        )
    if abs(factor / batch_size - 1) < 1e-3:
        if summed_gradients:
            return cause + f" ({batch_size}, the batch size)", (
                "Your update takes batch_size, so gdlab handed it the gradients of the loss summed over the "
                "batch (d2l's l.sum().backward()): is the division by batch_size missing?"
            )
        return cause + f" ({batch_size}, the batch size)", "Is the loss summed over the batch instead of averaged?"
    if abs(factor - round(factor)) < 1e-3 or abs(1 / factor - round(1 / factor)) < 1e-3:
        return cause, "Is the learning rate multiplied or divided by a whole number somewhere?"
    return cause, ""


def _no_known_pattern(record: StepRecord) -> str:
    user, reference = _flat_updates(record)
    ratio = (user.norm() / reference.norm()).item() if reference.norm() > 0 else float("inf")
    cosine = (user.dot(reference) / (user.norm() * reference.norm())).item() if ratio not in (0.0, float("inf")) else float("nan")
    error = ((user - reference).norm() / reference.norm()).item() if reference.norm() > 0 else float("inf")
    return (
        f"differs, no known pattern: over all parameters at this step your update is {ratio:.4g} times "
        f"the size of torch's, at cosine {cosine:.4f} to it, and off by {error:.3g} of its size"
    )

