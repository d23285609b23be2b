"""Why a training function parts from torch: known mistakes tested against what it did.

Each hypothesis is a rule: torch's own optimizer with one thing changed
(momentum 0, weight decay 0 or negated, gradients summed instead of
replaced, state restarted every epoch, ...) or, for the two mistakes no torch
flag produces, a few lines written out here. It is replayed over the user's
whole run: at every step it starts from the user's parameters and sees the
same gradients, so its state is what the user's state would be if the user
had made exactly that mistake. It explains a step when its result matches
the user's within the same rounding tolerance the check itself uses
(`gdlab.check.compare`).

The cause named is the first hypothesis (in the order listed below, the
specific before the generic) that explains the first differing step and
every later one; failing that, the one explaining most of them. Last comes
"a constant multiple of torch's update" (a learning rate scaled wrongly,
no update at all, or a step in the wrong direction), fitted at the first
differing step and tested on the later ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from gdlab.check.compare import relative_difference, tolerance
from gdlab.check.rules import Rule


@dataclass(eq=False)
class StepRecord:
    """One step as the check saw it: the user's parameters before and after, torch's gradients and result."""

    number: int
    epoch: int
    iteration: int
    before: dict[str, torch.Tensor]
    after: dict[str, torch.Tensor]
    gradients: dict[str, torch.Tensor]
    reference: dict[str, torch.Tensor]


Stepper = Callable[[StepRecord], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Hypothesis:
    """A mistake: what it is, where to look for it in the code, and the rule that makes it."""

    cause: str
    make_stepper: Callable[[], Stepper]
    hint: str = ""


@dataclass(frozen=True)
class Diagnosis:
    """The likely cause, and how many of the steps from the first difference on it explains."""

    cause: str
    explained_steps: int
    compared_steps: int
    first_step: int
    hint: str = ""

    def describe(self) -> str:
        """The cause, the evidence (how many steps it matches), then where to look."""
        if self.explained_steps == 0:
            evidence = ""
        elif self.explained_steps == self.compared_steps:
            steps = "your step" if self.compared_steps == 1 else f"all {self.compared_steps} of your steps"
            evidence = f"; this matches {steps} from step {self.first_step} on"
        else:
            evidence = (
                f"; this matches {self.explained_steps} of your {self.compared_steps} steps from step "
                f"{self.first_step} on, so there may be more than one mistake"
            )
        return f"{self.cause}{evidence}." + (f" {self.hint}" if self.hint else "")


class TorchStepper:
    """A torch optimizer stepping copies of the user's parameters with given gradients.

    ``transform_gradient(step, gradients)`` and ``transform_start(step, before)``
    change what the optimizer is fed, to model mistakes no torch flag makes.
    ``restart_each_epoch`` builds a fresh optimizer (fresh state) at every
    epoch's first step.
    """

    def __init__(
        self,
        make_optimizer: Callable[[list[torch.Tensor]], torch.optim.Optimizer],
        transform_gradient: Callable[[StepRecord, dict], dict] | None = None,
        transform_start: Callable[[StepRecord, dict], dict] | None = None,
        restart_each_epoch: bool = False,
    ):
        self.make_optimizer = make_optimizer
        self.transform_gradient = transform_gradient
        self.transform_start = transform_start
        self.restart_each_epoch = restart_each_epoch
        self.leaves: dict[str, torch.Tensor] | None = None
        self.optimizer: torch.optim.Optimizer | None = None

    def __call__(self, step: StepRecord) -> dict[str, torch.Tensor]:
        if self.optimizer is None or (self.restart_each_epoch and step.iteration == 1):
            self.leaves = {name: tensor.clone() for name, tensor in step.before.items()}
            self.optimizer = self.make_optimizer(list(self.leaves.values()))
        start = self.transform_start(step, step.before) if self.transform_start else step.before
        gradients = self.transform_gradient(step, step.gradients) if self.transform_gradient else step.gradients
        with torch.no_grad():
            for name, leaf in self.leaves.items():
                leaf.copy_(start[name])
                leaf.grad = gradients[name].clone()
        self.optimizer.step()
        return {name: leaf.detach().clone() for name, leaf in self.leaves.items()}


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


class ZeroStartMovingAverageMomentum:
    """SGD with momentum as an exponential moving average that starts at zero.

        v_0 = 0,   v_t = m v_{t-1} + (1 - m)(g_t + wd p),   p <- p - lr v_t

    torch instead starts the buffer at the first gradient and, with its
    default dampening 0, adds gradients undamped: v_1 = g_1, v_t = m v_{t-1} + g_t.
    """

    def __init__(self, lr: float, momentum: float, weight_decay: float):
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.velocity: dict[str, torch.Tensor] = {}

    def __call__(self, step: StepRecord) -> dict[str, torch.Tensor]:
        after = {}
        for name, parameter in step.before.items():
            gradient = step.gradients[name] + self.weight_decay * parameter
            velocity = self.velocity.get(name, torch.zeros_like(parameter))
            self.velocity[name] = self.momentum * velocity + (1 - self.momentum) * gradient
            after[name] = parameter - self.lr * self.velocity[name]
        return after


class AdamWithoutBiasCorrection:
    """Adam whose moment estimates are used as they are, without dividing by 1 - beta^t.

        m_t = b1 m + (1 - b1) g,   v_t = b2 v + (1 - b2) g^2,   p <- p - lr m_t / (sqrt(v_t) + eps)

    with weight decay added to g (Adam) or applied as p <- p (1 - lr wd) first (AdamW).
    """

    def __init__(self, hparams: dict[str, float | bool], decoupled: bool):
        self.hparams, self.decoupled = hparams, decoupled
        self.first: dict[str, torch.Tensor] = {}
        self.second: dict[str, torch.Tensor] = {}

    def __call__(self, step: StepRecord) -> dict[str, torch.Tensor]:
        lr, beta1, beta2 = self.hparams["lr"], self.hparams["beta1"], self.hparams["beta2"]
        eps, weight_decay = self.hparams["eps"], self.hparams["weight_decay"]
        after = {}
        for name, parameter in step.before.items():
            gradient = step.gradients[name]
            if self.decoupled:
                parameter = parameter * (1 - lr * weight_decay)
            else:
                gradient = gradient + weight_decay * parameter
            first = beta1 * self.first.get(name, torch.zeros_like(gradient)) + (1 - beta1) * gradient
            second = beta2 * self.second.get(name, torch.zeros_like(gradient)) + (1 - beta2) * gradient**2
            self.first[name], self.second[name] = first, second
            after[name] = parameter - lr * first / (second.sqrt() + eps)
        return after


def _torch_variant(rule: Rule, hparams, **changes) -> Callable:
    """A factory of the rule's torch optimizer with ``changes`` to its hyperparameters."""
    kwargs = rule.torch_kwargs({**hparams, **changes})
    return lambda params: rule.optimizer(params, foreach=False, **kwargs)


