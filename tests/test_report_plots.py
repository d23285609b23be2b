"""Each figure kind read back through matplotlib's objects: lines, bands, legend entries, markers.

The inputs are made here (curves of known shape), so each count below is the
one a reader should see: one line and one band per configuration, a legend
that names them, a red x per diverged seed or setting.
"""

import math

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.container import ErrorbarContainer
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle

from gdlab.report import plots


def loss_curve(start: float, iterations: int, seed: int, diverge_at: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = start * np.exp(-np.arange(iterations) / 60) * (1 + 0.1 * rng.random(iterations))
    if diverge_at is not None:
        values = values[: diverge_at + 1].copy()
        values[-2] = 1e30
        values[-1] = math.nan
    return values


def configuration(label: str, seeds: int = 3, diverge: int = 0, score: float | None = 0.9, selected=False):
    losses = [loss_curve(2.0, 200, seed, diverge_at=20 + seed if seed < diverge else None) for seed in range(seeds)]
    val = [[0.5 + 0.1 * epoch + 0.01 * seed for epoch in range(4 if seed >= diverge else 0)] for seed in range(seeds)]
    return plots.Curves(label, losses, val, [seed < diverge for seed in range(seeds)], score, selected)


def lines(axes):
    """Data lines (not the marker-only lines that mark divergence)."""
    return [line for line in axes.get_lines() if line.get_linestyle() not in ("None", "none", " ", "")]


def red_crosses(axes):
    return [line for line in axes.get_lines() if line.get_marker() == "x" and line.get_color() == plots.DIVERGED]


def bands(axes):
    return [collection for collection in axes.collections if isinstance(collection, PolyCollection)]


def legend_texts(axes):
    return [text.get_text() for text in axes.get_legend().get_texts()]


def test_smooth_is_a_trailing_mean_that_stops_at_the_first_non_finite_value():
    assert plots.smooth([1.0, 3.0, 5.0, 7.0, math.inf, 1.0], 2).tolist() == [1.0, 2.0, 4.0, 6.0]
    assert plots.smooth([2.0, math.nan], 5).tolist() == [2.0]
    assert plots.smooth([1.0, 2.0], 1).tolist() == [1.0, 2.0]


def test_training_loss_one_line_and_band_per_configuration_named_in_the_legend():
    curves = [configuration("00_lr=0.01", score=0.8), configuration("01_lr=0.1", score=0.9, selected=True),
              configuration("02_lr=1", score=0.7)]
    axes = plots.training_loss(curves).axes[0]
    assert len(lines(axes)) == 3 and len(bands(axes)) == 3
    assert legend_texts(axes) == ["00_lr=0.01", "01_lr=0.1  (selected)", "02_lr=1"]
    assert len({line.get_color() for line in lines(axes)}) == 3  # one colour per configuration
    assert axes.get_yscale() == "log"
    # Each band spans the seeds: below the mean somewhere and above it somewhere.
    mean = lines(axes)[0].get_ydata()
    low, high = bands(axes)[0].get_paths()[0].vertices[:, 1].min(), bands(axes)[0].get_paths()[0].vertices[:, 1].max()
    assert low < mean.min() and high > mean.max() * 0.99


def test_a_diverged_seed_ends_in_a_red_cross_and_does_not_flatten_the_others():
    curves = [configuration("00_lr=0.1", score=0.9), configuration("01_lr=1e6", diverge=2, score=0.5)]
    axes = plots.training_loss(curves).axes[0]
    assert len(red_crosses(axes)) == 2
    assert "01_lr=1e6  (2/3 diverged)" in legend_texts(axes)
    assert legend_texts(axes)[-1].startswith("diverged")
    healthy_top = max(float(np.max(loss)) for c in curves for loss, bad in zip(c.losses, c.diverged) if not bad)
    assert axes.get_ylim()[1] == pytest.approx(2 * healthy_top)  # cut at twice the healthy range, not 1e30


def test_many_configurations_keep_the_best_in_colour_and_the_rest_as_grey_others():
    curves = [configuration(f"{index:03d}", seeds=2, score=index / 200) for index in range(100)]
    curves[3].selected = True
    axes = plots.training_loss(curves).axes[0]
    texts = legend_texts(axes)
    assert len(texts) == plots.MAX_COLOURED  # 9 coloured + "others"
    assert texts[-1] == "others (91 configurations)"
    assert "003  (selected)" in texts and "099" in texts and "050" not in texts
    grey = [line for line in lines(axes) if line.get_color() == plots.OTHERS]
    assert len(grey) == 91 and len(bands(axes)) == 9  # the others get no band
    legend = axes.get_legend()
    assert legend.get_bbox_to_anchor().x0 > axes.get_window_extent().x1 - 1  # outside the axes


def test_validation_accuracy_per_epoch_mean_and_band_over_seeds():
    curves = [configuration("00", score=0.8), configuration("01", diverge=1, score=0.9)]
    axes = plots.validation_accuracy(curves).axes[0]
    assert len(lines(axes)) == 2 and len(bands(axes)) == 2
    assert list(lines(axes)[0].get_xdata()) == [1, 2, 3, 4]  # epochs count from 1
    assert lines(axes)[0].get_ydata()[0] == pytest.approx(0.51)  # mean of 0.50, 0.51, 0.52
    assert len(red_crosses(axes)) == 1


def test_scratch_vs_torch_is_one_panel_per_configuration_with_both_lines():
    seeds = range(3)
    pairs = [plots.Pair(f"0{index}", [loss_curve(2, 100, s) for s in seeds], [loss_curve(2, 100, s) for s in seeds],
                        0.0 if index else 2.5e-7, score=index / 10) for index in range(3)]
    figure = plots.scratch_vs_torch(pairs)
    panels = [axes for axes in figure.axes if axes.get_visible()]
    assert len(panels) == 3
    for axes in panels:
        assert len(lines(axes)) == 2 and len(bands(axes)) == 1  # scratch (with band) under torch
        assert [line.get_linestyle() for line in lines(axes)] == ["-", "--"]
    assert "max |Δloss| 2.5e-07" in panels[0].get_title() and "identical" in panels[1].get_title()


def test_scratch_vs_torch_past_twelve_configurations_shows_the_best_twelve():
    pairs = [plots.Pair(f"{index:02d}", [loss_curve(2, 50, 0)], [loss_curve(2, 50, 0)], 0.0, score=index / 30)
             for index in range(30)]
    figure = plots.scratch_vs_torch(pairs)
    panels = [axes for axes in figure.axes if axes.get_visible()]
    assert len(panels) == plots.MAX_PANELS
    assert {axes.get_title().split("\n")[0] for axes in panels} == {f"{index:02d}" for index in range(18, 30)}
    assert "12 of 30 configurations shown" in figure.get_suptitle()


def grid_settings(diverged_lr: float = 10.0) -> list[plots.Setting]:
    settings = []
    for lr in (0.01, 0.1, diverged_lr):
        for momentum in (0.0, 0.9):
            if lr == diverged_lr:
                settings.append(plots.Setting({"optimizer": "sgd", "lr": lr, "momentum": momentum}, [], diverged=2))
            else:
                base = 0.8 + 0.5 * lr + 0.05 * momentum
                settings.append(plots.Setting({"optimizer": "sgd", "lr": lr, "momentum": momentum},
                                              [base - 0.01, base + 0.01]))
    settings[3].selected = True
    return settings


def test_sensitivity_one_panel_per_numeric_axis_one_line_per_value_of_the_others():
    figure = plots.sensitivity(grid_settings())
    lr_axes, momentum_axes = [axes for axes in figure.axes if axes.get_visible()]
    assert lr_axes.get_xlabel() == "lr" and lr_axes.get_xscale() == "log"
    assert momentum_axes.get_xscale() == "linear"
    lr_lines = [c for c in lr_axes.containers if isinstance(c, ErrorbarContainer)]
    assert len(lr_lines) == 2  # momentum 0 and 0.9
    assert list(lr_lines[0].lines[0].get_xdata()) == [0.01, 0.1]  # the diverged lr has no accuracy to draw
    assert len(red_crosses(lr_axes)) == 2 and len(red_crosses(momentum_axes)) == 2
    assert [line.get_xdata()[0] for line in red_crosses(lr_axes)] == [10.0, 10.0]
    texts = legend_texts(lr_axes)
    assert texts[:2] == ["momentum=0", "momentum=0.9"] and "selected" in texts and "diverged" in texts
    # The worst-to-best seed bar: 0.02 tall around the mean.
    segments = lr_lines[0].lines[2][0].get_segments()
    assert segments[0][1][1] - segments[0][0][1] == pytest.approx(0.02)


def test_sensitivity_draws_a_random_search_as_one_scatter_and_uses_the_given_log_axes():
    rng = np.random.default_rng(0)
    settings = [plots.Setting({"lr": float(lr), "momentum": float(m)}, [0.9]) for lr, m in rng.random((12, 2))]
    figure = plots.sensitivity(settings, log_axes=frozenset({"momentum"}))
    lr_axes, momentum_axes = [axes for axes in figure.axes if axes.get_visible()]
    assert len([c for c in lr_axes.containers if isinstance(c, ErrorbarContainer)]) == 1
    assert lr_axes.get_xscale() == "linear" and momentum_axes.get_xscale() == "log"
    assert plots.sensitivity([plots.Setting({"activation": a}, [0.9]) for a in ("relu", "tanh")]) is None


def test_heatmap_for_a_two_axis_grid_marks_diverged_pending_and_selected_cells():
    settings = grid_settings()
    settings[1].val_accuracy, settings[1].pending = [], True
    figure = plots.heatmap(settings)
    axes = figure.axes[0]
    (image,) = [artist for artist in axes.get_images() if isinstance(artist, AxesImage)]
    table = image.get_array()
    assert table.shape == (3, 2)
    assert table[0, 0] == pytest.approx(0.805) and np.ma.is_masked(table[2, 0]) and np.ma.is_masked(table[0, 1])
    texts = [text.get_text() for text in axes.texts]
    assert texts.count("diverged") == 2 and texts.count("not run yet") == 1
    assert [patch for patch in axes.patches if isinstance(patch, Rectangle)]  # the selected cell's box
    assert (axes.get_ylabel(), axes.get_xlabel()) == ("lr", "momentum")


def test_heatmap_only_for_two_axes():
    one_axis = [plots.Setting({"lr": lr}, [0.9]) for lr in (0.1, 0.2)]
    three_axes = [plots.Setting({"lr": lr, "momentum": m, "wd": w}, [0.9])
                  for lr in (0.1, 0.2) for m in (0, 0.9) for w in (0, 1e-4)]
    assert plots.heatmap(one_axis) is None and plots.heatmap(three_axes) is None


def test_intervals_draw_each_effect_with_its_interval_and_a_zero_line():
    effects = [plots.Interval("batchnorm: true - false", 0.05, 0.01, 0.09, "p = 0.02"),
               plots.Interval("schedule: step - none", -0.01, -0.04, 0.02, "p = 0.4"),
               plots.Interval("augment: hflip - none", None, note="no pairs to compare")]
    figure = plots.intervals([plots.Panel("effects", effects, "effect on test accuracy", zero_line=True)])
    axes = figure.axes[0]
    bars = [c for c in axes.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 2
    (segment,) = bars[0].lines[2][0].get_segments()
    assert segment[0][0] == pytest.approx(0.01) and segment[1][0] == pytest.approx(0.09)
    assert [line.get_xdata()[0] for line in axes.get_lines() if line.get_linestyle() == "--"] == [0.0]
    assert "no pairs to compare" in [text.get_text() for text in axes.texts]


def test_configurations_chart_keeps_the_best_forty_of_a_hundred():
    rows = [plots.Interval(f"{index:03d}", index / 100, index / 100 - 0.01, index / 100 + 0.01) for index in range(100)]
    figure = plots.configurations(rows[60:], "099", total=100)
    axes = figure.axes[0]
    assert len([c for c in axes.containers if isinstance(c, ErrorbarContainer)]) == 40
    assert axes.get_title() == "40 of 100 configurations (best on validation)"
    green = [c for c in axes.containers if c.lines[0].get_color() == "tab:green"]
    assert len(green) == 1
