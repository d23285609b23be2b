"""Running a study end to end: plan, train (or resume), select on validation, test once, write results.

Every finished run is saved as it finishes. Ctrl-C or SIGTERM stops the study
between writes and says how to continue; ``resume=True`` trains only the runs
whose records are missing or unreadable, and prints
``resumed: K of N runs already complete``.
"""

import contextlib
import datetime
import platform
import signal
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console

import gdlab
from gdlab.errors import GdlabError
from gdlab.study.backends import BACKENDS, plan_jobs, run_jobs
from gdlab.study.execute import RunOutcome, data_for, test_metrics
from gdlab.study.records import StudyFolder, json_safe, write_json
from gdlab.study.search import RunPlan, plan_runs
from gdlab.study.selection import ablation, compare_rules, evaluate_on_test, select_best, summarize_configurations
from gdlab.study.spec import Study, load_study
from gdlab.train import History


class StudyInterrupted(Exception):
    """Raised when Ctrl-C or SIGTERM stops a study; finished runs are on disk."""


def default_out_dir(study: Study) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{study.name}-{stamp}"


class _TerminateAsInterrupt:
    """Turn SIGTERM into KeyboardInterrupt while a study runs, so both stop it the same clean way."""

    def __enter__(self):
        self.previous = None
        try:
            self.previous = signal.signal(signal.SIGTERM, self._raise)
        except ValueError:  # not the main thread: leave signals alone
            pass
        return self

    @staticmethod
    def _raise(signum, frame):
        raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
        return False


@contextlib.contextmanager
def _signals_held():
    """Hold Ctrl-C and SIGTERM until the block is done (they are delivered right after)."""
    held = {signal.SIGINT, signal.SIGTERM}
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, held)
    except (AttributeError, ValueError, OSError):  # no signal masks here: save unprotected
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


def _run_line(done: int, total: int, record: dict) -> str:
    if record["status"] == "diverged":
        figures = f"[red]diverged[/red] at iteration {record['diverged_at_iteration']}"
    else:
        figures = f"val {record['val_accuracy']:.4f}  train {record['train_accuracy']:.4f}"
    pair = ""
    if "max_loss_difference" in record:
        pair = f"  pair max |Δloss| {record['max_loss_difference']:.3g}"
    return f"[{done:>{len(str(total))}}/{total}] {record['id']}  {figures}  {record['seconds']:.1f}s{pair}"


def run_study(
    study: Study | str | Path,
    out_dir: str | Path | None = None,
    backend: str = "auto",
    resume: bool = False,
    console: Console | None = None,
    on_outcome: Callable[[RunOutcome], None] | None = None,
    redo_changed: bool = False,
    optimizers: dict[str, type] | None = None,
) -> dict:
    """Run ``study`` (a Study, or the path of a study file) into ``out_dir`` and return its summary
    (also written to ``summary.json``). ``redo_changed``: on resume, train again the runs whose
    saved settings differ from the study's (else such a folder is refused). ``optimizers``: the
    caller's own rules by the names the study file gives them (``{"lion": Lion}``), read with the
    file; a Study already read has its rules."""
    if not isinstance(study, Study):
        study = load_study(study, optimizers=optimizers)
    elif optimizers:
        raise GdlabError("run_study: optimizers= goes with a study file's path; for a Study, pass them to load_study")
    console = console or Console()
    if backend not in BACKENDS:
        raise GdlabError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    folder = StudyFolder(out_dir or default_out_dir(study))
    if folder.holds_study() and not resume:
        raise GdlabError(
            f"{folder.root} already holds a study; add --resume to continue it, or choose another --out"
        )
    if resume and not folder.root.exists():
        console.print(f"{folder.root} does not exist yet: nothing to resume, starting the study")
    plans = plan_runs(study)
    # Load the data before anything trains, so a missing dataset fails at once.
    data_for(plans[0])
    records: dict[str, dict] = {}
    histories: dict[str, History] = {}
    if resume:
        _refuse_changed_spec(folder, plans, redo_changed)
        for plan in plans:
            finished = folder.load_finished(plan)
            if finished is not None:
                records[plan.id], histories[plan.id] = finished
        console.print(f"resumed: {len(records)} of {len(plans)} runs already complete")
    pending = _pending(plans, records)
    for plan in pending:
        records.pop(plan.id, None)
        histories.pop(plan.id, None)
    if study.source and Path(study.source).is_file():
        folder.save_spec(Path(study.source).read_text())

    backend, jobs = plan_jobs(pending, backend)
    console.print(
        f"study [bold]{study.name}[/bold]: {len(plans)} runs ({len(pending)} to train) "
        f"on backend {backend} -> {folder.root}"
    )

    def on_done(outcomes: list[RunOutcome]) -> None:
        # A job's runs are saved together: a stacked group trained together is
        # resumed together, never half from disk and half retrained.
        with _signals_held():
            saved = [(outcome, folder.save_run(outcome)) for outcome in outcomes]
        for outcome, record in saved:
            records[outcome.plan.id] = record
            histories[outcome.plan.id] = outcome.history
        for position, (outcome, record) in enumerate(saved, start=len(records) - len(saved) + 1):
            console.print(_run_line(position, len(plans), record), highlight=False, soft_wrap=True)
            if on_outcome is not None:
                on_outcome(outcome)

    try:
        with _TerminateAsInterrupt():
            run_jobs(jobs, backend, on_done)
    except KeyboardInterrupt:
        raise StudyInterrupted(
            f"interrupted: {len(records)} of {len(plans)} runs complete and saved in {folder.root}; "
            f"continue with: gdlab run {study.source or 'SPEC'} --out {folder.root} --resume"
        ) from None

    summary = summarize(study, plans, records, folder, backend)
    summary["out_dir"] = str(folder.root)
    write_json(folder.summary_json, summary)
    # Imported here: matplotlib loads only when a report is written, never in Ray workers.
    from gdlab.report import write_report

    write_report(folder.root, summary, {plan.id: histories[plan.id] for plan in plans})
    return json_safe(summary)


