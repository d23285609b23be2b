"""`gdlab check FILE.py:FUNCTION`: the command-line face of `check_training_function`.

Exit status: 0 when every step matches torch to rounding, 1 when the
function parts from torch (the step, the parameter and the likely cause are
printed), 2 when it cannot be checked (not found, wrong signature, an
exception while importing or training, hyperparameters it cannot receive).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gdlab.errors import GdlabError

if TYPE_CHECKING:
    from gdlab.check.report import CheckReport

# Spelled out rather than read from gdlab.check.rules, which imports torch:
# `gdlab --help` should not wait for torch. A test keeps the two in step.
RULE_NAMES = ("sgd", "adam", "adamw", "rmsprop", "adagrad")

# Options that belong to some rules only, with the value that means "not given".
_RULE_OPTIONS = {
    "momentum": 0.0,
    "dampening": 0.0,
    "nesterov": False,
    "betas": None,
    "eps": None,
    "amsgrad": False,
    "alpha": None,
    "centered": False,
    "lr_decay": 0.0,
    "initial_accumulator_value": 0.0,
}


def check(
    target: Annotated[str, typer.Argument(
        help="FILE.py:FUNCTION, a training function f(n_epochs, model, loss_fn, train_loader, **hyperparameters) "
             "that updates model in place.",
        show_default=False,
    )],
    against: Annotated[str, typer.Option(help=f"The torch.optim rule to compare with: {', '.join(RULE_NAMES)}.")] = "sgd",
    lr: Annotated[Optional[float], typer.Option(help="Learning rate (default: the rule's; sgd 0.01).")] = None,
    momentum: Annotated[float, typer.Option(help="sgd, rmsprop: momentum.")] = 0.0,
    dampening: Annotated[float, typer.Option(help="sgd: dampening of the momentum.")] = 0.0,
    weight_decay: Annotated[Optional[float], typer.Option(
        help="Weight decay (default: the rule's; 0, adamw 0.01).", show_default=False)] = None,
    nesterov: Annotated[bool, typer.Option(help="sgd: Nesterov momentum.")] = False,
    betas: Annotated[Optional[tuple[float, float]], typer.Option(
        help="adam, adamw: beta1 beta2 (default: 0.9 0.999).", show_default=False)] = None,
    eps: Annotated[Optional[float], typer.Option(
        help="adam, adamw, rmsprop, adagrad: eps (default: the rule's).", show_default=False)] = None,
    amsgrad: Annotated[bool, typer.Option(help="adam, adamw: AMSGrad.")] = False,
    alpha: Annotated[Optional[float], typer.Option(
        help="rmsprop: smoothing constant (default: 0.99).", show_default=False)] = None,
    centered: Annotated[bool, typer.Option(help="rmsprop: centered variant.")] = False,
    lr_decay: Annotated[float, typer.Option(help="adagrad: learning rate decay.")] = 0.0,
    initial_accumulator_value: Annotated[float, typer.Option(help="adagrad: initial sum of squares.")] = 0.0,
    epochs: Annotated[int, typer.Option(help="n_epochs to pass (two show mistakes at epoch boundaries).")] = 2,
    rename: Annotated[Optional[list[str]], typer.Option(
        help="YOUR_NAME=GDLAB_NAME for a hyperparameter your function calls differently, "
             "e.g. --rename w_decay=weight_decay (repeat as needed).",
        show_default=False,
    )] = None,
    dtype: Annotated[str, typer.Option(help="float32 or float64 (float64 sees far smaller differences).")] = "float32",
    seed: Annotated[int, typer.Option(help="Seed of the initialization and the batch order.")] = 0,
) -> None:
    """Check a hand-written training function against torch.optim, step by step.

    Your function and torch's rule train the same small MLP from one
    initialization on the same batches in the same order; after every step
    the parameters are compared. Rounding-level differences pass; otherwise
    the first step and parameter where they part are named, with the likely
    cause. Exit 0 pass, 1 fail, 2 cannot check.
    """
    from gdlab.check.binding import parse_renames
    from gdlab.check.checker import DTYPES, check_training_function
    from gdlab.check.loading import load_function
    from gdlab.check.rules import get_rule

    console = Console(highlight=False)
    given = {
        "momentum": momentum, "dampening": dampening, "nesterov": nesterov, "betas": betas, "eps": eps,
        "amsgrad": amsgrad, "alpha": alpha, "centered": centered, "lr_decay": lr_decay,
        "initial_accumulator_value": initial_accumulator_value,
    }
    try:
        rule = get_rule(against)
        hparams: dict[str, object] = {}
        if lr is not None:
            hparams["lr"] = lr
        if weight_decay is not None:
            hparams["weight_decay"] = weight_decay
        for name, value in given.items():
            if value == _RULE_OPTIONS[name]:
                continue
            if name not in rule.names():
                raise GdlabError(
                    f"--{name.replace('_', '-')} does not apply to --against {rule.name}; "
                    f"its hyperparameters are {', '.join(rule.names())}"
                )
            hparams[name] = value
        if dtype not in DTYPES:
            raise GdlabError(f"--dtype {dtype!r} is not supported; choose {' or '.join(DTYPES)}")
        report = check_training_function(
            load_function(target),
            against=rule.name,
            hparams=hparams,
            renames=parse_renames(rename or []),
            epochs=epochs,
            dtype=dtype,
            seed=seed,
        )
    except GdlabError as error:
        console.print(Text("CANNOT CHECK  ", style="bold yellow") + Text(str(error)))
        raise typer.Exit(2) from None
    print_report(report, console)
    raise typer.Exit(report.exit_code)


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
