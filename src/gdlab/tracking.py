"""A study's runs in the experiment trackers people already use: TensorBoard and MLflow.

``gdlab run --tensorboard DIR --mlflow URI`` opens a :class:`Tracking`, a callback that
``run_study(on_outcome=...)`` calls with each finished run right after the run is saved in the study
folder. Each tracker logs the figures the folder holds, under the same names in both:

- ``iteration/loss``, ``iteration/accuracy``: every iteration, step = iteration from 0, as in
  ``metrics/<id>.csv``;
- ``epoch/train_loss``, ``epoch/train_accuracy``, ``epoch/val_loss``, ``epoch/val_accuracy``,
  ``epoch/learning_rate``: step = epochs done (1 after the first), as in the run's History;
- ``final/train_accuracy``, ``final/val_accuracy``, ``final/train_loss``, ``final/val_loss``,
  ``final/seconds`` (and ``final/max_loss_difference`` of a scratch/torch pair): the run's
  summary.json entry, at step = epochs done (a diverged run has only its seconds);

and the run's hyperparameters (its ``config`` and ``seed``). TensorBoard keeps one run folder per gdlab
run, ``DIR/<study folder name>/<run id>``, with the hyperparameters for its HPARAMS tab; it stores
scalars as float32. MLflow keeps one run per gdlab run under a parent run per study folder (found
again on ``--resume``), in the experiment named after the study, with the run's metrics CSV as an
artifact; the parent gets summary.json and the reports when the study ends. A run trained again
(``--resume --redo-changed``) replaces what was logged for it before.

This module is imported only when one of those options is given: tensorboard and mlflow are
optional extras (``pip install 'gdlab[tensorboard]'``, ``'gdlab[mlflow]'``), and the study package
never imports them.
"""

import math
import os
import time
from pathlib import Path
from urllib.parse import urlparse

from gdlab.errors import GdlabError
from gdlab.study.execute import RunOutcome
from gdlab.study.records import StudyFolder, run_record

EPOCH_SERIES = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate")
FINAL_FIGURES = ("train_accuracy", "train_loss", "val_accuracy", "val_loss", "max_loss_difference", "seconds")
SELECTED_FIGURES = ("val_accuracy", "test_accuracy", "test_loss")


def run_series(outcome: RunOutcome) -> list[tuple[str, int, float]]:
    """Every figure of a finished run as ``(name, step, value)``, in the order it was measured."""
    history, record = outcome.history, run_record(outcome)
    series = [("iteration/loss", step, value) for step, value in enumerate(history.iteration_loss)]
    series += [("iteration/accuracy", step, value) for step, value in enumerate(history.iteration_accuracy)]
    for name in EPOCH_SERIES:
        values = getattr(history, f"epoch_{name}")
        series += [(f"epoch/{name}", epoch, value) for epoch, value in enumerate(values, start=1)]
    series += [
        (f"final/{name}", history.epochs_completed, record[name])
        for name in FINAL_FIGURES
        if record.get(name) is not None  # a diverged run has no accuracies or losses at the end
    ]
    return series


def hyperparameters(outcome: RunOutcome) -> dict:
    """What a tracker compares runs by: the run's config (as in summary.json) and its seed."""
    return {**outcome.plan.config(), "seed": outcome.plan.seed}


