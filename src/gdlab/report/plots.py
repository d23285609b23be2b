"""Figures of studies, each returned as a matplotlib ``Figure``.

Drawn without pyplot: no global figure list to close, no backend to choose,
so the same functions serve a report written while a study runs and a
notebook cell. What every figure keeps to, so that it reads at a glance:

- one colour per configuration, the same in every figure of a study, named
  in a legend outside the axes; past ``MAX_COLOURED`` configurations the best
  on validation (and the selected one) keep their colours and the rest are
  thin grey lines, "others";
- the seeds of a configuration are one mean line with a min–max band;
- losses go on a log axis cut at twice the largest loss of the runs that
  trained, so a run that blows up (1e30, then NaN) does not flatten the
  others; a diverged seed ends in a red x where it leaves the chart;
- validation accuracy against a hyperparameter: log x where the rule draws
  it log-uniformly (``lr``, ``weight_decay``, ``eps`` ...) and for any
  positive axis spanning two decades; a diverged setting as a red x at the
  bottom of the axis.
"""

import math
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.transforms import blended_transform_factory

MAX_COLOURED = 10  # tab10: beyond this, colours stop telling configurations apart
MAX_PANELS = 12  # scratch-vs-torch panels in one figure
MAX_ROWS = 40  # configurations in the interval chart
MAX_GRID_LEVELS = 15  # per axis of a heat map
OTHERS = "0.7"
DIVERGED = "red"
LOG_AXES = frozenset({"lr", "weight_decay", "eps"})  # when the caller names none


@dataclass
class Curves:
    """The seeds of one configuration (or of one study's best configuration), drawn as one line and band."""

    label: str
    losses: list[np.ndarray]  # per seed: training loss of every iteration
    val_accuracy: list[list[float]]  # per seed: validation accuracy after each epoch (NaN: none)
    diverged: list[bool]  # per seed
    score: float | None = None  # mean validation accuracy: who keeps a colour past MAX_COLOURED
    selected: bool = False

    @property
    def legend_label(self) -> str:
        label = self.label + ("  (selected)" if self.selected else "")
        if any(self.diverged):
            label += f"  ({sum(self.diverged)}/{len(self.diverged)} diverged)"
        return label


@dataclass
class Setting:
    """One configuration as a point of the hyperparameter space."""

    values: dict  # hyperparameter -> value
    val_accuracy: list[float]  # per seed that trained
    diverged: int = 0  # seeds that diverged
    selected: bool = False
    pending: bool = False  # no seed finished yet

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.val_accuracy)) if self.val_accuracy else None


@dataclass
class Pair:
    """A configuration trained by the scratch rule and by torch.optim, seeds together."""

    label: str
    scratch: list[np.ndarray]
    reference: list[np.ndarray]
    max_difference: float | None
    score: float | None = None
    selected: bool = False


@dataclass
class Interval:
    """A labelled estimate with its 95% interval (an ablation effect, an arm's test accuracy)."""

    label: str
    value: float | None
    low: float | None = None
    high: float | None = None
    note: str = ""


def smooth(values, window: int) -> np.ndarray:
    """Trailing moving average over the finite prefix of ``values`` (window 1 returns that prefix)."""
    finite = _finite_prefix(np.asarray(values, dtype=float))
    if window <= 1 or len(finite) == 0:
        return finite
    totals = np.concatenate([[0.0], np.cumsum(finite)])
    ends = np.arange(1, len(finite) + 1)
    starts = np.maximum(0, ends - window)
    return (totals[ends] - totals[starts]) / (ends - starts)


def _finite_prefix(values: np.ndarray) -> np.ndarray:
    bad = np.flatnonzero(~np.isfinite(values))
    return values[: bad[0]] if len(bad) else values


