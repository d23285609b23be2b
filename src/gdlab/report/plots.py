"""Figures of a study: per-iteration training loss, scratch-vs-torch overlays, validation curves.

Losses go on a log axis, cut at twice the largest loss of the runs that
trained, so a run that blows up (lr 0.9 reaching 1e30, then NaN) does not
flatten the others; a diverged run's curve ends in a red cross where it leaves
the chart, and its label says "diverged".
"""

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

MAX_LEGEND_ENTRIES = 12


def smooth(values: list[float], window: int) -> list[float]:
    """Trailing moving average over finite values (window 1 returns the values)."""
    smoothed, total, kept = [], 0.0, []
    for value in values:
        if not math.isfinite(value):
            break
        kept.append(value)
        total += value
        if len(kept) > window:
            total -= kept[-window - 1]
        smoothed.append(total / min(len(kept), window))
    return smoothed


def _finite_prefix(values: list[float]) -> list[float]:
    for index, value in enumerate(values):
        if not math.isfinite(value):
            return values[:index]
    return values


def _label(run_id: str, history) -> str:
    return f"{run_id} (diverged)" if history.diverged else run_id


def _finish(figure, axes_list, path: Path, legend: bool) -> Path:
    for axes in axes_list:
        axes.grid(alpha=0.3)
    if legend and axes_list[-1].get_legend_handles_labels()[0]:
        axes_list[-1].legend(fontsize="x-small", loc="upper right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _healthy_ceiling(histories: dict) -> float | None:
    """A y-axis top that shows the runs that trained: twice their largest loss, or None
    when every run diverged (then the whole range is shown)."""
    healthy = [max(h.iteration_loss) for h in histories.values() if not h.diverged and h.iteration_loss]
    return 2 * max(healthy) if healthy else None


def plot_training_loss(histories: dict, path: Path, window: int | None = None) -> Path:
    """Training loss of every iteration of every run: raw on the left, smoothed on the right.

    A diverged run's curve is cut at the top of the axis (the range of the runs
    that trained, so that a loss of 1e30 does not flatten them) and ends in a
    red cross at the top, where it left the chart.
    """
    figure, (raw_axes, smooth_axes) = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    longest = max((len(h.iteration_loss) for h in histories.values()), default=1)
    window = window or max(1, min(100, longest // 50))
    ceiling = _healthy_ceiling(histories)
    for run_id, history in histories.items():
        finite = _finite_prefix(history.iteration_loss)
        (line,) = raw_axes.plot(finite, linewidth=0.6, alpha=0.7, label=_label(run_id, history))
        smooth_axes.plot(smooth(finite, window), linewidth=1.2, color=line.get_color(), label=_label(run_id, history))
        if history.diverged and finite:
            top = min(finite[-1], ceiling) if ceiling is not None else finite[-1]
            for axes in (raw_axes, smooth_axes):
                axes.plot(len(finite) - 1, top, "x", color="red", markersize=9, clip_on=False)
    raw_axes.set_title("training loss per iteration")
    smooth_axes.set_title(f"smoothed (moving average over {window} iterations)")
    for axes in (raw_axes, smooth_axes):
        axes.set_xlabel("iteration")
        axes.set_yscale("log")
        if ceiling is not None and any(h.diverged for h in histories.values()):
            axes.set_ylim(top=ceiling)
    raw_axes.set_ylabel("loss" + (" (red x: diverged, cut at the top)" if ceiling and any(
        h.diverged for h in histories.values()) else ""))
    return _finish(figure, [raw_axes, smooth_axes], path, legend=len(histories) <= MAX_LEGEND_ENTRIES)


def plot_pair(scratch, reference, path: Path, title: str) -> Path:
    """The scratch rule's loss over torch's, and their per-iteration difference."""
    figure, (loss_axes, difference_axes) = plt.subplots(1, 2, figsize=(13, 4.4))
    loss_axes.plot(scratch.iteration_loss, linewidth=2.4, alpha=0.6, label="gdlab scratch rule")
    loss_axes.plot(reference.iteration_loss, linewidth=0.8, linestyle="--", label="torch.optim (foreach=False)")
    loss_axes.set_title(f"{title}: training loss")
    loss_axes.set_xlabel("iteration")
    loss_axes.set_ylabel("loss")
    loss_axes.set_yscale("log")
    differences = [abs(a - b) for a, b in zip(scratch.iteration_loss, reference.iteration_loss)]
    difference_axes.plot(differences, linewidth=0.8, color="black")
    difference_axes.set_title(f"|difference| (max {max(differences, default=0.0):.3g})")
    difference_axes.set_xlabel("iteration")
    if any(d > 0 for d in differences if math.isfinite(d)):
        difference_axes.set_yscale("log")
    loss_axes.legend(fontsize="small")
    return _finish(figure, [loss_axes, difference_axes], path, legend=False)


def plot_validation(histories: dict, path: Path) -> Path:
    figure, axes = plt.subplots(figsize=(7.5, 4.6))
    for run_id, history in histories.items():
        if history.epoch_val_accuracy:
            epochs = range(1, len(history.epoch_val_accuracy) + 1)
            axes.plot(epochs, history.epoch_val_accuracy, marker=".", label=_label(run_id, history))
    axes.set_title("validation accuracy per epoch")
    axes.set_xlabel("epoch")
    axes.set_ylabel("accuracy")
    return _finish(figure, [axes], path, legend=len(histories) <= MAX_LEGEND_ENTRIES)


def plot_configurations(configurations: list[dict], path: Path, selected_id: str | None) -> Path:
    """Mean validation accuracy of each configuration with its 95% interval; diverged ones marked."""
    figure, axes = plt.subplots(figsize=(8, 0.45 * len(configurations) + 1.6))
    for row, configuration in enumerate(configurations):
        figures = configuration["val_accuracy"]
        if configuration["status"] != "ok" or figures["mean"] is None:
            # Placed in axes coordinates along x: a diverged row has no accuracy to sit at.
            axes.annotate(configuration["status"], (0.02, row), xycoords=("axes fraction", "data"),
                          color="red", va="center", fontsize="small")
            continue
        low, high = figures["ci_low"], figures["ci_high"]
        error = None if low is None else [[figures["mean"] - low], [high - figures["mean"]]]
        color = "tab:green" if configuration["id"] == selected_id else "tab:blue"
        axes.errorbar(figures["mean"], row, xerr=error, fmt="o", color=color, capsize=3)
    axes.set_yticks(range(len(configurations)), [c["id"] for c in configurations], fontsize="small")
    axes.invert_yaxis()
    axes.set_xlabel("validation accuracy (mean, 95% CI over seeds); green = selected")
    return _finish(figure, [axes], path, legend=False)
