"""Running a study end to end: plan, train (or resume), select on validation, test once, write results.

Every finished run is saved as it finishes. Ctrl-C or SIGTERM stops the study
between writes and says how to continue; ``resume=True`` trains only the runs
whose records are missing or unreadable (saying which, and why), and prints
``resumed: K of N runs already complete``. One process writes a study folder
at a time (``study.lock``); a folder made from another spec is refused on
resume; a study over ``max_runs`` runs is refused before anything loads; an
I/O failure (disk full, read-only folder) is one GdlabError saying how to
continue.
"""

import contextlib
import datetime
import errno
import math
import platform
import signal
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console

import gdlab
from gdlab.errors import GdlabError, StudyStopped
from gdlab.study.backends import BACKENDS, plan_jobs, run_jobs
from gdlab.study.execute import RunOutcome, data_for, test_metrics
from gdlab.study.progress import StudyProgress
from gdlab.study.problem import build_model
from gdlab.study.records import LOCK_NAME, StudyFolder, UntrustedRun, json_safe, write_json
from gdlab.study.search import RunPlan, plan_runs
from gdlab.study.selection import ablation, compare_rules, evaluate_on_test, select_best, summarize_configurations
from gdlab.study.spec import Study, load_study, qualify_key
from gdlab.train import History


# Past this many runs a study is most likely a mistake (a 1000 x 1000 grid); --max-runs raises it.
MAX_RUNS = 10_000
# At most this many "redo" lines on resume; the rest are counted.
REDO_LINES = 10


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
    max_runs: int = MAX_RUNS,
    on_saved: Callable[[Path, bool], None] | None = None,
) -> dict:
    """Run ``study`` (a Study, or the path of a study file) into ``out_dir`` and return its summary
    (also written to ``summary.json``). ``redo_changed``: on resume, train again the runs whose
    saved settings differ from the study's (else such a folder is refused). ``optimizers``: the
    caller's own rules by the names the study file gives them (``{"lion": Lion}``), read with the
    file; a Study already read has its rules. ``max_runs``: a study planning more runs is refused.
    ``on_saved(folder, finished)``: called after each job's runs are saved (``finished`` False) and
    after summary.json (True); the CLI passes its live report there, which rebuilds
    the report from the folder (the study never imports the report)."""
    if not isinstance(study, Study):
        study = load_study(study, optimizers=optimizers)
    elif optimizers:
        raise GdlabError("run_study: optimizers= goes with a study file's path; for a Study, pass them to load_study")
    console = console or Console()
    if backend not in BACKENDS:
        raise GdlabError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    _refuse_unbounded(study, max_runs)
    folder = StudyFolder(out_dir or default_out_dir(study))
    plans = plan_runs(study)
    created = not folder.root.exists()
    if resume and created:
        console.print(f"{folder.root} does not exist yet: nothing to resume, starting the study")
    records: dict[str, dict] = {}
    histories: dict[str, History] = {}
    try:
        with _TerminateAsInterrupt(), folder.lock() as stale:
            if stale is not None:
                console.print(
                    f"took over {folder.root / LOCK_NAME} from pid {stale.get('pid')} on {stale.get('host')}, "
                    f"which stopped without releasing it"
                )
            records, histories = _open_folder(study, folder, plans, resume, redo_changed, console)
            summary = _train_and_summarize(study, folder, plans, backend, records, histories, console, on_outcome,
                                           on_saved)
    except KeyboardInterrupt:
        raise StudyInterrupted(
            f"interrupted: {len(records)} of {len(plans)} runs complete and saved in {folder.root}; "
            f"continue with: gdlab run {study.source or 'SPEC'} --out {folder.root} --resume"
        ) from None
    except StudyStopped as stopped:
        raise GdlabError(
            f"the study stopped: {stopped.reason}; {len(records)} of {len(plans)} runs complete and saved in "
            f"{folder.root}; continue with: gdlab run {study.source or 'SPEC'} --out {folder.root} --resume "
            f"(add --backend sequential to train the rest on this machine)"
        ) from None
    except OSError as error:
        raise GdlabError(_io_failure(error, study, folder)) from None
    finally:
        if created:  # a study that failed before writing anything leaves no empty folder behind
            with contextlib.suppress(OSError):
                folder.root.rmdir()
    return json_safe(summary)