class TensorBoardLog:
    """One TensorBoard run folder per gdlab run: its scalars and its hyperparameters (HPARAMS tab)."""

    def __init__(self, log_dir: str | Path, study_folder: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise GdlabError(
                "--tensorboard needs the tensorboard package; install it with: pip install 'gdlab[tensorboard]'"
            ) from None
        self.SummaryWriter = SummaryWriter
        self.root = Path(log_dir) / Path(study_folder).name

    def __call__(self, outcome: RunOutcome) -> None:
        from torch.utils.tensorboard.summary import hparams

        run_dir = self.root / outcome.plan.id
        # A run trained again replaces its curves rather than drawing a second set over them.
        for old_events in run_dir.glob("events.out.tfevents.*"):
            old_events.unlink()
        series = run_series(outcome)
        with self.SummaryWriter(log_dir=str(run_dir)) as writer:
            # hparams() takes numbers and strings; a list (hidden = [100, 100]) is shown as text, and so is
            # a bool, which it would otherwise show as 0 or 1.
            shown = {
                key: value if value is None or type(value) in (int, float, str) else str(value)
                for key, value in hyperparameters(outcome).items()
            }
            _, session_start, session_end = hparams(shown, {})
            # No experiment summary: TensorBoard then builds the HPARAMS table from every run's
            # hyperparameters and last scalars, so the runs of several studies in one DIR all show.
            writer.file_writer.add_summary(session_start)
            writer.file_writer.add_summary(session_end)
            for name, step, value in series:
                writer.add_scalar(name, value, step)

    def finish(self, summary: dict | None) -> None:
        """Nothing to do: every run's folder is complete when it is written."""


class MLflowLog:
    """One MLflow run per gdlab run, nested under one parent run per study folder."""

    def __init__(self, uri: str, study_name: str, study_folder: str | Path):
        try:
            from mlflow.entities import Metric, Param
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise GdlabError(
                "--mlflow needs the mlflow package (mlflow-skinny is enough); "
                "install it with: pip install 'gdlab[mlflow]'"
            ) from None
        self.Metric, self.Param = Metric, Param
        self.folder = StudyFolder(study_folder)
        self.uri = _tracking_uri(uri)
        self.parent_id: str | None = None
        self.children: dict[str, str] = {}  # gdlab run id -> MLflow run id, under the parent
        try:
            self.client = MlflowClient(tracking_uri=self.uri)
            experiment = self.client.get_experiment_by_name(study_name)
            self.experiment_id = (
                experiment.experiment_id if experiment is not None else self.client.create_experiment(study_name)
            )
            # Found now, so a bad URI fails before training; reopened only when this study logs to
            # it, so a refused command (a folder that holds a study, without --resume) leaves it as it was.
            self.earlier_parent_id = self._earlier_parent_run()
        except Exception as error:  # mlflow raises its own, sqlalchemy's, requests' and OS errors here
            raise GdlabError(
                f"--mlflow {uri}: cannot open this tracking store ({type(error).__name__}: {error}); give a "
                "server (http://host:5000), a folder (a path, or file:///abs/path/mlruns) or a database "
                "(sqlite:///mlflow.db, which needs the full mlflow package)"
            ) from None

    def _search(self, filter_string: str) -> list:
        runs, page_token = [], None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], filter_string, max_results=1000, page_token=page_token
            )
            runs += list(page)
            page_token = page.token
            if not page_token:
                return runs

    def _earlier_parent_run(self) -> str | None:
        """The parent run an earlier ``gdlab run`` of this study folder made, if any."""
        for run in self._search("tags.`gdlab.role` = 'study'"):
            if run.data.tags.get("gdlab.study_folder") == str(self.folder.root.resolve()):
                return run.info.run_id
        return None

    def _parent(self) -> str:
        """The study's parent run, opened on first use: the earlier one running again, or a new one;
        with the gdlab runs already logged under it."""
        if self.parent_id is None:
            if self.earlier_parent_id is not None:
                self.parent_id = self.earlier_parent_id
                self.client.update_run(self.parent_id, status="RUNNING")
                self.children = {
                    run.data.tags.get("gdlab.run_id"): run.info.run_id
                    for run in self._search(f"tags.mlflow.parentRunId = '{self.parent_id}'")
                }
            else:
                tags = {"gdlab.role": "study", "gdlab.study_folder": str(self.folder.root.resolve())}
                run = self.client.create_run(self.experiment_id, run_name=self.folder.root.name, tags=tags)
                self.parent_id = run.info.run_id
        return self.parent_id

    def __call__(self, outcome: RunOutcome) -> None:
        run_id = outcome.plan.id
        parent_id = self._parent()
        if run_id in self.children:  # trained again: the new run replaces the old one
            self.client.delete_run(self.children.pop(run_id))
        tags = {
            "mlflow.parentRunId": parent_id,
            "gdlab.run_id": run_id,
            "gdlab.config_id": outcome.plan.configuration.id,
            "gdlab.status": outcome.history.status,
        }
        child = self.client.create_run(self.experiment_id, run_name=run_id, tags=tags).info.run_id
        self.children[run_id] = child
        params = [self.Param(key, str(value)) for key, value in hyperparameters(outcome).items()]
        now = int(time.time() * 1000)
        metrics = [self.Metric(name, value, now, step) for name, step, value in run_series(outcome)]
        # log_batch takes at most 100 params and 1000 metrics a call.
        for start in range(0, len(params), 100):
            self.client.log_batch(child, params=params[start:start + 100])
        for start in range(0, len(metrics), 1000):
            self.client.log_batch(child, metrics=metrics[start:start + 1000])
        self.client.log_artifact(child, str(self.folder.metrics_csv(run_id)))
        self.client.set_terminated(child, "FINISHED")

    def finish(self, summary: dict | None) -> None:
        """Close the parent run: with the study's results when it finished, as KILLED when it stopped early."""
        if summary is None:
            if self.parent_id is not None:
                self.client.set_terminated(self.parent_id, "KILLED")
            return
        parent_id = self._parent()
        selected = summary.get("selected") or {}
        now = int(time.time() * 1000)
        metrics = [
            self.Metric(f"selected/{name}", selected[name], now, 0)
            for name in SELECTED_FIGURES
            if isinstance(selected.get(name), float) and math.isfinite(selected[name])
        ]
        if metrics:
            self.client.log_batch(parent_id, metrics=metrics)
        if selected:
            self.client.set_tag(parent_id, "gdlab.selected", selected["config_id"])
        for name in ("summary.json", "report.md", "report.html"):
            if (self.folder.root / name).is_file():
                self.client.log_artifact(parent_id, str(self.folder.root / name))
        self.client.set_terminated(parent_id, "FINISHED")


