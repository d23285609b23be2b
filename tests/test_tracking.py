"""--tensorboard and --mlflow: what a study logs, read back with each tool's own reader and held
equal to what the study folder holds (metrics CSV, run history, summary.json)."""

import csv
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from study_files import write_study
from test_cli import gdlab

from gdlab.errors import GdlabError
from gdlab.study import StudyInterrupted, run_study
from gdlab.tracking import Tracking

mlflow = pytest.importorskip("mlflow")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402  (after the skip above)


def comparable(values):
    """NaN equals NaN here: a diverged run's last loss is NaN in the CSV and in the tracker alike."""
    return [(step, "nan" if math.isnan(value) else value) for step, value in values]


def float32(value: float) -> float:
    """TensorBoard stores scalars as float32."""
    with np.errstate(over="ignore"):
        return float(np.float32(value))


def csv_losses(study: Path, run_id: str) -> list[tuple[int, float]]:
    with open(study / "metrics" / f"{run_id}.csv", newline="") as file:
        return [(int(row["iteration"]), float(row["loss"])) for row in csv.DictReader(file)]


def epoch_series(study: Path, run_id: str, name: str) -> list[tuple[int, float]]:
    history = json.loads((study / "runs" / f"{run_id}.json").read_text())["history"]
    return list(enumerate(history[f"epoch_{name}"], start=1))


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """One study of a scratch/torch pair at two learning rates, the larger one diverging, logged to both."""
    folder = tmp_path_factory.mktemp("tracked")
    spec = write_study(folder, epochs=3, implementation="both", lr="[0.05, 1000.0]")
    result = gdlab(
        "run", str(spec), "--out", str(folder / "study"),
        "--tensorboard", str(folder / "tb"), "--mlflow", (folder / "mlruns").as_uri(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((folder / "study" / "summary.json").read_text())
    assert {run["status"] for run in summary["runs"]} == {"ok", "diverged"}
    return folder, summary


@pytest.fixture
def mlflow_store(monkeypatch):
    def use(uri: str) -> "mlflow.MlflowClient":
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        return mlflow.MlflowClient(uri)

    return use


def test_tensorboard_has_one_run_folder_per_run_with_its_curves_and_hyperparameters(tracked):
    folder, summary = tracked
    study, logs = folder / "study", folder / "tb" / "study"
    assert sorted(path.name for path in logs.iterdir()) == sorted(run["id"] for run in summary["runs"])
    for record in summary["runs"]:
        events = event_accumulator.EventAccumulator(str(logs / record["id"]))
        events.Reload()
        scalars = {
            tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]
        }
        assert comparable(scalars["iteration/loss"]) == comparable(
            [(step, float32(loss)) for step, loss in csv_losses(study, record["id"])]
        )
        for name in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate"):
            expected = [(step, float32(value)) for step, value in epoch_series(study, record["id"], name)]
            assert comparable(scalars[f"epoch/{name}"]) == comparable(expected), name
        if record["status"] == "ok":
            assert scalars["final/val_accuracy"] == [(3, float32(record["val_accuracy"]))]
        else:
            assert "final/val_accuracy" not in scalars
        assert scalars["final/max_loss_difference"] == [
            (record["epochs_completed"], float32(record["max_loss_difference"]))
        ]

        start = plugin_data_pb2.HParamsPluginData.FromString(
            events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        ).session_start_info
        assert start.hparams["lr"].number_value == record["config"]["lr"]
        assert start.hparams["seed"].number_value == record["seed"]
        assert start.hparams["implementation"].string_value == record["implementation"]
        assert start.hparams["nesterov"].string_value == "False"


def test_mlflow_has_one_run_per_run_under_the_studys_parent(tracked, mlflow_store, tmp_path):
    folder, summary = tracked
    study = folder / "study"
    client = mlflow_store((folder / "mlruns").as_uri())
    runs = mlflow.search_runs(experiment_names=["tiny"], output_format="list")
    parents = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    assert [(parent.info.run_name, parent.info.status) for parent in parents] == [("study", "FINISHED")]
    parent = parents[0]
    children = {run.info.run_name: run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert sorted(children) == sorted(run["id"] for run in summary["runs"]) and len(runs) == len(children) + 1

    for record in summary["runs"]:
        child = children[record["id"]]
        assert child.data.params["lr"] == str(record["config"]["lr"])
        assert child.data.params["seed"] == str(record["seed"])
        assert child.data.params["implementation"] == record["implementation"]
        assert child.data.tags["gdlab.status"] == record["status"]

        def logged(name):
            return sorted((metric.step, metric.value) for metric in client.get_metric_history(child.info.run_id, name))

        assert comparable(logged("iteration/loss")) == comparable(csv_losses(study, record["id"]))
        assert comparable(logged("epoch/val_accuracy")) == comparable(epoch_series(study, record["id"], "val_accuracy"))
        if record["status"] == "ok":
            assert child.data.metrics["final/val_accuracy"] == record["val_accuracy"]
            assert child.data.metrics["final/train_loss"] == record["train_loss"]
        else:
            assert "final/val_accuracy" not in child.data.metrics
        artifact = client.download_artifacts(child.info.run_id, f"{record['id']}.csv", str(tmp_path))
        assert Path(artifact).read_bytes() == (study / "metrics" / f"{record['id']}.csv").read_bytes()

    selected = summary["selected"]
    assert parent.data.metrics["selected/test_accuracy"] == selected["test_accuracy"]
    assert parent.data.tags["gdlab.selected"] == selected["config_id"]
    logged_summary = client.download_artifacts(parent.info.run_id, "summary.json", str(tmp_path))
    assert json.loads(Path(logged_summary).read_text()) == summary
    assert "report.md" in {artifact.path for artifact in client.list_artifacts(parent.info.run_id)}


def test_an_interrupted_study_resumed_and_retrained_keeps_one_parent_and_one_run_per_run(tmp_path, mlflow_store):
    """Ctrl-C after the first run, --resume, --resume --redo-changed on a longer spec, then a run
    refused for want of --resume: MLflow still has one parent (stopped, then finished) and one run
    per gdlab run, TensorBoard one set of curves per run, each equal to the retrained run's CSV."""
    spec = write_study(tmp_path, epochs=1)
    study, logs, uri = tmp_path / "study", tmp_path / "tb", (tmp_path / "mlruns").as_uri()
    client = mlflow_store(uri)
    console = Console(file=io.StringIO())

    def ctrl_c_after_the_first_run(tracker):
        def on_outcome(outcome):
            tracker(outcome)
            raise KeyboardInterrupt

        return on_outcome

    with pytest.raises(StudyInterrupted):
        with Tracking("tiny", study, tensorboard=logs, mlflow=uri) as tracker:
            run_study(
                spec, out_dir=study, backend="sequential", console=console,
                on_outcome=ctrl_c_after_the_first_run(tracker),
            )
    runs = mlflow.search_runs(experiment_names=["tiny"], output_format="list")
    [parent] = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    assert parent.info.status == "KILLED" and len(runs) == 2  # the parent and the run that finished

    def resume(**options):
        with Tracking("tiny", study, tensorboard=logs, mlflow=uri) as tracker:
            tracker.finish(run_study(spec, out_dir=study, resume=True, console=console, on_outcome=tracker, **options))

    resume()
    write_study(tmp_path, epochs=2)
    resume(redo_changed=True)

    with pytest.raises(GdlabError, match="already holds a study"):  # no --resume: refused, and logs nothing
        with Tracking("tiny", study, tensorboard=logs, mlflow=uri) as tracker:
            run_study(spec, out_dir=study, console=console, on_outcome=tracker)

    runs = mlflow.search_runs(experiment_names=["tiny"], output_format="list")
    parents = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    assert [(run.info.run_id, run.info.status) for run in parents] == [(parent.info.run_id, "FINISHED")]
    children = {run.info.run_name: run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    run_ids = sorted(path.stem for path in (study / "runs").glob("*.json"))
    assert sorted(children) == run_ids and len(run_ids) == 2
    for run_id in run_ids:
        expected = csv_losses(study, run_id)
        assert len(expected) > 10  # two epochs of 480 examples in batches of 64
        history = client.get_metric_history(children[run_id].info.run_id, "iteration/loss")
        assert sorted((metric.step, metric.value) for metric in history) == expected
        assert len(list((logs / "study" / run_id).glob("events.out.tfevents.*"))) == 1
        events = event_accumulator.EventAccumulator(str(logs / "study" / run_id))
        events.Reload()
        assert [(event.step, event.value) for event in events.Scalars("iteration/loss")] == [
            (step, float32(loss)) for step, loss in expected
        ]


def test_a_tracking_uri_mlflow_cannot_open_is_refused_before_training(tmp_path):
    with pytest.raises(GdlabError) as refused:
        Tracking("tiny", tmp_path / "study", mlflow="nosuchscheme://host/x")
    message = str(refused.value)
    assert "--mlflow nosuchscheme://host/x" in message and "file:///" in message and "http://host:5000" in message


def test_a_missing_tracker_package_says_which_extra_to_install(tmp_path, monkeypatch):
    for name in [name for name in sys.modules if name.split(".")[0] == "mlflow"]:
        monkeypatch.setitem(sys.modules, name, None)  # how Python answers for a package that is not installed
    with pytest.raises(GdlabError, match=r"pip install 'gdlab\[mlflow\]'"):
        Tracking("tiny", tmp_path / "study", mlflow=str(tmp_path / "mlruns"))
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(GdlabError, match=r"pip install 'gdlab\[tensorboard\]'"):
        Tracking("tiny", tmp_path / "study", tensorboard=tmp_path / "tb")


def test_running_a_study_loads_neither_tracker():
    loaded = subprocess.run(
        [sys.executable, "-c",
         "import sys, gdlab.cli, gdlab.study.runner; "
         "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mlflow', 'tensorboard') "
         "or m in ('gdlab.tracking', 'torch.utils.tensorboard')))"],
        capture_output=True, text=True, check=True,
    )
    assert loaded.stdout.strip() == "[]"