def _minus_weight_decay(weight_decay: float) -> Callable:
    return lambda step, gradients: {
        name: gradient.add(step.before[name], alpha=-weight_decay) for name, gradient in gradients.items()
    }


def hypotheses(rule: Rule, hparams: dict[str, float | bool]) -> list[Hypothesis]:
    """The known mistakes that can be told apart from torch's rule under these hyperparameters."""
    found: list[Hypothesis] = []

    def add(cause: str, make_stepper: Callable[[], Stepper], hint: str = "") -> None:
        found.append(Hypothesis(cause, make_stepper, hint))

    def variant(**changes) -> Callable[[], Stepper]:
        return lambda: TorchStepper(_torch_variant(rule, hparams, **changes))

    weight_decay = float(hparams.get("weight_decay", 0.0))
    momentum = float(hparams.get("momentum", 0.0))

    if rule.name in ("sgd", "rmsprop") and momentum != 0:
        add(
            f"momentum is never applied: every update equals plain {rule.title}'s with momentum=0",
            variant(**({"momentum": 0.0, "dampening": 0.0, "nesterov": False} if rule.name == "sgd"
                       else {"momentum": 0.0})),
            hint="Is the momentum buffer stored at the first step, and used from the second on?",
        )
    if weight_decay != 0:
        add(
            "weight decay is missing: the updates equal those with weight_decay=0",
            variant(weight_decay=0.0),
        )
        if rule.decoupled_weight_decay:
            lr = float(hparams["lr"])
            add(
                "weight decay has the wrong sign: parameters are scaled by (1 + lr*weight_decay) "
                "instead of (1 - lr*weight_decay), so they grow",
                lambda: TorchStepper(
                    _torch_variant(rule, hparams, weight_decay=0.0),
                    transform_start=lambda step, before: {
                        name: tensor * (1 + lr * weight_decay) for name, tensor in before.items()
                    },
                ),
            )
        else:
            add(
                "weight decay has the wrong sign: the gradient gets - weight_decay*p instead of "
                "+ weight_decay*p, so weights grow instead of shrinking",
                lambda: TorchStepper(
                    _torch_variant(rule, hparams, weight_decay=0.0),
                    transform_gradient=_minus_weight_decay(weight_decay),
                ),
            )
    add(
        "gradients are never zeroed: each step uses the sum of all gradients so far",
        lambda: TorchStepper(_torch_variant(rule, hparams), transform_gradient=AccumulatedGradients()),
        hint="backward() adds into p.grad: call p.grad.zero_() or model.zero_grad() in every step.",
    )
    if rule.name == "sgd" and momentum != 0:
        nesterov, dampening = bool(hparams["nesterov"]), float(hparams["dampening"])
        if not nesterov:
            if dampening == 0:
                add(
                    f"momentum is dampened: buf = m*buf + (1 - m)*g, as with dampening={momentum:g}; "
                    "torch's dampening here is 0 (buf = m*buf + g)",
                    variant(dampening=momentum),
                )
            else:
                add(
                    f"dampening is ignored: buf = m*buf + g, where dampening={dampening:g} asks for "
                    f"buf = m*buf + (1 - {dampening:g})*g",
                    variant(dampening=0.0),
                )
        if dampening == 0:
            add(
                "momentum is a moving average started at zero (v = m*v + (1 - m)*g, v0 = 0); torch "
                "starts the buffer at the first gradient and adds gradients undamped (v = m*v + g)",
                lambda: ZeroStartMovingAverageMomentum(float(hparams["lr"]), momentum, weight_decay),
            )
            add(
                "Nesterov momentum is used, but nesterov=False" if not nesterov
                else "Nesterov momentum is missing: plain momentum is used, but nesterov=True",
                variant(nesterov=not nesterov),
            )
    if rule.name in ("adam", "adamw"):
        decoupled = rule.decoupled_weight_decay
        if weight_decay != 0:
            add(
                "weight decay is decoupled (AdamW: p <- p*(1 - lr*weight_decay)) where Adam adds "
                "weight_decay*p to the gradient" if not decoupled else
                "weight decay is added to the gradient (Adam's L2) where AdamW decouples it: "
                "p <- p*(1 - lr*weight_decay)",
                lambda: TorchStepper(_adam_variant(rule, hparams, decoupled=not decoupled)),
            )
        amsgrad = bool(hparams["amsgrad"])
        add(
            "AMSGrad is used (the running maximum of v), but amsgrad=False" if not amsgrad
            else "AMSGrad is missing: v is used, not its running maximum, but amsgrad=True",
            variant(amsgrad=not amsgrad),
        )
        if not amsgrad:
            add(
                "bias correction is missing: m and v are used without dividing by (1 - beta1^t) "
                "and (1 - beta2^t)",
                lambda: AdamWithoutBiasCorrection(hparams, decoupled),
            )
    if rule.name == "rmsprop":
        centered = bool(hparams["centered"])
        add(
            "the centered variant is used (v - mean(g)^2), but centered=False" if not centered
            else "the centered variant is missing (v is used as it is), but centered=True",
            variant(centered=not centered),
        )
    if rule.name == "adagrad" and float(hparams["lr_decay"]) != 0:
        add(
            "lr_decay is ignored: the learning rate stays lr instead of lr / (1 + (t - 1)*lr_decay)",
            variant(lr_decay=0.0),
        )
    if rule.name != "sgd" or momentum != 0:
        state = {"sgd": "momentum buffers", "rmsprop": "running averages", "adagrad": "sums of squared gradients"}
        add(
            f"the optimizer state ({state.get(rule.name, 'moment estimates')}) starts afresh every epoch",
            lambda: TorchStepper(_torch_variant(rule, hparams), restart_each_epoch=True),
            hint="Is it created inside the loop over epochs?",
        )
    return found


