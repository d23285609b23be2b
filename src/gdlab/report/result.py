"""A study's results in a notebook: ``gdlab.load_study(DIR)``.

>>> study = gdlab.load_study("runs/quickstart-20250101-120000")
>>> study.table()                # one row per run: id, config_id, seed, ..., val_accuracy, lr, momentum ...
>>> study.configurations()       # one row per configuration: mean and 95% interval over seeds
>>> study.plot("sensitivity")    # a matplotlib Figure; kinds: see StudyResult.PLOT_KINDS
>>> study.history(run_id)        # that run's gdlab.train.History (every iteration, every epoch)
>>> study                        # in Jupyter: status, selection and the configurations table

It reads the folder when loaded; load it again to see runs finished since.
Works on an unfinished study (no selection yet).
"""

import html
from pathlib import Path

from gdlab.report import tables
from gdlab.report.document import png
from gdlab.report.figures import FIGURES, figure
from gdlab.report.folder import StudyRecords, read_study

RUN_COLUMNS = ["id", "config_id", "seed", "implementation", "status", "train_accuracy", "val_accuracy",
               "val_loss", "seconds"]


def load_study(folder: str | Path) -> "StudyResult":
    """The results of the study in ``folder`` (the ``--out`` folder of ``gdlab run``), finished or not."""
    return StudyResult(read_study(folder))


class StudyResult:
    PLOT_KINDS = tuple(FIGURES)

    def __init__(self, records: StudyRecords):
        self.records = records

    @property
    def path(self) -> Path:
        return self.records.root

    @property
    def name(self) -> str:
        return self.records.name

    @property
    def finished(self) -> bool:
        return self.records.finished

    @property
    def progress(self) -> str:
        return self.records.progress

    @property
    def selected(self) -> dict | None:
        """The configuration selected on validation with its test figures; None until the study finishes."""
        return (self.records.summary or {}).get("selected")

    @property
    def summary(self) -> dict | None:
        return self.records.summary

    def table(self):
        """One row per finished run (a pandas DataFrame): the run's figures and its hyperparameters as
        columns (``optimizer`` is the rule's name), and ``selected`` for the selected configuration's runs."""
        import pandas as pd

        selected = self.records.selected_config_id
        rows = []
        for run in self.records.runs:
            record = run.record
            row = {column: record.get(column) for column in RUN_COLUMNS}
            row.update({key: _cell(value) for key, value in record["config"].items() if key != "implementation"})
            row["selected"] = record["config_id"] == selected
            rows.append(row)
        frame = pd.DataFrame(rows)
        return frame if rows else pd.DataFrame(columns=RUN_COLUMNS)

    def configurations(self):
        """One row per configuration (a pandas DataFrame): runs, diverged runs, the mean and 95% interval
        over seeds of validation accuracy, and the hyperparameters."""
        import pandas as pd

        selected = self.records.selected_config_id
        rows = []
        for configuration in self.records.configurations():
            row = {"config_id": configuration["id"], "status": configuration["status"],
                   "n_runs": configuration["n_runs"], "n_diverged": configuration["n_diverged"]}
            for metric in ("val_accuracy", "train_accuracy", "val_loss"):
                figures = configuration[metric]
                row[metric] = figures["mean"]
                if metric == "val_accuracy":
                    row["val_accuracy_ci_low"], row["val_accuracy_ci_high"] = figures["ci_low"], figures["ci_high"]
            row["seconds"] = configuration["seconds"]
            row.update({key: _cell(value) for key, value in configuration["config"].items() if key != "implementation"})
            row["selected"] = configuration["id"] == selected
            rows.append(row)
        return pd.DataFrame(rows)

    def history(self, run_id: str):
        """The run's :class:`gdlab.train.History`: ``iteration_loss``, ``epoch_val_accuracy`` ..."""
        return self.records.run(run_id).history()

    def plot(self, kind: str = "loss"):
        """A matplotlib Figure: one of ``PLOT_KINDS`` (the report's figures). A kind that does not apply
        to this study (a heat map without a two-axis grid) raises GdlabError saying what it needs."""
        drawn = figure(self.records, kind)
        # Shown as a cell's output even where pyplot's inline backend never started (it registers
        # Figure's display only once pyplot is imported); the report draws without pyplot.
        drawn._repr_png_ = lambda: png(drawn)
        return drawn

    def __repr__(self) -> str:
        selected = self.selected
        chosen = f", selected {selected['config_id']}" if selected else ""
        return f"<gdlab study {self.name!r} at {self.path}: {self.progress}{chosen}>"

    def _repr_html_(self) -> str:
        summary = self.records.summary
        parts = [f"<h3>gdlab study <code>{html.escape(self.name)}</code></h3>",
                 f"<p>{html.escape(str(self.path))}: <strong>{html.escape(self.progress)}</strong></p>"]
        if summary is not None:
            parts += [f"<p>{html.escape(line)}</p>" for line in tables.selected_lines(summary)]
        pseudo = {"configurations": self.records.configurations(), "selected": (summary or {}).get("selected")}
        header = "".join(f"<th>{html.escape(cell)}</th>" for cell in tables.CONFIGURATION_HEADER)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
                       for row in tables.configuration_rows(pseudo))
        parts.append(f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>")
        parts.append(f"<p>plots: {', '.join(f'<code>.plot({kind!r})</code>' for kind in self.PLOT_KINDS)}; "
                     f"tables: <code>.table()</code>, <code>.configurations()</code></p>")
        return "\n".join(parts)


def _cell(value):
    """A hyperparameter as a DataFrame cell: lists (betas, hidden sizes) as tuples, so they compare and group."""
    return tuple(value) if isinstance(value, list) else value