def _open_folder(
    study: Study, folder: StudyFolder, plans: list[RunPlan], resume: bool, redo_changed: bool, console: Console
) -> tuple[dict[str, dict], dict[str, History]]:
    """The folder made ready for ``study`` (with its lock held), and the runs already finished
    there, each of their files verified; a run that cannot be trusted is named with the reason."""
    if folder.holds_study() and not resume:
        raise GdlabError(
            f"{folder.root} already holds a study; add --resume to continue it, or choose another --out"
        )
    removed = folder.remove_stray_temporaries()
    if removed:
        console.print(f"removed {removed} temporary file(s) left in {folder.root} by an interrupted write")
    spec_changed = resume and _refuse_changed_spec(folder, study, plans, redo_changed)
    # Load the data before anything trains, so a missing dataset fails at once.
    data_for(plans[0])
    records: dict[str, dict] = {}
    histories: dict[str, History] = {}
    if resume:
        planned = {plan.id for plan in plans}
        if spec_changed:  # --redo-changed: the folder keeps only runs of this spec
            for run_id in set(folder.saved_run_ids()) - planned:
                folder.remove_run(run_id)
        redo = []
        shapes: dict[tuple[str, str], dict[str, tuple]] = {}
        for plan in plans:
            try:
                finished = folder.verify_run(plan, lambda plan: _parameter_shapes(plan, shapes))
            except UntrustedRun as why:
                redo.append(f"redo {plan.id}: {why}")
                continue
            if finished is not None:
                records[plan.id], histories[plan.id] = finished
        console.print(f"resumed: {len(records)} of {len(plans)} runs already complete")
        for line in redo[:REDO_LINES]:
            console.print(line, highlight=False, markup=False, soft_wrap=True)
        if len(redo) > REDO_LINES:
            console.print(f"... and {len(redo) - REDO_LINES} more runs to redo")
    # Written first for a new folder, and again only when --redo-changed makes the folder this
    # spec's: a folder's study.toml and identity.json are never overwritten by another spec.
    if spec_changed or not folder.identity_json.exists() or not folder.spec_file.exists():
        folder.save_identity(study)
        if study.source and Path(study.source).is_file():
            folder.save_spec(Path(study.source).read_bytes())
    return records, histories


def _train_and_summarize(
    study: Study,
    folder: StudyFolder,
    plans: list[RunPlan],
    backend: str,
    records: dict[str, dict],
    histories: dict[str, History],
    console: Console,
    on_outcome: Callable[[RunOutcome], None] | None,
    on_saved: Callable[[Path, bool], None] | None = None,
) -> dict:
    pending = _pending(plans, records)
    for plan in pending:
        records.pop(plan.id, None)
        histories.pop(plan.id, None)

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
            progress.run_finished(outcome.plan.id, _run_line(position, len(plans), record))
            if on_outcome is not None:
                on_outcome(outcome)
        if on_saved is not None:
            on_saved(folder.root, False)

    progress = StudyProgress(console, runs=len(plans), runs_done=len(records))
    with progress:
        run_jobs(jobs, backend, on_done, on_epoch=progress.epoch_finished)

    summary = summarize(study, plans, records, folder, backend)
    summary["out_dir"] = str(folder.root)
    write_json(folder.summary_json, summary)
    if on_saved is not None:
        on_saved(folder.root, True)
    return summary