def _adam_variant(rule: Rule, hparams, decoupled: bool) -> Callable:
    kwargs = rule.torch_kwargs(hparams)
    return lambda params: torch.optim.Adam(params, foreach=False, decoupled_weight_decay=decoupled, **kwargs)


def steps_agree(before: dict, expected: dict, observed: dict, limit: float) -> bool:
    return all(relative_difference(before[name], expected[name], observed[name]) <= limit for name in before)


def diagnose(
    records: list[StepRecord], first: int, rule: Rule, hparams: dict[str, float | bool], batch_size: int
) -> Diagnosis:
    """The likely cause of ``records[first]`` differing from torch (see the module docstring)."""
    dtype = next(iter(records[first].before.values())).dtype
    limit = tolerance(dtype)
    compared = len(records) - first
    first_step = records[first].number
    best: Diagnosis | None = None
    for hypothesis in hypotheses(rule, hparams):
        stepper = hypothesis.make_stepper()
        explained = 0
        for index, record in enumerate(records):
            candidate = stepper(record)
            if index < first:
                continue
            if steps_agree(record.before, candidate, record.after, limit):
                explained += 1
            elif index == first:
                break
        if explained == compared:
            return Diagnosis(hypothesis.cause, explained, compared, first_step, hypothesis.hint)
        if explained and (best is None or explained > best.explained_steps):
            best = Diagnosis(hypothesis.cause, explained, compared, first_step, hypothesis.hint)
    scaled = _constant_factor(records, first, limit, batch_size)
    if scaled is not None and (best is None or scaled.explained_steps > best.explained_steps):
        return scaled
    if best is not None:
        return best
    return Diagnosis(_no_known_pattern(records[first]), 0, compared, first_step)


