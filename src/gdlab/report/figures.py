"""A study's figures: which ones apply to it, and what each is drawn from in its folder.

One table, ``FIGURES``, serves the report (a PNG per kind that applies) and
the notebook object (``result.plot(kind)``), so both show the same figure.
"""

from dataclasses import dataclass
from typing import Callable

from matplotlib.figure import Figure

from gdlab.errors import GdlabError
from gdlab.report import plots
from gdlab.report.folder import StudyRecords


def curves(records: StudyRecords) -> list[plots.Curves]:
    """Each configuration's runs (seeds) as one Curves, in the study's order."""
    scores = {row["id"]: row["val_accuracy"]["mean"] for row in records.configurations()}
    selected = records.selected_config_id
    return [
        plots.Curves(
            label=config_id,
            losses=[run.iteration_loss for run in runs],
            val_accuracy=[run.epoch_values("val_accuracy") for run in runs],
            diverged=[run.diverged for run in runs],
            score=scores.get(config_id),
            selected=config_id == selected,
        )
        for config_id, runs in records.configuration_runs().items()
    ]


def settings(records: StudyRecords) -> list[plots.Setting]:
    """Each configuration as a point of the hyperparameter space; planned ones not yet run as pending."""
    selected = records.selected_config_id
    points = []
    finished = records.configuration_runs()
    for config_id, runs in finished.items():
        points.append(plots.Setting(
            values=_hyperparameters(runs[0].record["config"]),
            val_accuracy=[run.record["val_accuracy"] for run in runs if not run.diverged],
            diverged=sum(run.diverged for run in runs),
            selected=config_id == selected,
        ))
    for config_id, config in records.planned.configs.items():
        if config_id not in finished and not records.finished:
            points.append(plots.Setting(values=_hyperparameters(config), val_accuracy=[], pending=True))
    return points


def log_scaled(points: list[plots.Setting]) -> frozenset[str]:
    """The hyperparameters the study's rules draw log-uniformly in a random search, as each rule
    declares them (a user's own class: lr, weight_decay, eps): on a log axis in the figures too."""
    from gdlab.optim import registry
    from gdlab.optim.resolve import CONVENTIONAL_LOG_UNIFORM

    names = set()
    for rule in {point.values.get("optimizer") for point in points}:
        try:
            names |= set(registry.get(rule).log_uniform_names)
        except GdlabError:  # a user's own rule, "file.py:Class"
            names |= CONVENTIONAL_LOG_UNIFORM
    return frozenset(names)


def _sensitivity(records: StudyRecords) -> Figure | None:
    points = settings(records)
    return plots.sensitivity(points, log_scaled(points))


def _hyperparameters(config: dict) -> dict:
    return {key: value for key, value in config.items() if key != "implementation"}


def pairs(records: StudyRecords) -> list[plots.Pair]:
    """Each paired configuration's scratch runs beside their torch twins, seed by seed."""
    twins = {(run.config_id, run.seed): run for run in records.runs if run.is_torch_twin}
    scores = {row["id"]: row["val_accuracy"]["mean"] for row in records.configurations()}
    result = []
    for config_id, runs in records.configuration_runs().items():
        matched = [(run, twins[(config_id, run.seed)]) for run in runs if (config_id, run.seed) in twins]
        if not matched:
            continue
        differences = [scratch.record.get("max_loss_difference") for scratch, _ in matched]
        result.append(plots.Pair(
            label=config_id,
            scratch=[scratch.iteration_loss for scratch, _ in matched],
            reference=[reference.iteration_loss for _, reference in matched],
            max_difference=None if None in differences else max(differences),
            score=scores.get(config_id),
            selected=config_id == records.selected_config_id,
        ))
    return result


def configuration_intervals(records: StudyRecords) -> tuple[list[plots.Interval], int]:
    """Rows of the interval chart: all configurations in study order, or the best MAX_ROWS."""
    rows = []
    for configuration in records.configurations():
        figures = configuration["val_accuracy"]
        note = ""
        if configuration["n_diverged"]:
            note = f"{configuration['status']} ({configuration['n_diverged']}/{configuration['n_runs']})"
        planned = configuration.get("runs_planned")
        if planned and 0 < configuration["n_runs"] < planned:
            note = (note + ", " if note else "") + f"{configuration['n_runs']} of {planned} seeds"
        rows.append(plots.Interval(configuration["id"], figures["mean"], figures["ci_low"], figures["ci_high"],
                                   note or configuration["status"] if figures["mean"] is None else note))
    total = len(rows)
    if total > plots.MAX_ROWS:
        selected = records.selected_config_id
        ranked = sorted(rows, key=lambda row: (row.label != selected, -(row.value if row.value is not None else -1)))
        kept = {row.label for row in ranked[: plots.MAX_ROWS]}
        rows = [row for row in rows if row.label in kept]
    return rows, total


