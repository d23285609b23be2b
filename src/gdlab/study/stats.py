"""Confidence intervals and paired tests over seeds.

With n seeds, a mean is reported with the two-sided 95% Student-t interval
(n - 1 degrees of freedom); one seed gives no interval (None), never a fake
zero-width one. The effect of a factor is the mean of per-seed paired
differences, with its own t interval and the paired t-test's p-value.

scipy.stats is imported only where an interval or a test is computed (two
values or more): importing it costs most of a second, which a one-seed study
(no interval at all) would otherwise pay at every start.
"""

import math
from dataclasses import asdict, dataclass

import numpy as np

CONFIDENCE = 0.95


@dataclass(frozen=True)
class MeanCI:
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    n: int

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self, digits: int = 3) -> str:
        if self.mean is None:
            return "-"
        if self.ci_low is None:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {(self.ci_high - self.ci_low) / 2:.{digits}f}"


def mean_ci(values: list[float], confidence: float = CONFIDENCE) -> MeanCI:
    values = [value for value in values if value is not None and math.isfinite(value)]
    n = len(values)
    if n == 0:
        return MeanCI(None, None, None, 0)
    mean = float(np.mean(values))
    if n == 1:
        return MeanCI(mean, None, None, 1)
    from scipy import stats

    sem = float(stats.sem(values))
    if sem == 0.0:
        return MeanCI(mean, mean, mean, n)
    low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=sem)
    return MeanCI(mean, float(low), float(high), n)


@dataclass(frozen=True)
class PairedEffect:
    effect: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    n_pairs: int

    def to_dict(self) -> dict:
        return {**asdict(self), "test": "paired t-test (two-sided)"}


def paired_effect(first: list[float], second: list[float], confidence: float = CONFIDENCE) -> PairedEffect:
    """Mean of ``first[i] - second[i]`` with its t interval and the paired t-test p-value."""
    if len(first) != len(second):
        raise ValueError(f"paired samples need equal lengths, got {len(first)} and {len(second)}")
    differences = [a - b for a, b in zip(first, second)]
    summary = mean_ci(differences, confidence)
    p_value = None
    if summary.n >= 2:
        if summary.ci_low == summary.ci_high:
            p_value = 1.0 if summary.mean == 0 else 0.0
        else:
            from scipy import stats

            p_value = float(stats.ttest_rel(first, second).pvalue)
    return PairedEffect(summary.mean, summary.ci_low, summary.ci_high, p_value, summary.n)