def planned_run_count(study: Study) -> int:
    """How many runs ``plan_runs(study)`` plans, counted without planning them (a huge grid
    would take minutes and gigabytes to plan before it could be refused)."""
    axes = dict(study.axes)
    implementations = axes.pop("optimizer.implementation", None)
    grid = math.prod(len(values) for values in axes.values())

    def runs_per_configuration(implementation: str) -> int:
        return study.seeds * (2 if implementation == "both" else 1)

    def runs_per_point(implementation: str) -> int:
        if implementations is not None:  # the grid's value wins over an entry's
            return sum(runs_per_configuration(value) for value in implementations)
        return runs_per_configuration(implementation)

    base = study.base.optimizer.implementation
    if study.search.kind == "list":
        return grid * sum(
            runs_per_point(next((value for key, value in entry.items()
                                 if qualify_key(key) == "optimizer.implementation"), base))
            for entry in study.search.configs
        )
    points = grid * (study.search.trials if study.search.kind == "random" else 1)
    return points * runs_per_point(base)


def _refuse_unbounded(study: Study, max_runs: int) -> None:
    count = planned_run_count(study)
    if count > max_runs:
        axes = " x ".join(f"{len(values)} {key}" for key, values in study.axes.items()) or "no grid"
        raise GdlabError(
            f"{study.source or study.name} plans {count:,} runs ({axes}; {study.seeds} seed(s)), more than "
            f"the limit of {max_runs:,}: narrow the grid, or raise the limit with "
            f"gdlab run --max-runs {count} (run_study(..., max_runs={count}))"
        )


def _parameter_shapes(plan: RunPlan, known: dict[tuple[str, str], dict[str, tuple]]) -> dict[str, tuple]:
    """The names and shapes of the run's model parameters, built once per model and data setting
    on the meta device (no memory, no initialization)."""
    key = (plan.settings.model.model_dump_json(), plan.settings.data.model_dump_json())
    if key not in known:
        data = data_for(plan)
        with torch.device("meta"):
            model = build_model(plan.settings.model, data.input_shape, data.num_classes)
        known[key] = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    return known[key]


def _io_failure(error: OSError, study: Study, folder: StudyFolder) -> str:
    """An OSError as one line: where, what, and how to go on; the runs saved so far stay valid."""
    code = errno.errorcode.get(error.errno or 0)
    what = f"{error.strerror or error}" + (f" ({code})" if code else "")
    fix = {
        errno.ENOSPC: "free some space",
        errno.EDQUOT: "free some space",
        errno.EROFS: "the file system is read-only: make it writable or choose another --out",
        errno.EACCES: "you may not write there: fix its permissions or choose another --out",
        errno.EPERM: "you may not write there: fix its permissions or choose another --out",
    }.get(error.errno, "fix that")
    return (
        f"{error.filename or folder.root}: {what}. The runs finished so far stay saved in {folder.root}; "
        f"{fix}, then continue with: gdlab run {study.source or 'SPEC'} --out {folder.root} --resume"
    )


def _refuse_changed_spec(folder: StudyFolder, study: Study, plans: list[RunPlan], redo_changed: bool) -> bool:
    """A folder is one study: resuming it from a spec that would make its runs differently (or other
    runs) is refused, naming each difference, unless ``redo_changed`` says to keep only the runs that
    still match. Whether the folder's spec differs from ``study``."""
    differences = set(folder.changed_study(study))
    changed_runs = 0
    for plan in plans:
        run_differences = folder.changed_settings(plan)
        differences.update(run_differences)
        changed_runs += bool(run_differences)
    foreign = sorted(set(folder.saved_run_ids()) - {plan.id for plan in plans})
    if not (differences or foreign):
        return False
    if redo_changed:
        return True
    notes = []
    if changed_runs:
        notes.append(f"{changed_runs} of {len(plans)} runs were trained with other settings")
    if foreign:
        notes.append(f"{len(foreign)} saved runs are not in this spec ({', '.join(foreign[:3])}"
                     + (", ..." if len(foreign) > 3 else "") + ")")
    lines = sorted(differences)
    raise GdlabError(
        f"{folder.root} holds a study made from another spec:\n  "
        + "\n  ".join(lines[:20] + (["..."] if len(lines) > 20 else []) + [f"({'; '.join(notes)})"] * bool(notes))
        + "\nchoose a new --out for this spec, or add --redo-changed to --resume to keep only the runs "
        "whose settings still match and train the others"
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