def _level(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def ablation_panels(ablation: dict) -> list[plots.Panel]:
    effects = [
        plots.Interval(
            f"{effect['factor'].rsplit('.', 1)[-1]}: {_level(effect['first'])} - {_level(effect['second'])}",
            effect["effect"], effect["ci_low"], effect["ci_high"],
            f"p = {effect['p_value']:.2g}, {effect['n_pairs']} pairs" if effect["p_value"] is not None
            else f"{effect['n_pairs']} pairs" if effect["effect"] is not None else "no pairs to compare",
        )
        for effect in ablation["effects"]
    ]
    arms = []
    for arm in ablation["arms"]:
        label = ", ".join(f"{factor.rsplit('.', 1)[-1]}={_level(level)}" for factor, level in arm["levels"].items())
        low, high = arm.get("test_accuracy_ci") or (None, None)
        arms.append(plots.Interval(label, arm.get("test_accuracy"), low, high,
                                   "" if arm.get("test_accuracy") is not None else "every configuration diverged"))
    return [
        plots.Panel("each factor's effect on test accuracy", effects,
                    "effect on test accuracy (95% interval, paired by seed)", zero_line=True),
        plots.Panel("each arm's best configuration", arms, "test accuracy (95% interval over seeds)"),
    ]


@dataclass(frozen=True)
class FigureKind:
    file: str
    caption: str
    draw: Callable[[StudyRecords], Figure | None]  # None: the figure does not apply to this study
    applies_when: str  # said when it does not


def _configurations(records: StudyRecords) -> Figure | None:
    rows, total = configuration_intervals(records)
    return plots.configurations(rows, records.selected_config_id, total) if rows else None


def _pairs(records: StudyRecords) -> Figure | None:
    found = pairs(records)
    return plots.scratch_vs_torch(found) if found else None


def _ablation(records: StudyRecords) -> Figure | None:
    ablation = (records.summary or {}).get("ablation")
    return plots.intervals(ablation_panels(ablation)) if ablation else None


def _loss(records: StudyRecords) -> Figure | None:
    found = curves(records)
    return plots.training_loss(found, "training loss per iteration") if found else None


def _validation(records: StudyRecords) -> Figure | None:
    found = curves(records)
    return plots.validation_accuracy(found) if found else None


FIGURES: dict[str, FigureKind] = {
    "loss": FigureKind("training_loss.png", "Training loss of every iteration, smoothed: each configuration's "
                       "seeds as a mean line and a band from the lowest to the highest seed.", _loss,
                       "a study with at least one finished run"),
    "validation": FigureKind("validation_accuracy.png", "Validation accuracy after each epoch, seeds as a mean "
                             "and a band.", _validation, "a study with at least one finished run"),
    "sensitivity": FigureKind("sensitivity.png", "Validation accuracy against each numeric hyperparameter, one "
                              "line per value of the other axes; a red x at the bottom marks a diverged setting.",
                              _sensitivity,
                              "a study where a numeric hyperparameter (lr, momentum ...) varies"),
    "heatmap": FigureKind("heatmap.png", "Mean validation accuracy over the two-axis grid.",
                          lambda records: plots.heatmap(settings(records)),
                          "a grid over exactly two hyperparameters"),
    "configurations": FigureKind("configurations.png", "Each configuration's mean validation accuracy with its "
                                 "95% interval over seeds.", _configurations, "a study with a finished run"),
    "pairs": FigureKind("pairs.png", "The scratch rule's training loss under torch.optim's, one panel per "
                        "configuration, seeds together.", _pairs, 'a study with implementation = "both"'),
    "ablation": FigureKind("ablation.png", "Each ablation factor's effect on test accuracy, paired by seed, "
                           "and each arm's test accuracy, with 95% intervals.", _ablation,
                           "a finished study with an [ablation] section"),
}


def figure(records: StudyRecords, kind: str) -> Figure:
    """The figure ``kind`` of a study; a GdlabError says why when it does not apply."""
    if kind not in FIGURES:
        raise GdlabError(f"unknown plot kind {kind!r}; choose one of {', '.join(FIGURES)}")
    drawn = FIGURES[kind].draw(records)
    if drawn is None:
        raise GdlabError(f"no {kind!r} plot for {records.root}: it needs {FIGURES[kind].applies_when}")
    return drawn