def smoothing_window(longest: int) -> int:
    return max(1, min(100, longest // 25))


def _spread(series: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x, mean, min and max over the series at each index that any of them reaches."""
    length = max((len(values) for values in series), default=0)
    table = np.full((len(series), length), np.nan)
    for row, values in enumerate(series):
        table[row, : len(values)] = values
    reached = ~np.all(np.isnan(table), axis=0)
    x = np.flatnonzero(reached)
    table = table[:, reached]
    return x, np.nanmean(table, axis=0), np.nanmin(table, axis=0), np.nanmax(table, axis=0)


def colours(items: list) -> list[str | None]:
    """A colour per item (Curves or Pair), None for "others": all coloured up to MAX_COLOURED; past
    that, the selected one and the best by score keep colours, in their own order."""
    if len(items) <= MAX_COLOURED:
        return [f"C{index}" for index in range(len(items))]
    ranked = sorted(range(len(items)), key=lambda i: (not items[i].selected, -_score(items[i])))
    kept = sorted(ranked[: MAX_COLOURED - 1])
    palette = {index: f"C{position}" for position, index in enumerate(kept)}
    return [palette.get(index) for index in range(len(items))]


def _score(item) -> float:
    return item.score if item.score is not None and math.isfinite(item.score) else -math.inf


def _legend_outside(axes, handles: list, labels: list[str], title: str | None = None) -> None:
    if handles:
        axes.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small",
                    frameon=False, title=title, title_fontsize="small")


def _proxy_handles(items: list, item_colours: list, diverged: bool) -> tuple[list, list[str]]:
    handles, labels = [], []
    for item, colour in zip(items, item_colours):
        if colour is not None:
            handles.append(Line2D([], [], color=colour, linewidth=2.6 if item.selected else 1.6))
            labels.append(item.legend_label)
    others = item_colours.count(None)
    if others:
        handles.append(Line2D([], [], color=OTHERS, linewidth=0.8))
        labels.append(f"others ({others} configurations)")
    if diverged:
        handles.append(Line2D([], [], color=DIVERGED, marker="x", linestyle="none", markersize=8))
        labels.append("diverged (red x where it stopped)")
    return handles, labels


def loss_ceiling(curves: list[Curves]) -> float | None:
    """Twice the largest loss of the seeds that trained; None when every seed diverged."""
    healthy = [float(np.max(loss)) for c in curves for loss, bad in zip(c.losses, c.diverged)
               if not bad and len(loss)]
    return 2 * max(healthy) if healthy else None


def draw_loss(axes, curves: list[Curves], item_colours: list, window: int) -> bool:
    """Smoothed training loss, mean and min–max band over seeds; returns whether any seed diverged."""
    ceiling = loss_ceiling(curves)
    any_diverged = False
    floor = math.inf  # the lowest loss drawn for a seed that trained
    for item, colour in zip(curves, item_colours):
        smoothed = [smooth(loss, window) for loss in item.losses]
        floor = min([floor, *(float(np.min(values)) for values, bad in zip(smoothed, item.diverged)
                              if not bad and len(values) and np.min(values) > 0)])
        if any(len(values) for values in smoothed):
            x, mean, low, high = _spread(smoothed)
            if colour is None:
                axes.plot(x, mean, color=OTHERS, linewidth=0.8, zorder=1)
            else:
                axes.plot(x, mean, color=colour, linewidth=2.6 if item.selected else 1.6, zorder=3)
                if len(smoothed) > 1:
                    axes.fill_between(x, low, high, color=colour, alpha=0.2, linewidth=0, zorder=2)
        for values, bad in zip(smoothed, item.diverged):
            if bad:
                any_diverged = True
                last = values[-1] if len(values) else (ceiling or 1.0)
                top = min(last, ceiling) if ceiling is not None else last
                axes.plot(max(len(values) - 1, 0), top, "x", color=DIVERGED, markersize=9, mew=2,
                          clip_on=False, zorder=4)
    axes.set_yscale("log")
    if ceiling is not None and any_diverged:
        # Set both ends: autoscaling over a diverged run's 1e30 would leave decades of margin below.
        axes.set_ylim(floor / 1.5 if math.isfinite(floor) else None, ceiling)
    axes.set_xlabel("iteration")
    axes.set_ylabel("training loss" + (f" (moving average over {window})" if window > 1 else ""))
    axes.grid(alpha=0.3)
    return any_diverged


def draw_validation(axes, curves: list[Curves], item_colours: list) -> bool:
    """Validation accuracy after each epoch, mean and min–max band over seeds."""
    any_diverged = False
    bottom = blended_transform_factory(axes.transData, axes.transAxes)
    for item, colour in zip(curves, item_colours):
        series = [np.asarray(values, dtype=float) for values in item.val_accuracy]
        series = [values[: len(_finite_prefix(values))] for values in series]
        if any(len(values) for values in series):
            x, mean, low, high = _spread(series)
            epochs = x + 1
            if colour is None:
                axes.plot(epochs, mean, color=OTHERS, linewidth=0.8, zorder=1)
            else:
                axes.plot(epochs, mean, color=colour, marker="o", markersize=3.5,
                          linewidth=2.6 if item.selected else 1.6, zorder=3)
                if len(series) > 1:
                    axes.fill_between(epochs, low, high, color=colour, alpha=0.2, linewidth=0, zorder=2)
        for values, bad in zip(series, item.diverged):
            if bad:
                any_diverged = True
                axes.plot(len(values) + 1, 0, "x", color=DIVERGED, markersize=9, mew=2, clip_on=False,
                          transform=bottom, zorder=4)
    axes.set_xlabel("epoch")
    axes.set_ylabel("validation accuracy")
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.grid(alpha=0.3)
    return any_diverged


def training_loss(curves: list[Curves], title: str = "training loss") -> Figure:
    """Training loss per iteration: one line and band per configuration."""
    figure = Figure(figsize=(10.5, 4.8), layout="constrained")
    axes = figure.add_subplot()
    item_colours = colours(curves)
    window = smoothing_window(max((len(loss) for c in curves for loss in c.losses), default=0))
    diverged = draw_loss(axes, curves, item_colours, window)
    axes.set_title(f"{title} (mean over seeds, band: min to max)")
    _legend_outside(axes, *_proxy_handles(curves, item_colours, diverged))
    return figure


def validation_accuracy(curves: list[Curves], title: str = "validation accuracy per epoch") -> Figure:
    figure = Figure(figsize=(10.5, 4.6), layout="constrained")
    axes = figure.add_subplot()
    item_colours = colours(curves)
    diverged = draw_validation(axes, curves, item_colours)
    axes.set_title(f"{title} (mean over seeds, band: min to max)")
    _legend_outside(axes, *_proxy_handles(curves, item_colours, diverged))
    return figure


def curves_side_by_side(curves: list[Curves], title: str) -> Figure:
    """Training loss and validation accuracy in one figure with one legend (studies compared)."""
    figure = Figure(figsize=(13, 4.8), layout="constrained")
    loss_axes, val_axes = figure.subplots(1, 2)
    item_colours = colours(curves)
    window = smoothing_window(max((len(loss) for c in curves for loss in c.losses), default=0))
    diverged = draw_loss(loss_axes, curves, item_colours, window)
    diverged |= draw_validation(val_axes, curves, item_colours)
    figure.suptitle(f"{title} (mean over seeds, band: min to max)")
    _legend_outside(val_axes, *_proxy_handles(curves, item_colours, diverged))
    return figure


def scratch_vs_torch(pairs: list[Pair], total: int | None = None) -> Figure:
    """One panel per configuration: the scratch rule's loss (thick) under torch's (dashed), seeds together."""
    shown = pairs
    if len(pairs) > MAX_PANELS:
        ranked = sorted(range(len(pairs)), key=lambda i: (not pairs[i].selected, -_score(pairs[i])))
        shown = [pairs[i] for i in sorted(ranked[:MAX_PANELS])]
    columns = min(4, len(shown))
    rows = math.ceil(len(shown) / columns)
    figure = Figure(figsize=(3.4 * columns + 0.6, 2.7 * rows + 0.9), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False, sharex=True)
    window = smoothing_window(max((len(loss) for pair in shown for loss in pair.scratch), default=0))
    for axes, pair in zip(grid.flat, shown):
        for series, style in ((pair.scratch, {"color": "C0", "linewidth": 3.2, "alpha": 0.5}),
                              (pair.reference, {"color": "black", "linewidth": 1.0, "linestyle": "--"})):
            smoothed = [smooth(loss, window) for loss in series]
            if any(len(values) for values in smoothed):
                x, mean, low, high = _spread(smoothed)
                axes.plot(x, mean, **style)
                if style["color"] == "C0" and len(smoothed) > 1:
                    axes.fill_between(x, low, high, color="C0", alpha=0.15, linewidth=0)
        axes.set_yscale("log")
        axes.grid(alpha=0.3)
        difference = pair.max_difference
        if difference == 0:
            verdict, colour = "identical at every iteration", "black"
        elif difference is None:
            verdict, colour = "diverged: no difference defined", DIVERGED
        else:
            verdict, colour = f"max |Δloss| {difference:.3g}", DIVERGED
        axes.set_title(f"{pair.label}{'  (selected)' if pair.selected else ''}\n{verdict}",
                       fontsize="small", color=colour)
    for axes in list(grid.flat)[len(shown):]:
        axes.set_visible(False)
    for axes in grid[-1]:
        axes.set_xlabel("iteration")
    heading = "scratch rule vs torch.optim: training loss per iteration"
    if window > 1:
        heading += f" (moving average over {window})"
    if len(shown) < len(pairs):
        heading += f"\n{len(shown)} of {len(pairs)} configurations shown (best on validation); the table lists all"
    figure.suptitle(heading, fontsize="medium")
    figure.legend([Line2D([], [], color="C0", linewidth=3.2, alpha=0.5), Line2D([], [], color="black", linestyle="--")],
                  ["gdlab scratch rule (mean, band: min to max over seeds)", "torch.optim (mean over seeds)"],
                  loc="outside lower center", ncols=2, fontsize="small", frameon=False)
    return figure


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def varying_axes(settings: list[Setting]) -> list[str]:
    """The hyperparameters whose value differs between configurations, in the order first seen."""
    keys = list(dict.fromkeys(key for setting in settings for key in setting.values))
    return [key for key in keys if len({repr(setting.values.get(key)) for setting in settings}) > 1]


def _format(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        return "x".join(_format(item) for item in value)
    if value is None:
        return "-"
    text = str(value)
    return text.rpartition(":")[2] if ":" in text else text  # a user's file.py:Class by its class


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _log_scale(key: str, values: list[float], log_axes: frozenset[str]) -> bool:
    if any(value <= 0 for value in values):
        return False
    return _short(key) in log_axes or max(values) / min(values) >= 100


def sensitivity(settings: list[Setting], log_axes: frozenset[str] = LOG_AXES) -> Figure | None:
    """Validation accuracy against each numeric hyperparameter: one line per value of the other axes
    (mean over seeds, bars from the worst to the best seed), a diverged setting as a red x at the bottom.
    ``log_axes``: hyperparameters drawn on a log x axis. None when no numeric hyperparameter varies."""
    axes_names = varying_axes(settings)
    numeric = [key for key in axes_names
               if all(_is_number(setting.values.get(key)) for setting in settings)]
    if not numeric:
        return None
    columns = min(3, len(numeric))
    rows = math.ceil(len(numeric) / columns)
    figure = Figure(figsize=(5.4 * columns + 1.5, 4.2 * rows), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False)
    for axes, key in zip(grid.flat, numeric):
        _sensitivity_panel(axes, key, [other for other in axes_names if other != key], settings, log_axes)
    for axes in list(grid.flat)[len(numeric):]:
        axes.set_visible(False)
    figure.suptitle("validation accuracy against each hyperparameter "
                    "(mean over seeds, bars: worst to best seed, red x: diverged)", fontsize="medium")
    return figure


def _sensitivity_panel(axes, key: str, others: list[str], settings: list[Setting], log_axes: frozenset[str]) -> None:
    groups: dict[tuple, list[Setting]] = {}
    for setting in settings:
        groups.setdefault(tuple(repr(setting.values.get(other)) for other in others), []).append(setting)
    as_lines = len(groups) <= MAX_COLOURED and len(groups) < len(settings)
    if not as_lines:  # random search: every point its own group; one scatter
        groups = {("all",): settings}
    bottom = blended_transform_factory(axes.transData, axes.transAxes)
    any_diverged = False
    for index, members in enumerate(groups.values()):
        members = sorted(members, key=lambda setting: setting.values[key])
        trained = [setting for setting in members if setting.val_accuracy]
        colour = f"C{index}" if as_lines else "C0"
        if as_lines:
            label = ", ".join(f"{_short(other)}={_format(members[0].values.get(other))}" for other in others) or "all"
        else:
            label = f"{len(settings)} configurations"
        if trained:
            x = [setting.values[key] for setting in trained]
            y = [setting.mean for setting in trained]
            error = [[mean - min(s.val_accuracy) for mean, s in zip(y, trained)],
                     [max(s.val_accuracy) - mean for mean, s in zip(y, trained)]]
            axes.errorbar(x, y, yerr=error, fmt="o-" if as_lines else "o", color=colour, capsize=3,
                          markersize=5, linewidth=1.5, label=label)
        for setting in members:
            if setting.diverged:
                any_diverged = True
                axes.plot(setting.values[key], 0, "x", color=DIVERGED, markersize=10, mew=2.2, clip_on=False,
                          transform=bottom, zorder=5)
            if setting.selected and setting.val_accuracy:
                axes.plot(setting.values[key], setting.mean, marker="*", markersize=16, markerfacecolor="none",
                          markeredgecolor="black", linestyle="none", zorder=6)
    values = [setting.values[key] for setting in settings]
    if _log_scale(key, values, log_axes):
        axes.set_xscale("log")
    axes.set_xlabel(key)
    axes.set_ylabel("validation accuracy")
    axes.grid(alpha=0.3)
    handles, labels = axes.get_legend_handles_labels()
    if any(setting.selected for setting in settings):
        handles.append(Line2D([], [], marker="*", markersize=12, markerfacecolor="none", markeredgecolor="black",
                              linestyle="none"))
        labels.append("selected")
    if any_diverged:
        handles.append(Line2D([], [], color=DIVERGED, marker="x", linestyle="none", markersize=8, mew=2))
        labels.append("diverged")
    axes.legend(handles, labels, fontsize="x-small", loc="best",
                title=("other axes: " + ", ".join(_short(other) for other in others)) if as_lines and others else None,
                title_fontsize="x-small")


def _levels(values: list) -> list:
    distinct = list({repr(value): value for value in values}.values())
    if all(_is_number(value) for value in distinct):
        return sorted(distinct)
    return distinct


def heatmap(settings: list[Setting]) -> Figure | None:
    """Mean validation accuracy over a two-axis grid, a cell per configuration; None unless exactly two
    hyperparameters vary and their values form a grid."""
    axes_names = varying_axes(settings)
    if len(axes_names) != 2:
        return None
    row_key, column_key = axes_names
    row_levels = _levels([setting.values.get(row_key) for setting in settings])
    column_levels = _levels([setting.values.get(column_key) for setting in settings])
    cells = {(repr(s.values.get(row_key)), repr(s.values.get(column_key))): s for s in settings}
    if (len(cells) < len(settings) or max(len(row_levels), len(column_levels)) > MAX_GRID_LEVELS
            or len(cells) < 0.5 * len(row_levels) * len(column_levels)):
        return None
    table = np.full((len(row_levels), len(column_levels)), np.nan)
    for (r, row_value), (c, column_value) in ((a, b) for a in enumerate(row_levels) for b in enumerate(column_levels)):
        setting = cells.get((repr(row_value), repr(column_value)))
        if setting is not None and setting.mean is not None:
            table[r, c] = setting.mean
    figure = Figure(figsize=(1.5 * len(column_levels) + 3.2, 0.9 * len(row_levels) + 2.2), layout="constrained")
    axes = figure.add_subplot()
    import matplotlib

    colour_map = matplotlib.colormaps["viridis"].with_extremes(bad="0.92")
    image = axes.imshow(np.ma.masked_invalid(table), cmap=colour_map, aspect="auto")
    low, high = (np.nanmin(table), np.nanmax(table)) if np.isfinite(table).any() else (0, 1)
    for r, row_value in enumerate(row_levels):
        for c, column_value in enumerate(column_levels):
            setting = cells.get((repr(row_value), repr(column_value)))
            if setting is None or setting.pending:
                text, colour = "not run yet", "0.4"
            elif setting.mean is None:
                text, colour = "diverged", DIVERGED
            else:
                text = f"{setting.mean:.3f}" + (f"\n({setting.diverged} diverged)" if setting.diverged else "")
                colour = "white" if high == low or (setting.mean - low) / (high - low) < 0.6 else "black"
            axes.text(c, r, text, ha="center", va="center", color=colour, fontsize="small",
                      fontweight="bold" if setting is not None and setting.selected else "normal")
            if setting is not None and setting.selected:
                axes.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=3))
    axes.set_xticks(range(len(column_levels)), [_format(value) for value in column_levels])
    axes.set_yticks(range(len(row_levels)), [_format(value) for value in row_levels])
    axes.set_xlabel(column_key)
    axes.set_ylabel(row_key)
    figure.colorbar(image, ax=axes, label="mean validation accuracy")
    selected = " (boxed: selected)" if any(setting.selected for setting in settings) else ""
    axes.set_title(f"validation accuracy over the grid{selected}", fontsize="medium")
    return figure


@dataclass
class Panel:
    """A column of estimates with their intervals (an ablation's effects, its arms' test accuracies)."""

    title: str
    rows: list[Interval]
    x_label: str
    zero_line: bool = False  # for differences: which side of zero the interval lies on


def intervals(panels: list[Panel]) -> Figure:
    """Estimates as points with 95% interval bars, a panel per column side by side; an estimate
    without a value shows its note in red where the point would be."""
    height = 0.5 * max(len(panel.rows) for panel in panels) + 1.9
    figure = Figure(figsize=(6.0 * len(panels) + 1.0, height), layout="constrained")
    for axes, panel in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
        for position, row in enumerate(panel.rows):
            if row.value is None:
                axes.annotate(row.note or "no estimate", (0.02, position), xycoords=("axes fraction", "data"),
                              color=DIVERGED, va="center", fontsize="small")
                continue
            error = None if row.low is None else [[row.value - row.low], [row.high - row.value]]
            axes.errorbar(row.value, position, xerr=error, fmt="o", color="C0", capsize=4, markersize=6)
            if row.note:
                axes.annotate(row.note, (row.value, position), xytext=(0, 7), textcoords="offset points",
                              ha="center", fontsize="x-small")
        if panel.zero_line:
            axes.axvline(0.0, color="0.4", linestyle="--", linewidth=1)
        axes.set_yticks(range(len(panel.rows)), [row.label for row in panel.rows], fontsize="small")
        axes.set_ylim(len(panel.rows) - 0.5, -0.7)
        axes.set_xlabel(panel.x_label)
        axes.set_title(panel.title, fontsize="medium")
        axes.grid(alpha=0.3, axis="x")
    return figure


def configurations(rows: list[Interval], selected_label: str | None, total: int) -> Figure:
    """Each configuration's mean validation accuracy with its 95% interval; the selected one in green."""
    figure = Figure(figsize=(8.5, 0.36 * len(rows) + 1.7), layout="constrained")
    axes = figure.add_subplot()
    for position, row in enumerate(rows):
        note_colour = DIVERGED if "diverged" in row.note else "0.35"
        if row.value is None:
            axes.annotate(row.note, (0.02, position), xycoords=("axes fraction", "data"), color=note_colour,
                          va="center", fontsize="small")
            continue
        error = None if row.low is None else [[row.value - row.low], [row.high - row.value]]
        colour = "tab:green" if row.label == selected_label else "tab:blue"
        axes.errorbar(row.value, position, xerr=error, fmt="o", color=colour, capsize=3)
        if row.note:
            axes.annotate(row.note, (row.value, position), xytext=(6, 0), textcoords="offset points",
                          va="center", fontsize="x-small", color=note_colour)
    axes.set_yticks(range(len(rows)), [row.label for row in rows], fontsize="small")
    axes.set_ylim(len(rows) - 0.5, -0.5)
    axes.grid(alpha=0.3, axis="x")
    label = "validation accuracy (mean over seeds, 95% interval)"
    if selected_label:
        label += "; green: selected"
    axes.set_xlabel(label)
    if len(rows) < total:
        axes.set_title(f"{len(rows)} of {total} configurations (best on validation)", fontsize="medium")
    return figure
