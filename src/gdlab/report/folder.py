"""A study folder read back as the runner left it: the analyzer's only input.

The runner's layout (``gdlab.study.records``) is the interface::

    study.toml         the study file as it was run (gives the planned runs of an unfinished study)
    runs/<id>.json     a finished run: {"record", "history" (per epoch), "identity", "complete", "version"}
    metrics/<id>.csv   every iteration of that run: iteration, epoch, loss, accuracy
    summary.json       the study's result, written last

Nothing here needs the process that trained the runs, so a report can be
rebuilt from a copied folder, while a study runs, or after it was killed.
``summary.json`` is trusted only while it describes exactly the runs on disk:
a study being resumed or redone still has its old summary, and is unfinished.
"""

import csv
import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from gdlab.errors import GdlabError
from gdlab.study.records import RECORD_VERSION

IMPLEMENTATION_ORDER = {"scratch": 0, "torch": 1}


@dataclass
class Run:
    """One finished run: its record (the summary.json entry), per-epoch history and iteration metrics."""

    record: dict
    epochs: dict  # the run's History without the per-iteration lists, as the runner saved it
    metrics_csv: Path

    @property
    def id(self) -> str:
        return self.record["id"]

    @property
    def config_id(self) -> str:
        return self.record["config_id"]

    @property
    def seed(self) -> int:
        return self.record["seed"]

    @property
    def implementation(self) -> str:
        return self.record["implementation"]

    @property
    def diverged(self) -> bool:
        return self.record["status"] == "diverged"

    @property
    def is_torch_twin(self) -> bool:
        """The torch half of a scratch/torch pair: a check of the scratch run, which stands for the
        configuration (only paired runs carry ``max_loss_difference``, as in the runner's summary)."""
        return self.implementation == "torch" and "max_loss_difference" in self.record

    @cached_property
    def iterations(self) -> dict[str, np.ndarray]:
        """Training loss and accuracy of every iteration (a diverged run's last loss is NaN or inf)."""
        try:
            with open(self.metrics_csv, newline="") as file:
                rows = list(csv.reader(file))
            if not rows or rows[0] != ["iteration", "epoch", "loss", "accuracy"]:
                raise ValueError("its header is not iteration,epoch,loss,accuracy")
            values = np.array([[float(row[2]), float(row[3])] for row in rows[1:]], dtype=float).reshape(-1, 2)
        except (OSError, ValueError, IndexError) as error:
            raise GdlabError(
                f"{self.metrics_csv}: cannot read run {self.id!r}'s metrics ({error}); the runner writes them "
                f"before the run's JSON, so the folder was changed since; gdlab run SPEC --out DIR --resume "
                f"checks every run and trains this one again"
            ) from None
        return {"loss": values[:, 0], "accuracy": values[:, 1]}

    @property
    def iteration_loss(self) -> np.ndarray:
        return self.iterations["loss"]

    def epoch_values(self, name: str) -> list[float]:
        """A per-epoch series (``val_accuracy``, ``train_loss`` ...) with NaN where the runner saved null."""
        return [math.nan if value is None else value for value in self.epochs.get(f"epoch_{name}", [])]

    def history(self):
        """The run as the :class:`gdlab.train.History` that ``fit`` returned for it."""
        from gdlab.train import History

        fields = {key: value for key, value in self.epochs.items() if key in History.__dataclass_fields__}
        return History(
            **fields,
            iteration_loss=self.iteration_loss.tolist(),
            iteration_accuracy=self.iterations["accuracy"].tolist(),
        )


@dataclass
class Planned:
    """What the study file says should be there, None where it cannot be read: run ids in order, the
    seeds, and how many runs stand for each configuration (one per seed: a pair's torch twin does not)."""

    run_ids: list[str] | None
    seeds: int | None
    runs_per_configuration: dict[str, int] = field(default_factory=dict)
    configs: dict[str, dict] = field(default_factory=dict)  # config id -> its settings, as a run records them
    why_unknown: str = ""


