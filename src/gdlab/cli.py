"""The ``gdlab`` command: run a study, verify the scratch rules, check a user's code, list datasets.

A mistake in what the user gave (a study file, a path, a dataset that is not
there) is printed as one message saying what to do, with exit code 2; an
interrupted study exits 130 after saying how to resume it.
"""

import contextlib
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
    max_runs: Annotated[int, typer.Option(
        help="refuse a study that plans more runs than this, before anything trains")] = 10_000,
    tensorboard: Annotated[Path | None, typer.Option(
        help="also log every run (loss per iteration, metrics per epoch, hyperparameters) to this TensorBoard "
        "folder")] = None,
    mlflow: Annotated[str | None, typer.Option(
        help="also log every run to this MLflow tracking URI (server URL, folder, sqlite:///file.db), "
        "under a parent run per study")] = None,
):
    """Run a study: train every configuration and seed, select on validation, test once, write results."""
    from gdlab.report import LiveReport, rich_tables
    from gdlab.report.tables import selected_lines
    from gdlab.study import StudyInterrupted, load_study, run_study

    console = _console()
    study = load_study(spec or _default_spec())
    tracking = contextlib.nullcontext()
    if tensorboard is not None or mlflow is not None:
        from gdlab.study import default_out_dir
        from gdlab.tracking import Tracking  # only when asked: tensorboard and mlflow are optional extras

        out = out or default_out_dir(study)
        tracking = Tracking(study.name, out, tensorboard=tensorboard, mlflow=mlflow)
    try:
        with tracking as tracker:
            summary = run_study(
                study, out_dir=out, backend=backend, resume=resume, console=console, redo_changed=redo_changed,
                on_outcome=tracker, max_runs=max_runs, on_saved=LiveReport(console),
            )
            if tracker is not None:
                tracker.finish(summary)
    except StudyInterrupted as interrupted:
        console.print(f"[yellow]{escape(str(interrupted))}[/yellow]")
        raise typer.Exit(130) from None
    for table in rich_tables(summary):
        console.print(table)
    for line in selected_lines(summary):
        console.print(line)
    folder = Path(summary["out_dir"])
    console.print(f"results in {folder}/ (open report.html)", highlight=False)


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


@app.command()
def report(
    folder: Annotated[Path, typer.Argument(help="a study folder (the --out of gdlab run), finished or not")],
):
    """Rebuild report.md, report.html and plots/ from a study folder alone (also while it runs)."""
    from gdlab.report import load_study, write_report

    console = _console()
    result = load_study(folder)
    path = write_report(result.records)
    console.print(f"{result.name}: {result.progress}", highlight=False)
    if result.selected:
        from gdlab.report.tables import selected_lines

        for line in selected_lines(result.summary):
            console.print(line, highlight=False)
    console.print(f"wrote {path.parent / 'report.html'}, {path}, {path.parent / 'plots'}/", highlight=False)


@app.command()
def compare(
    folders: Annotated[list[Path], typer.Argument(help="two or more study folders")],
    out: Annotated[Path | None, typer.Option(
        help="also write compare.md, compare.html and the curves of each selected configuration here")] = None,
):
    """Studies side by side: each one's configuration selected on validation, its test accuracy and
    interval, and which differences from the best are significant (Welch's t-test over seeds)."""
    from rich.table import Table

    from gdlab.report.compare import DIFFERENCE_HEADER, STUDY_HEADER, compare_studies, write_comparison

    console = _console()
    comparison = compare_studies(folders)
    for title, header, rows in (("studies compared", STUDY_HEADER, comparison.table_rows()),
                                ("each study against the best, Welch's t-test on per-seed test accuracy",
                                 DIFFERENCE_HEADER, comparison.difference_rows())):
        if rows:
            table = Table(title=title)
            for column in header:
                table.add_column(column)
            for row in rows:
                table.add_row(*row)
            console.print(table)
    if out is not None:
        path = write_comparison(comparison, out)
        console.print(f"wrote {path.with_suffix('.html')}, {path}", highlight=False)
    else:
        console.print("add --out DIR for compare.html / compare.md with the loss curves of each selected configuration")


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
    except OSError as error:  # disk full, read-only or forbidden path outside a study's own handling: one line
        where = f"{error.filename}: " if error.filename else ""
        message = where + (error.strerror or str(error))
        _console().print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
