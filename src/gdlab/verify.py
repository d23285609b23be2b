"""``gdlab verify``: every scratch update rule and the scratch backward pass, against torch.

Update rules: for every flag combination, in float32 and float64, one small
MLP is trained twice from the same initialization on the same batches, once
stepped by gdlab's optimizer and once by ``torch.optim``'s with
``foreach=False``. Both runs use two param groups with different
hyperparameters, a StepLR schedule and a parameter that never gets a
gradient. After every step every parameter must be ``torch.equal``: the
gradients come from each model's own forward and backward pass, so a
difference of one ulp anywhere would grow and show.

Backward pass: ``gdlab.backprop.MLP.backward`` for every activation and
loss, float64, against autograd on the same network and batch, to a relative
difference of ``BACKPROP_RTOL`` per gradient tensor.

One row per rule; exit status 1 when any row fails. Each row states its result in the words every
gdlab comparison shares (`gdlab.comparison`: verdict, kind, cause, evidence, the criterion in
words, its tolerance as a number, the value measured); ``gdlab verify --json`` prints them, one
object per row under ``rows``.

torch (and everything built on it) is imported inside the functions that use
it: the CLI imports this module to register the command, and ``gdlab --help``
should not wait a second or two for torch.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from gdlab.comparison import Comparison, Kind, Tolerance, Verdict, finite_or_none
from gdlab.errors import GdlabError
from gdlab.threads import one_thread

if TYPE_CHECKING:
    import torch
    from torch import nn

STEPS = 60
DTYPES = ("float32", "float64")
BACKPROP_RTOL = 1e-9
BACKPROP_TOLERANCE = Tolerance(
    f"relative difference <= {BACKPROP_RTOL:g} of the tensor's largest entry, vs autograd, float64", BACKPROP_RTOL
)
RULE_TOLERANCE = Tolerance("torch.equal")
# A rule torch lacks (Lion) is held to its own pure rule: its class must equal its declared update.
DECLARED_TOLERANCE = Tolerance("torch.equal vs its declared init/update (no torch rule; see its tests for the paper)")
BACKPROP_CRITERION = BACKPROP_TOLERANCE.criterion
RULE_CRITERION = RULE_TOLERANCE.criterion
DECLARED_CRITERION = DECLARED_TOLERANCE.criterion
BACKPROP_ACTIVATIONS = ("relu", "sigmoid", "tanh", "leaky_relu", "identity")
BACKPROP_LOSSES = ("mse", "cross_entropy")

BACKPROP_RULE = "backprop.MLP"

_SIZES = [12, 16, 16, 4]
_BATCH_SIZE = 16
_EXAMPLES = 64


@dataclass(frozen=True)
class VerifyRow:
    """One line of the verify table.

    ``max_difference`` is the largest absolute parameter difference over all
    steps and configurations for a rule; for the backward pass, the largest
    relative difference of a gradient tensor. ``first_mismatch`` names the
    first configuration, step and tensor that failed ``criterion``, whose
    number is ``limit`` (0 for torch.equal). ``compared`` says what was
    compared, in words. A row that compared nothing (``configurations`` 0:
    the code could not even be imported) cannot check.
    """

    rule: str
    configurations: int
    criterion: str
    bit_exact: bool
    max_difference: float
    seconds: float
    first_mismatch: str | None = None
    limit: float = 0.0
    compared: str | None = None

    @property
    def passed(self) -> bool:
        return self.first_mismatch is None

    @property
    def tolerance(self) -> Tolerance:
        return Tolerance(self.criterion, self.limit)

    @property
    def comparison(self) -> Comparison:
        """The row in the words every gdlab comparison shares: a rule that differs from its
        reference is a bug (gdlab's contract is equality), measured by ``max_difference``."""
        if self.configurations == 0:
            return Comparison(Verdict.CANNOT_CHECK, cause=self.first_mismatch)
        return Comparison(
            verdict=Verdict.PASS if self.passed else Verdict.FAIL,
            kind=Kind.NONE if self.passed else Kind.BUG,
            cause=self.first_mismatch,
            evidence=self.compared,
            tolerance=self.tolerance,
            measured=self.max_difference,
        )

    def to_json(self) -> dict:
        """The shared keys (`gdlab.comparison`), then ``rule``, ``configurations``, ``bit_exact``
        and ``seconds``."""
        return {
            **self.comparison.to_json(),
            "rule": self.rule,
            "configurations": self.configurations,
            "bit_exact": self.bit_exact,
            "seconds": finite_or_none(self.seconds),
        }


OptimizerFactory = Callable[..., Any]  # called like an optimizer class: (param_groups, **hyperparameters)


def rule_checks() -> list[tuple[str, OptimizerFactory, OptimizerFactory, list[dict], str, str]]:
    """One check per registered rule, read off its declaration: (name, gdlab's class, its
    reference, the settings of its ``verify_grid`` the reference accepts, the problem to train,
    the criterion).

    The reference is torch's class on its single-tensor path; a rule torch lacks (Lion) is held
    to its own declared ``init``/``update``, so its class and the pure rule that studies stack
    and checks replay can never drift apart.
    """
    import functools

    from gdlab.optim import registry

    checks = []
    for declaration in registry.declarations():
        if declaration.reference is not None:
            reference = functools.partial(declaration.reference, **declaration.reference_kwargs)
        else:
            reference = _declared_update_optimizer(declaration)
        accepted = [config for config in declaration.verify_grid if _accepts(reference, config)]
        criterion = RULE_CRITERION if declaration.reference is not None else DECLARED_CRITERION
        checks.append((declaration.optimizer.__name__, declaration.optimizer, reference, accepted,
                       declaration.verify_problem, criterion))
    return checks


def _accepts(make_optimizer: OptimizerFactory, configuration: dict) -> bool:
    """Whether the reference takes this setting (torch refuses e.g. Nesterov without momentum)."""
    import torch

    try:
        make_optimizer([torch.zeros(2, 2, requires_grad=True)], **configuration)
    except ValueError:
        return False
    return True


def _declared_update_optimizer(declaration) -> OptimizerFactory:
    """An Optimizer that steps with the declaration's pure ``init``/``update``, one state per group."""
    import torch

    class DeclaredUpdate(torch.optim.Optimizer):
        def __init__(self, params, **hyperparameters):
            super().__init__(params, {**declaration.defaults(), **hyperparameters})
            self.rule_states = {}

        @torch.no_grad()
        def step(self, closure=None):
            loss = None
            if closure is not None:
                with torch.enable_grad():
                    loss = closure()
            for index, group in enumerate(self.param_groups):
                params = [param for param in group["params"] if param.grad is not None]
                hyperparameters = {key: value for key, value in group.items() if key != "params"}
                if index not in self.rule_states:
                    self.rule_states[index] = declaration.init(params, hyperparameters)
                declaration.update(params, [param.grad for param in params], self.rule_states[index],
                                   **hyperparameters)
            return loss

    DeclaredUpdate.__name__ = f"{declaration.optimizer.__name__}DeclaredUpdate"
    return DeclaredUpdate


def compare_rule(
    rule: str,
    scratch: OptimizerFactory,
    reference: OptimizerFactory,
    configurations: list[dict],
    problem: str = "mlp",
    criterion: str = RULE_CRITERION,
    *,
    dtypes=DTYPES,
    steps: int = STEPS,
) -> VerifyRow:
    """Train with ``scratch`` and ``reference`` side by side for every configuration and dtype.

    ``scratch`` and ``reference`` are called like optimizer classes,
    ``(param_groups, **configuration)``; ``dtypes`` are names ("float32").
    The row passes when every parameter is ``torch.equal`` after every step.
    """
    start = time.perf_counter()
    max_difference = 0.0
    first_mismatch = None
    for configuration, dtype in itertools.product(configurations, dtypes):
        with one_thread():
            difference, mismatch = _train_side_by_side(scratch, reference, configuration, dtype, steps, problem)
        max_difference = max(max_difference, difference)
        if mismatch is not None and first_mismatch is None:
            first_mismatch = f"{_describe(configuration)}, {dtype}: {mismatch}"
    return VerifyRow(
        rule=rule,
        configurations=len(configurations) * len(dtypes),
        criterion=criterion,
        bit_exact=first_mismatch is None,
        max_difference=max_difference,
        seconds=time.perf_counter() - start,
        first_mismatch=first_mismatch,
        compared=f"every parameter after each of {steps} steps, in {len(configurations)} settings x "
        f"{len(dtypes)} dtypes ({', '.join(dtypes)})",
    )


def _describe(configuration: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in configuration.items())


def _param_groups(params: list[nn.Parameter], spare: nn.Parameter, configuration: dict) -> list[dict]:
    """The first tensor in a group with its own lr (and weight decay, where the rule has one);
    the rest, and a parameter that never gets a gradient, on the defaults."""
    first, *rest = params
    group = {"params": [first], "lr": configuration.get("lr", 1e-2) / 2}
    if "weight_decay" in configuration:
        group["weight_decay"] = configuration["weight_decay"] * 2
    return [group, {"params": rest + [spare]}]


def _problem(problem: str, dtype):
    """(model, inputs, labels) of one verify problem."""
    import torch
    from torch import nn

    from gdlab.models import MLP

    if problem == "sparse":
        model = nn.Embedding(30, _SIZES[-1], sparse=True).to(dtype)
        inputs = torch.randint(0, 30, (_EXAMPLES, 3))
        labels = torch.randint(0, _SIZES[-1], (_EXAMPLES,))
        return model, inputs, labels
    model = MLP(_SIZES, activation="tanh").to(dtype)
    inputs = torch.randn(_EXAMPLES, _SIZES[0], dtype=dtype)
    labels = torch.randint(0, _SIZES[-1], (_EXAMPLES,))
    return model, inputs, labels


def _problem_params(model, problem: str) -> list:
    """What the optimizer gets: every parameter, or only the weight matrices ("matrices")."""
    params = list(model.parameters())
    return [param for param in params if param.dim() == 2] if problem == "matrices" else params


def _scores(model, inputs, problem: str):
    """Class scores: an embedding bag sums its rows ("sparse"), the MLP scores directly."""
    return model(inputs).sum(dim=1) if problem == "sparse" else model(inputs)


def _train_side_by_side(
    scratch: OptimizerFactory,
    reference: OptimizerFactory,
    configuration: dict,
    dtype_name: str,
    steps: int,
    problem: str = "mlp",
) -> tuple[float, str | None]:
    """Returns the largest |difference| over steps and parameters and the first mismatch, if any.

    A rule declared to need a closure (LBFGS) steps through one; every other optimizer is
    stepped after the gradients are computed, as training loops do. Two param groups where the
    rule takes more than one.
    """
    import copy

    import torch
    import torch.nn.functional as F
    from torch import nn

    from gdlab.train.loop import needs_closure

    dtype = getattr(torch, dtype_name)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(0)  # the CPU's only: fork_rng puts back no other
        scratch_model, inputs, labels = _problem(problem, dtype)
    reference_model = copy.deepcopy(scratch_model)
    runs = []
    for model, make_optimizer in ((scratch_model, scratch), (reference_model, reference)):
        spare = nn.Parameter(torch.ones(3, 3, dtype=dtype))
        params = _problem_params(model, problem)
        try:
            optimizer = make_optimizer(_param_groups(params, spare, configuration), **configuration)
        except ValueError:  # one param group only (LBFGS)
            optimizer = make_optimizer(params + [spare], **configuration)
        schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.5)
        runs.append((model, optimizer, schedule, spare))

    max_difference = 0.0
    first_mismatch = None
    for step in range(1, steps + 1):
        rows = slice((step * _BATCH_SIZE) % _EXAMPLES, (step * _BATCH_SIZE) % _EXAMPLES + _BATCH_SIZE)
        for model, optimizer, schedule, _ in runs:

            def closure(model=model, optimizer=optimizer):
                optimizer.zero_grad()
                loss = F.cross_entropy(_scores(model, inputs[rows], problem), labels[rows])
                loss.backward()
                return loss

            if needs_closure(optimizer):
                optimizer.step(closure)
            else:  # as people step: gradients first, then step() (many classes ignore a closure)
                closure()
                optimizer.step()
            schedule.step()
        (scratch_model, _, _, scratch_spare), (reference_model, _, _, reference_spare) = runs
        named_pairs = [
            (name, param, reference_param)
            for (name, param), reference_param in zip(
                scratch_model.named_parameters(), reference_model.parameters(), strict=True
            )
        ] + [("parameter without gradient", scratch_spare, reference_spare)]
        for name, param, reference_param in named_pairs:
            # Where both sides hold NaN (a setting that diverges, for both alike) they agree.
            both_nan = param.isnan() & reference_param.isnan()
            param, reference_param = param.masked_fill(both_nan, 0), reference_param.masked_fill(both_nan, 0)
            difference = (param - reference_param).abs().max().item()
            max_difference = max(max_difference, difference)
            if first_mismatch is None and not torch.equal(param, reference_param):
                first_mismatch = f"step {step}, {name} differs by up to {difference:.3g}"
    return max_difference, first_mismatch