@dataclass
class StudyRecords:
    root: Path
    name: str
    description: str
    runs: list[Run]  # finished runs, in the study's order
    summary: dict | None  # summary.json, only when it describes exactly the runs on disk
    planned: Planned
    dataset: str | None = None
    notes: list[str] = field(default_factory=list)  # what was left out, and why

    @property
    def finished(self) -> bool:
        return self.summary is not None

    def run(self, run_id: str) -> Run:
        for run in self.runs:
            if run.id == run_id:
                return run
        known = ", ".join(run.id for run in self.runs[:5]) + (" ..." if len(self.runs) > 5 else "")
        raise GdlabError(f"{self.root} has no finished run {run_id!r}; its runs are: {known or 'none yet'}")

    @property
    def progress(self) -> str:
        """``finished: N runs`` or ``unfinished: K of N runs``."""
        if self.finished:
            return f"finished: {len(self.runs)} runs"
        if self.planned.run_ids is None:
            return (f"unfinished: {len(self.runs)} runs finished "
                    f"(the planned total is unknown: {self.planned.why_unknown})")
        return f"unfinished: {len(self.runs)} of {len(self.planned.run_ids)} runs"

    @property
    def seeds(self) -> int:
        if self.summary is not None:
            return self.summary["seeds"]
        if self.planned.seeds is not None:
            return self.planned.seeds
        return len({run.seed for run in self.runs})

    @property
    def selected_config_id(self) -> str | None:
        return ((self.summary or {}).get("selected") or {}).get("config_id")

    def configuration_runs(self) -> dict[str, list[Run]]:
        """Each configuration's runs that stand for it, in study order: with scratch/torch pairs the
        scratch runs (their torch twins are the check, as in the runner's selection)."""
        grouped: dict[str, list[Run]] = {}
        for run in self.runs:
            if not run.is_torch_twin:
                grouped.setdefault(run.config_id, []).append(run)
        return grouped

    def configurations(self) -> list[dict]:
        """The summary's configurations (mean and 95% interval over seeds); for an unfinished study
        the same figures over the seeds finished so far, with ``runs_planned`` beside ``n_runs``."""
        if self.summary is not None:
            return self.summary["configurations"]
        from gdlab.study.stats import mean_ci

        planned_per_config = self.planned.runs_per_configuration
        finished = self.configuration_runs()
        rows = []
        for config_id in dict.fromkeys([*self.planned.configs, *finished]):
            runs = finished.get(config_id, [])
            ok = [run.record for run in runs if not run.diverged]
            n_diverged = len(runs) - len(ok)
            status = "ok" if n_diverged == 0 else ("diverged" if not ok else "partly diverged")
            row = {
                "id": config_id,
                "config": runs[0].record["config"] if runs else self.planned.configs[config_id],
                "run_ids": [run.id for run in runs],
                "status": status,
                "n_runs": len(runs),
                "n_diverged": n_diverged,
                **{name: mean_ci([record[name] for record in ok]).to_dict()
                   for name in ("val_accuracy", "val_loss", "train_accuracy")},
                "seconds": sum(run.record["seconds"] for run in runs),
            }
            if not runs:
                row["status"] = "not run yet"
            if config_id in planned_per_config:
                row["runs_planned"] = planned_per_config[config_id]
            rows.append(row)
        return rows


def read_study(root: str | Path) -> StudyRecords:
    """Read a study folder written by ``gdlab run`` (finished, running, or interrupted)."""
    root = Path(root)
    if not root.is_dir():
        raise GdlabError(f"study folder {str(root)!r} not found; give the --out folder of a gdlab run")
    if not (root / "runs").is_dir() and not (root / "summary.json").is_file():
        raise GdlabError(
            f"{root} holds no study: no runs/ folder and no summary.json; "
            f"give the --out folder of a gdlab run (it has runs/, metrics/ and, once finished, summary.json)"
        )
    notes: list[str] = []
    runs = _read_runs(root, notes)
    summary = _current_summary(root, runs, notes)
    if summary is not None:
        # A finished study is what its summary says: its order, its plan (study.toml is not needed).
        order = {entry["id"]: position for position, entry in enumerate(summary["runs"])}
        runs.sort(key=lambda run: order[run.id])
        planned = Planned([entry["id"] for entry in summary["runs"]], summary.get("seeds"))
    else:
        planned = _read_plan(root)
        if planned.run_ids is not None:
            in_plan = set(planned.run_ids)
            strangers = [run.id for run in runs if run.id not in in_plan]
            if strangers:
                notes.append(f"{len(strangers)} run record(s) on disk are not in study.toml's plan and are "
                             f"left out (e.g. {strangers[0]})")
                runs = [run for run in runs if run.id in in_plan]
            order = {run_id: position for position, run_id in enumerate(planned.run_ids)}
            runs.sort(key=lambda run: order[run.id])
    spec = _spec_table(root)
    name = (summary or {}).get("experiment") or _text(spec.get("name")) or root.name
    description = (summary or {}).get("description") or _text(spec.get("description")) or ""
    data = spec.get("data") if isinstance(spec.get("data"), dict) else {}
    dataset = ((summary or {}).get("data") or {}).get("dataset") or _text(data.get("dataset"))
    return StudyRecords(root, name, description, runs, summary, planned, dataset, notes)