def _tracking_uri(uri: str) -> str:
    """``uri`` as MLflow takes it; a plain path becomes a ``file:`` URI of its absolute path.

    MLflow 3 keeps folder stores in maintenance mode and refuses them unless
    ``MLFLOW_ALLOW_FILE_STORE`` is set; naming a folder is asking for one, so that is set here
    (unless the environment already says otherwise)."""
    scheme = urlparse(uri).scheme
    if scheme in ("", "file"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    if scheme == "":
        return Path(uri).resolve().as_uri()
    return uri


class Tracking:
    """The trackers a ``gdlab run`` was asked for, as one ``on_outcome`` callback.

    Use as a context manager around the study and call :meth:`finish` with its summary; leaving the
    block without it (an interruption, an error) closes the trackers as stopped."""

    def __init__(
        self,
        study_name: str,
        study_folder: str | Path,
        tensorboard: str | Path | None = None,
        mlflow: str | None = None,
    ):
        self.trackers: list[TensorBoardLog | MLflowLog] = []
        if tensorboard is not None:
            self.trackers.append(TensorBoardLog(tensorboard, study_folder))
        if mlflow is not None:
            self.trackers.append(MLflowLog(mlflow, study_name, study_folder))
        self.finished = False

    def __call__(self, outcome: RunOutcome) -> None:
        for tracker in self.trackers:
            tracker(outcome)

    def finish(self, summary: dict) -> None:
        for tracker in self.trackers:
            tracker.finish(summary)
        self.finished = True

    def __enter__(self) -> "Tracking":
        return self

    def __exit__(self, *exc) -> bool:
        if not self.finished:
            for tracker in self.trackers:
                tracker.finish(None)
        return False