def _flat_updates(record: StepRecord) -> tuple[torch.Tensor, torch.Tensor]:
    """The user's update and torch's, all parameters in one float64 vector each."""
    names = list(record.before)
    user = torch.cat([(record.after[n].double() - record.before[n].double()).flatten() for n in names])
    torch_update = torch.cat([(record.reference[n].double() - record.before[n].double()).flatten() for n in names])
    return user, torch_update


def _constant_factor(records: list[StepRecord], first: int, limit: float, batch_size: int) -> Diagnosis | None:
    """A constant multiple c of torch's update, fitted at the first differing step (least squares)."""
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
    cause, hint = _describe_factor(factor, batch_size)
    return Diagnosis(cause, explained, compared, record.number, hint)


def _count_scaled(records: list[StepRecord], first: int, factor: float, limit: float) -> tuple[int, int]:
    explained = 0
    for record in records[first:]:
        expected = {
            name: record.before[name].double()
            + factor * (record.reference[name].double() - record.before[name].double())
            for name in record.before
        }
        before = {name: tensor.double() for name, tensor in record.before.items()}
        # Torch's update carries the rounding of its result (an ulp of p); scaling it by c scales that too.
        if steps_agree(before, expected, record.after, limit * max(1.0, abs(factor))):
            explained += 1
        elif record is records[first]:
            break
    return explained, len(records) - first


def _describe_factor(factor: float, batch_size: int) -> tuple[str, str]:
    """The cause and the hint for updates that are ``factor`` times torch's."""
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
