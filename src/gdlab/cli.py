"""The ``gdlab`` command: run a study, verify the scratch rules, check a user's code, list datasets.

A mistake in what the user gave (a study file, a path, a dataset that is not
there) is printed as one message saying what to do, with exit code 2; an
interrupted study exits 130 after saying how to resume it.
"""

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from gdlab.errors import GdlabError

app = typer.Typer(
    help="gdlab: exact update rules and backprop, and fast, honest studies of gradient descent.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

def _console() -> Console:
    # Made when a command runs, not at import, so it sizes itself to the terminal it prints to.
    return Console()

QUICKSTART = Path("experiments") / "quickstart.toml"


def _default_spec() -> Path:
    """experiments/quickstart.toml here, else the one in the source checkout gdlab runs from."""
    if QUICKSTART.is_file():
        return QUICKSTART
    checkout = Path(__file__).resolve().parents[2] / QUICKSTART
    if checkout.is_file():
        return checkout
    raise GdlabError(f"no study file given and {QUICKSTART} not found here; pass one: gdlab run path/to/study.toml")


@app.command()
def run(
    spec: Annotated[Path | None, typer.Argument(help="study file (TOML); default experiments/quickstart.toml")] = None,
    out: Annotated[Path | None, typer.Option(help="study folder; default runs/<name>-<timestamp>")] = None,
    backend: Annotated[str, typer.Option(help="auto | sequential | vectorized | ray")] = "auto",
    resume: Annotated[bool, typer.Option(help="continue the study in --out, training only unfinished runs")] = False,
    redo_changed: Annotated[bool, typer.Option(
        help="with --resume: train again the runs whose settings differ from those saved in --out")] = False,
):
    """Run a study: train every configuration and seed, select on validation, test once, write results."""
    from gdlab.report import rich_tables
    from gdlab.report.tables import selected_lines
    from gdlab.study import StudyInterrupted, load_study, run_study

    console = _console()
    study = load_study(spec or _default_spec())
    try:
        summary = run_study(study, out_dir=out, backend=backend, resume=resume, console=console, redo_changed=redo_changed)
    except StudyInterrupted as interrupted:
        console.print(f"[yellow]{escape(str(interrupted))}[/yellow]")
        raise typer.Exit(130) from None
    for table in rich_tables(summary):
        console.print(table)
    for line in selected_lines(summary):
        console.print(line)
    folder = Path(summary["out_dir"])
    console.print(f"results: {folder / 'summary.json'}, {folder / 'report.md'}, {folder / 'plots'}/")


@app.command()
def datasets():
    """Every dataset gdlab knows: where it was found, or how to get it."""
    from rich.table import Table

    import gdlab.data

    console = _console()
    table = Table(title="datasets")
    table.add_column("name", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("where / how to get it", overflow="fold")
    for status in gdlab.data.describe_datasets():
        if status.found:
            table.add_row(status.name, "[green]found[/green]", status.location)
        else:
            table.add_row(status.name, "[yellow]missing[/yellow]", status.how_to_get)
    console.print(table)


# Registered from the modules that own them; each raises typer.Exit with its exit code.
from gdlab.check.command import check  # noqa: E402
from gdlab.verify import verify  # noqa: E402

app.command(name="verify")(verify)
app.command(name="check")(check)


def main() -> None:
    try:
        app()
    except GdlabError as error:
        _console().print(f"[bold red]error:[/bold red] {escape(str(error))}", highlight=False)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
