"""The study folder on disk: one record per finished run, written so a crash never leaves half of one.

Layout of ``--out DIR``::

    study.toml            the study file as it was run
    runs/<id>.json        a finished run: config, seed, status, final figures, per-epoch history
    metrics/<id>.csv      every iteration of that run: iteration, epoch, loss, accuracy
    models/<id>.pt        its final parameters (the test set is evaluated from these, for the selected runs only)
    summary.json          the study's result (written last)

Each file is written to a temporary name and renamed into place, and the run's
JSON goes last, after its CSV and model: a run counts as finished only when
its JSON exists, parses, matches the plan, and its CSV and model are whole.
"""

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path

import torch

from gdlab.study.execute import RunOutcome
from gdlab.study.search import RunPlan
from gdlab.train import History

RECORD_VERSION = 1


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def json_safe(value):
    """NaN and infinities become null: JSON has no such numbers, and strict readers refuse them."""
    if isinstance(value, float):
        return _finite_or_none(value)
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def write_json(path: Path, payload: dict) -> None:
    write_atomically(path, (json.dumps(json_safe(payload), indent=2) + "\n").encode())


def run_record(outcome: RunOutcome) -> dict:
    """The summary.json entry of a run (contract fields first)."""
    plan, history = outcome.plan, outcome.history
    train, val = outcome.train_metrics or {}, outcome.val_metrics or {}
    record = {
        "id": plan.id,
        "config": plan.config(),
        "seed": plan.seed,
        "status": history.status,
        "train_accuracy": train.get("accuracy"),
        "val_accuracy": val.get("accuracy"),
        "val_loss": val.get("loss"),
        "seconds": history.seconds,
        "config_id": plan.configuration.id,
        "implementation": plan.implementation,
        "train_loss": train.get("loss"),
        "epochs_completed": history.epochs_completed,
        "iterations": len(history.iteration_loss),
        "diverged_at_iteration": history.diverged_at_iteration,
    }
    if outcome.max_loss_difference is not None:
        record["max_loss_difference"] = outcome.max_loss_difference
    return record


class StudyFolder:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def run_json(self, run_id: str) -> Path:
        return self.root / "runs" / f"{run_id}.json"

    def metrics_csv(self, run_id: str) -> Path:
        return self.root / "metrics" / f"{run_id}.csv"

    def model_file(self, run_id: str) -> Path:
        return self.root / "models" / f"{run_id}.pt"

    @property
    def summary_json(self) -> Path:
        return self.root / "summary.json"

    def holds_study(self) -> bool:
        return (self.root / "runs").is_dir() or self.summary_json.exists()

    def save_spec(self, text: str) -> None:
        write_atomically(self.root / "study.toml", text.encode())

    def save_run(self, outcome: RunOutcome) -> dict:
        run_id = outcome.plan.id
        history = outcome.history
        table = io.StringIO()
        writer = csv.writer(table, lineterminator="\n")
        writer.writerow(["iteration", "epoch", "loss", "accuracy"])
        rows = zip(history.iteration_epochs(), history.iteration_loss, history.iteration_accuracy)
        for iteration, (epoch, loss, accuracy) in enumerate(rows):
            writer.writerow([iteration, epoch, repr(loss), repr(accuracy)])
        write_atomically(self.metrics_csv(run_id), table.getvalue().encode())
        buffer = io.BytesIO()
        torch.save(outcome.state_dict, buffer)
        write_atomically(self.model_file(run_id), buffer.getvalue())
        record = run_record(outcome)
        history_fields = history.to_dict()
        del history_fields["iteration_loss"], history_fields["iteration_accuracy"]
        write_json(
            self.run_json(run_id),
            {"record": record, "history": history_fields, "identity": outcome.plan.identity(),
             "complete": True, "version": RECORD_VERSION},
        )
        return record

    def changed_settings(self, plan: RunPlan) -> list[str]:
        """How a saved run under ``plan``'s id was made differently from ``plan`` ("key: saved -> now"),
        empty when there is no readable saved run or it was made the same way."""
        try:
            saved = json.loads(self.run_json(plan.id).read_text())["identity"]
        except (OSError, ValueError, KeyError, TypeError):
            return []
        now = json_safe(plan.identity())
        saved = json_safe(saved)
        return [
            f"{key}: {saved.get(key)!r} -> {now.get(key)!r}"
            for key in sorted(set(saved) | set(now))
            if json.dumps(saved.get(key)) != json.dumps(now.get(key))
        ]

    def load_finished(self, plan: RunPlan) -> tuple[dict, History] | None:
        """The saved record and history of ``plan``, or None if it is missing, partial or does not match."""
        try:
            payload = json.loads(self.run_json(plan.id).read_text())
            record = payload["record"]
            if not (payload.get("complete") is True and payload.get("version") == RECORD_VERSION):
                return None
            if record["id"] != plan.id or record["seed"] != plan.seed:
                return None
            if json.dumps(payload.get("identity"), sort_keys=True) != json.dumps(
                json_safe(plan.identity()), sort_keys=True
            ):
                return None
            if json.dumps(json_safe(record["config"]), sort_keys=True) != json.dumps(
                json_safe(plan.config()), sort_keys=True
            ):
                return None
            if record["status"] not in ("ok", "diverged"):
                return None
            iterations = self._read_iterations(plan.id)
            if iterations is None or len(iterations[0]) != record["iterations"]:
                return None
            torch.load(self.model_file(plan.id), weights_only=True)
            history = History.from_dict(
                {**payload["history"], "iteration_loss": iterations[0], "iteration_accuracy": iterations[1]}
            )
            return record, history
        except (OSError, ValueError, KeyError, TypeError, RuntimeError, EOFError):
            return None

    def _read_iterations(self, run_id: str) -> tuple[list[float], list[float]] | None:
        with open(self.metrics_csv(run_id), newline="") as file:
            rows = list(csv.reader(file))
        if not rows or rows[0] != ["iteration", "epoch", "loss", "accuracy"]:
            return None
        losses, accuracies = [], []
        for expected, row in enumerate(rows[1:]):
            if len(row) != 4 or int(row[0]) != expected:
                return None
            losses.append(float(row[2]))
            accuracies.append(float(row[3]))
        return losses, accuracies

    def load_state_dict(self, run_id: str) -> dict:
        return torch.load(self.model_file(run_id), weights_only=True)