def compare_backward(
    make_net: Callable[[list[int], str], nn.Module],
    *,
    activations=BACKPROP_ACTIVATIONS,
    losses=BACKPROP_LOSSES,
    rule: str = BACKPROP_RULE,
) -> VerifyRow:
    """``make_net(sizes, activation).backward`` against autograd, float64, every activation and loss.

    Passes when every gradient tensor is within ``BACKPROP_RTOL`` of autograd's,
    relative to the largest entry of autograd's tensor.
    """
    import torch

    start = time.perf_counter()
    max_difference = 0.0
    first_mismatch = None
    bit_exact = True
    for activation, loss in itertools.product(activations, losses):
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(0)
            net = make_net(_SIZES, activation).to(torch.float64)
            inputs = torch.randn(_EXAMPLES, _SIZES[0], dtype=torch.float64)
            if loss == "mse":
                targets = torch.randn(_EXAMPLES, _SIZES[-1], dtype=torch.float64)
            else:
                targets = torch.randint(0, _SIZES[-1], (_EXAMPLES,))
        with one_thread():
            expected = _autograd_gradients(net, inputs, targets, loss)
            with torch.no_grad():
                predictions = net(inputs)
                computed = net.backward(targets, predictions, loss=loss)
        for index, ((dW, db), (dW_expected, db_expected)) in enumerate(zip(computed, expected, strict=True)):
            for name, value, reference in (("dL_dW", dW, dW_expected), ("dL_db", db, db_expected)):
                bit_exact &= torch.equal(value, reference)
                difference = _relative_difference(value, reference)
                max_difference = max(max_difference, difference)
                if first_mismatch is None and not BACKPROP_TOLERANCE.admits(difference):
                    first_mismatch = (
                        f"activation={activation}, loss={loss}: layer {index} {name} "
                        f"differs by {difference:.3g} relative"
                    )
    return VerifyRow(
        rule=rule,
        configurations=len(activations) * len(losses),
        criterion=BACKPROP_TOLERANCE.criterion,
        bit_exact=bit_exact,
        max_difference=max_difference,
        seconds=time.perf_counter() - start,
        first_mismatch=first_mismatch,
        limit=BACKPROP_TOLERANCE.limit,
        compared=f"every gradient tensor against autograd's, activations {', '.join(activations)} x "
        f"losses {', '.join(losses)}",
    )


