"""`gdlab check FILE.py:NAME`: the command-line face of `gdlab.check.check`.

NAME is a training function, an update function or a ``torch.optim.Optimizer``
subclass. Exit status (stable, for grading scripts): 0 when every step
matches the reference to rounding, 1 when the code parts from it (the step,
the parameter and the likely cause are printed), 2 when it cannot be
checked (not found, parameters gdlab cannot fill, an exception while
importing or running, code still running after ``--timeout`` seconds, code
that calls ``sys.exit()`` or raises ``KeyboardInterrupt`` itself,
hyperparameters the reference refuses), 130 when a real Ctrl-C stopped
gdlab. ``--json`` prints one JSON object instead (`gdlab.check.report`),
with the same status; nothing on a Ctrl-C.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gdlab.check.containment import DEFAULT_TIMEOUT
from gdlab.errors import GdlabError
from gdlab.usercode import rule_files

if TYPE_CHECKING:
    from gdlab.check.report import CheckReport

def rule_names() -> tuple[str, ...]:
    """The registered rules, read from the rule files' names (one module per rule, named as its rule).

    Read this way rather than from `gdlab.optim.registry`, which imports every rule and torch with
    them: `gdlab --help` should not wait for torch. A test keeps the two in step.
    """
    return tuple(sorted(path.stem for path in rule_files()))


RULE_NAMES = rule_names()

# The named options, each a hyperparameter of some rules (None: not given).
_NAMED = ("lr", "momentum", "dampening", "weight_decay", "nesterov", "betas", "eps", "amsgrad", "alpha", "centered",
          "lr_decay", "initial_accumulator_value")


def check(
    target: Annotated[str, typer.Argument(
        help="FILE.py:NAME (or package.module:NAME): a training function, an update function, or an "
             "Optimizer class. Its parameters are read by name, in any order.",
        show_default=False,
    )],
    against: Annotated[Optional[str], typer.Option(
        help=f"The rule to compare with: {', '.join(RULE_NAMES)}. Default: the one NAME names "
             "(MyAdam, rmsprop_update), else sgd.", show_default=False)] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate.", show_default=False)] = None,
    momentum: Annotated[Optional[float], typer.Option(help="Momentum (sgd, rmsprop ...).", show_default=False)] = None,
    dampening: Annotated[Optional[float], typer.Option(help="sgd: dampening.", show_default=False)] = None,
    weight_decay: Annotated[Optional[float], typer.Option(help="Weight decay.", show_default=False)] = None,
    nesterov: Annotated[Optional[bool], typer.Option(
        "--nesterov/--no-nesterov", help="sgd: Nesterov momentum.", show_default=False)] = None,
    betas: Annotated[Optional[tuple[float, float]], typer.Option(
        help="adam, adamw ...: beta1 beta2.", show_default=False)] = None,
    eps: Annotated[Optional[float], typer.Option(help="eps.", show_default=False)] = None,
    amsgrad: Annotated[Optional[bool], typer.Option(
        "--amsgrad/--no-amsgrad", help="adam, adamw: AMSGrad.", show_default=False)] = None,
    alpha: Annotated[Optional[float], typer.Option(help="rmsprop: smoothing constant.", show_default=False)] = None,
    centered: Annotated[Optional[bool], typer.Option(
        "--centered/--no-centered", help="rmsprop: centered variant.", show_default=False)] = None,
    lr_decay: Annotated[Optional[float], typer.Option(help="adagrad: learning rate decay.", show_default=False)] = None,
    initial_accumulator_value: Annotated[Optional[float], typer.Option(
        help="adagrad: initial sum of squares.", show_default=False)] = None,
    hp: Annotated[Optional[list[str]], typer.Option(
        help="NAME=VALUE for any hyperparameter of the rule, by the rule's name: --hp eps=1e-6, "
             "--hp betas=0.9,0.99, --hp nesterov=true (repeat as needed).", show_default=False)] = None,
    bind: Annotated[Optional[list[str]], typer.Option(
        help="NAME=ROLE for a parameter whose name gdlab does not know: a role (n_epochs, model, loss_fn, "
             "train_loader, val_loader, device, optimizer; for an update function loss, params, grads, state, "
             "step, hparams, x, y) or a hyperparameter (--bind w_decay=weight_decay). Repeat as needed.",
        show_default=False)] = None,
    rename: Annotated[Optional[list[str]], typer.Option(
        help="The same as --bind (its first name).", show_default=False)] = None,
    dtype: Annotated[str, typer.Option(
        help="auto (the dtype your code computes in), float32 or float64.")] = "auto",
    epochs: Annotated[int, typer.Option(help="Passes over the 10 batches (two show mistakes at epoch boundaries).")] = 2,
    seed: Annotated[int, typer.Option(help="Seed of the initialization and the batch order.")] = 0,
    timeout: Annotated[float, typer.Option(
        metavar="SECONDS",
        help="Wall-clock seconds your code may run in all, importing your file included (gdlab's own work "
             "does not count); code still running then is stopped and reported with the line it was on "
             "(exit 2). 0: no limit.")] = DEFAULT_TIMEOUT,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object (verdict, step, parameter, cause, kind, evidence ...).")] = False,
) -> None:
    """Check hand-written update code against torch.optim, step by step.

    Your code and the reference rule train the same small MLP from one
    initialization on the same batches in the same order; after every step
    the parameters are compared. Rounding-level differences pass; otherwise
    the first step and parameter where they part are named, with the likely
    cause (a bug, or a known variant).

    Exit status: 0 pass, 1 fail, 2 cannot check, 130 stopped by Ctrl-C.
    Your code runs inside gdlab's process, contained: after --timeout
    seconds it is stopped ("your code did not return within N s", with the
    line it was on); sys.exit() and a KeyboardInterrupt it raises itself are
    reported with their line, not obeyed; all three exit 2 (verdict
    cannot_check in --json). A real Ctrl-C still stops gdlab at once, also
    when your code catches KeyboardInterrupt. Out of reach: os._exit(), a
    crash inside C code, and processes or threads your code starts.
    """
    from gdlab.check.binding import parse_binds
    from gdlab.check.checker import check as run_check
    from gdlab.check.report import cannot_check_json
    from gdlab.check.rules import get_rule

    console = Console(highlight=False)
    named = {
        "lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weight_decay, "nesterov": nesterov,
        "betas": betas, "eps": eps, "amsgrad": amsgrad, "alpha": alpha, "centered": centered,
        "lr_decay": lr_decay, "initial_accumulator_value": initial_accumulator_value,
    }
    try:
        if dtype not in ("auto", "float32", "float64"):
            raise GdlabError(f"--dtype {dtype!r} is not supported; choose auto, float32 or float64")
        if timeout < 0:
            raise GdlabError(f"--timeout {timeout:g} must be a number of seconds > 0, or 0 for no limit")
        hparams: dict[str, object] = {}
        rule = get_rule(against) if against is not None else None
        for name, value in named.items():
            if value is None:
                continue
            if rule is not None and name not in rule.names():
                raise GdlabError(
                    f"--{name.replace('_', '-')} does not apply to --against {rule.name}; "
                    f"its hyperparameters are {', '.join(rule.names())}"
                )
            hparams[name] = value
        hparams.update(parse_hyperparameters(hp or []))
        binds = {**parse_binds(rename or [], option="--rename"), **parse_binds(bind or [])}
        report = run_check(target, against=against, hparams=hparams, binds=binds, epochs=epochs, dtype=dtype,
                           seed=seed, timeout=timeout or None)
    except KeyboardInterrupt:
        Console(stderr=True, highlight=False).print("stopped: interrupted (Ctrl-C)")
        raise typer.Exit(130) from None
    except GdlabError as error:
        if as_json:
            print(json.dumps(cannot_check_json(str(error)), indent=2))
        else:
            console.print(Text("CANNOT CHECK  ", style="bold yellow") + Text(str(error)))
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print_report(report, console)
    raise typer.Exit(report.exit_code)


def parse_hyperparameters(pairs: list[str]) -> dict[str, object]:
    """``["eps=1e-6", "betas=0.9,0.99", "nesterov=true"]`` -> values (the rule's own kinds are checked later)."""
    parsed: dict[str, object] = {}
    for pair in pairs:
        name, separator, text = (part.strip() for part in pair.partition("="))
        if not separator or not name.isidentifier() or not text:
            raise GdlabError(f"hp {pair!r} must read NAME=VALUE, like --hp eps=1e-6 or --hp betas=0.9,0.99")
        parsed[name] = _value(text.strip("()[] "))
    return parsed


def _value(text: str) -> object:
    if "," in text:
        return tuple(_value(part.strip()) for part in text.split(","))
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        return text


def print_report(report: CheckReport, console: Console) -> None:
    """The report with aligned, wrapping columns and the verdict in colour."""
    console.print(_grid(report.setup_rows()))
    console.print()
    console.print(Text(report.verdict(), style="bold green" if report.passed else "bold red"))
    findings = report.finding_rows()
    if findings:
        console.print(_grid(findings))


def _grid(rows: list[tuple[str, str]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column()
    for label, text in rows:
        grid.add_row(Text("  " + label), Text(text))
    return grid