def _refuse_changed_spec(folder: StudyFolder, plans: list[RunPlan], redo_changed: bool) -> None:
    """A folder is one study: resuming it from a spec that would make its runs differently is refused,
    naming each difference, unless ``redo_changed`` says to train those runs again."""
    changed = {plan.id: folder.changed_settings(plan) for plan in plans}
    changed = {run_id: differences for run_id, differences in changed.items() if differences}
    if not changed or redo_changed:
        return
    differences = sorted({difference for run in changed.values() for difference in run})
    raise GdlabError(
        f"{folder.root} holds runs made from another spec ({len(changed)} of {len(plans)} runs differ):\n  "
        + "\n  ".join(differences[:20])
        + ("\n  ..." if len(differences) > 20 else "")
        + "\nchoose a new --out for this spec, or add --redo-changed to --resume to train those runs again"
    )


def _pending(plans: list[RunPlan], records: dict[str, dict]) -> list[RunPlan]:
    """Unfinished runs; both halves of a scratch/torch pair when either is unfinished."""
    unfinished_pairs = {
        (plan.configuration.id, plan.seed)
        for plan in plans
        if plan.id not in records and plan.settings.optimizer.implementation == "both"
    }
    return [
        plan
        for plan in plans
        if plan.id not in records or (plan.configuration.id, plan.seed) in unfinished_pairs
    ]


def summarize(study: Study, plans: list[RunPlan], records: dict[str, dict], folder: StudyFolder, backend: str) -> dict:
    results = summarize_configurations(plans, records)
    def test_run(plan: RunPlan) -> dict:
        return test_metrics(plan, folder.load_state_dict(plan.id))

    tested: dict[str, dict] = {}
    best = select_best(results)
    selected = None
    if best is not None:
        selected = evaluate_on_test(best, test_run)
        tested[best.configuration.id] = selected
    data = data_for(plans[0])
    summary = {
        "experiment": study.name,
        "description": study.description,
        "spec": study.source,
        "backend": backend,
        "seeds": study.seeds,
        "data": {
            "dataset": plans[0].settings.data.dataset,
            "classes": list(data.classes),
            "train_examples": len(data.train_y),
            "val_examples": len(data.val_y),
            "test_examples": len(data.test_y),
            "source": data.source,
        },
        "runs": [records[plan.id] for plan in plans],
        "configurations": [result.to_dict() for result in results],
        "selected": selected,
        "selection": "highest mean validation accuracy among configurations with no diverged run; "
        "test set evaluated for the selected configuration only"
        + (" and for each ablation arm" if study.ablation.factors else ""),
    }
    if best is None:
        summary["selected_reason"] = "every configuration diverged on at least one seed: nothing to select"
    pairs = [
        {
            "config_id": plan.configuration.id,
            "seed": plan.seed,
            "max_loss_difference": records[plan.id]["max_loss_difference"],
        }
        for plan in plans
        if plan.implementation == "scratch" and "max_loss_difference" in records[plan.id]
    ]
    if pairs:
        summary["pairs"] = pairs
    rules = compare_rules(results)
    if rules is not None:
        summary["rules"] = rules
    if study.ablation.factors:
        summary["ablation"] = ablation(study, results, tested, lambda result: evaluate_on_test(result, test_run))
    summary["environment"] = {
        "gdlab": gdlab.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    return summary