def _autograd_gradients(net: nn.Module, inputs, targets, loss: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    import torch
    import torch.nn.functional as F

    predictions = net(inputs)
    if loss == "mse":
        value = F.mse_loss(predictions, targets)
    else:
        value = F.cross_entropy(predictions, targets)
    tensors = [tensor for layer in net.layers for tensor in (layer.weight, layer.bias)]
    gradients = torch.autograd.grad(value, tensors)
    return list(zip(gradients[0::2], gradients[1::2]))


def _relative_difference(value: torch.Tensor, reference: torch.Tensor) -> float:
    if value.shape != reference.shape:
        return float("inf")
    scale = reference.abs().max().item()
    difference = (value - reference).abs().max().item()
    return difference / scale if scale > 0 else difference


def _backprop_row() -> VerifyRow:
    try:
        from gdlab.backprop import MLP as ScratchBackpropMLP
    except ImportError as error:
        return VerifyRow(
            rule=BACKPROP_RULE,
            configurations=0,
            criterion=BACKPROP_TOLERANCE.criterion,
            bit_exact=False,
            max_difference=float("nan"),
            seconds=0.0,
            first_mismatch=f"gdlab.backprop.MLP could not be imported: {error}",
            limit=BACKPROP_TOLERANCE.limit,
        )
    return compare_backward(lambda sizes, activation: ScratchBackpropMLP(sizes, activation=activation))


def run_verify(console: Console | None = None, rules: list[str] | None = None) -> list[VerifyRow]:
    """Run every check, or those of ``rules`` (names as in the table's first column, any case);
    print the table on ``console`` when one is given."""
    checks = rule_checks()
    chosen = _chosen_rules([check[0] for check in checks] + [BACKPROP_RULE], rules)
    rows = [compare_rule(*check) for check in checks if check[0] in chosen]
    if BACKPROP_RULE in chosen:
        rows.append(_backprop_row())
    if console is not None:
        console.print(results_table(rows))
        failed = [row for row in rows if not row.passed]
        if failed:
            for row in failed:
                console.print(f"[red]{row.rule}[/red]: {row.first_mismatch}")
        elif not rules:
            console.print("every scratch rule and the backward pass agree with torch")
        else:
            console.print(f"{', '.join(row.rule for row in rows)} agree with torch")
    return rows


def _chosen_rules(known: list[str], asked: list[str] | None) -> set[str]:
    if not asked:  # None, or an option given no value: everything
        return set(known)
    by_lower = {name.lower(): name for name in known}
    unknown = [name for name in asked if name.lower() not in by_lower]
    if unknown:
        raise GdlabError(
            f"gdlab verify --rule {unknown[0]!r}: no such rule; choose from {', '.join(known)}"
        )
    return {by_lower[name.lower()] for name in asked}


def results_table(rows: list[VerifyRow]) -> Table:
    criteria = "; ".join(sorted({f"{row.rule}: {row.criterion}" for row in rows if row.criterion != RULE_CRITERION}))
    table = Table(
        title="gdlab verify: scratch vs torch",
        caption=f"pass = {RULE_CRITERION} on every parameter after every step"
        + (f" ({criteria})" if criteria else ""),
    )
    table.add_column("rule", no_wrap=True)
    table.add_column("configs", justify="right")
    table.add_column("bit-exact", justify="center")
    table.add_column("max |diff|", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("result")
    for row in rows:
        table.add_row(
            row.rule,
            str(row.configurations),
            # The backward pass is judged to a tolerance, not bit for bit: "no" there is no failure.
            ("yes" if row.bit_exact else "no") if row.criterion.startswith(RULE_CRITERION) else "n/a",
            f"{row.max_difference:.3g}",
            f"{row.seconds:.1f}",
            "[green]ok[/green]" if row.passed else "[red]MISMATCH[/red]",
        )
    return table


def exit_code(rows: list[VerifyRow]) -> int:
    """0 when every row passed, 1 otherwise."""
    return 0 if all(row.passed for row in rows) else 1


def to_json(rows: list[VerifyRow]) -> dict:
    """What ``gdlab verify --json`` prints: the shared keys for the whole run (pass when every row
    passes; each row keeps its own criterion, so the whole has none), then ``rows`` (one
    `VerifyRow.to_json` per rule) and ``exit_code``."""
    failed = [row for row in rows if not row.passed]
    whole = Comparison(
        verdict=Verdict.FAIL if failed else Verdict.PASS,
        kind=Kind.BUG if failed else Kind.NONE,
        cause="; ".join(f"{row.rule}: {row.first_mismatch}" for row in failed) or None,
        evidence=f"{len(rows) - len(failed)} of {len(rows)} rules agree with their reference, "
        "each by its own criterion",
    )
    return {**whole.to_json(), "rows": [row.to_json() for row in rows], "exit_code": exit_code(rows)}


def verify(
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object (verdict, kind, cause, evidence, and one object per rule with its "
        "criterion, tolerance and measured difference).")] = False,
    rule: Annotated[list[str] | None, typer.Option(
        help="Only this rule, by its name in the table (SGD, Adam ..., backprop.MLP); repeat as needed.",
        show_default=False)] = None,
) -> None:
    """Check every scratch update rule and the scratch backward pass against torch; exit 1 on any mismatch."""
    if as_json:
        rows = run_verify(rules=rule)
        print(json.dumps(to_json(rows), indent=2))
    else:
        rows = run_verify(Console(), rules=rule)
    raise typer.Exit(exit_code(rows))