def _read_runs(root: Path, notes: list[str]) -> list[Run]:
    runs, unreadable = [], []
    for path in sorted((root / "runs").glob("*.json")):
        try:
            payload = json.loads(path.read_text())
            record = payload["record"]
            if payload.get("complete") is not True or payload.get("version") != RECORD_VERSION:
                raise ValueError("not marked complete")
            if record["id"] != path.stem:
                raise ValueError(f"it holds run {record['id']!r}")
            runs.append(Run(record, payload.get("history", {}), root / "metrics" / f"{path.stem}.csv"))
        except (OSError, ValueError, KeyError, TypeError):
            unreadable.append(path.name)
    if unreadable:
        notes.append(f"{len(unreadable)} unreadable run record(s) left out (a resume trains them again): "
                     + ", ".join(unreadable[:3]) + (" ..." if len(unreadable) > 3 else ""))
    # Configuration ids start with their zero-padded index: this is the study's order.
    runs.sort(key=lambda run: (run.config_id, run.seed, IMPLEMENTATION_ORDER.get(run.implementation, 2)))
    return runs


def _current_summary(root: Path, runs: list[Run], notes: list[str]) -> dict | None:
    path = root / "summary.json"
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
        entries = {entry["id"]: entry for entry in summary["runs"]}
    except (OSError, ValueError, KeyError, TypeError) as error:
        notes.append(f"summary.json unreadable ({type(error).__name__}); shown as unfinished")
        return None
    on_disk = {run.id: run.record for run in runs}
    if set(entries) != set(on_disk) or any(
        json.dumps(entries[run_id], sort_keys=True) != json.dumps(on_disk[run_id], sort_keys=True)
        for run_id in entries
    ):
        notes.append("summary.json describes other runs than those on disk (the study is being resumed "
                     "or redone): shown as unfinished until it is written again")
        return None
    return summary


def _spec_table(root: Path) -> dict:
    """study.toml as a plain table (empty when absent or unreadable): names to show, nothing validated."""
    import tomllib

    try:
        return tomllib.loads((root / "study.toml").read_text())
    except (OSError, ValueError):
        return {}


def _text(value) -> str | None:
    return value if isinstance(value, str) else None


def _read_plan(root: Path) -> Planned:
    """The runs study.toml plans, by the runner's own planning (so the ids are the runner's)."""
    spec = root / "study.toml"
    if not spec.is_file():
        return Planned(None, None, why_unknown="the folder has no study.toml")
    from gdlab.study.search import plan_runs
    from gdlab.study.spec import load_study

    try:
        study = load_study(spec)
    except GdlabError as error:
        first_line = str(error).splitlines()[0]
        return Planned(None, None, why_unknown=f"study.toml cannot be read here: {first_line}")
    plans = plan_runs(study)
    per_configuration: dict[str, int] = {}
    configs: dict[str, dict] = {}
    for plan in plans:
        if not (plan.settings.optimizer.implementation == "both" and plan.implementation == "torch"):
            per_configuration[plan.configuration.id] = per_configuration.get(plan.configuration.id, 0) + 1
            configs.setdefault(plan.configuration.id, plan.config())
    return Planned([plan.id for plan in plans], study.seeds, per_configuration, configs)
