"""Confidence intervals and paired effects, against values worked out by hand."""

import pytest

from gdlab.study.stats import mean_ci, paired_effect

T_975_DF2 = 4.302652729911275  # Student t, 97.5% quantile, 2 degrees of freedom (from tables)
T_975_DF4 = 2.7764451051977987


def test_mean_ci_is_the_student_t_interval():
    result = mean_ci([0.80, 0.82, 0.84])
    sem = 0.02 / 3**0.5  # sample std 0.02
    assert result.mean == pytest.approx(0.82)
    assert result.ci_low == pytest.approx(0.82 - T_975_DF2 * sem)
    assert result.ci_high == pytest.approx(0.82 + T_975_DF2 * sem)
    assert result.n == 3


def test_one_value_has_no_interval_and_none_has_no_mean():
    assert mean_ci([0.9]).ci_low is None and mean_ci([0.9]).mean == 0.9
    assert mean_ci([]).mean is None
    assert mean_ci([float("nan"), None, 0.5]).n == 1


def test_paired_effect_uses_differences_not_the_two_means():
    first = [0.80, 0.85, 0.90, 0.75, 0.70]
    second = [value - d for value, d in zip(first, [0.01, 0.02, 0.03, 0.02, 0.02])]
    effect = paired_effect(first, second)
    sem = 0.00707106781186548 / 5**0.5  # std of the differences [.01 .02 .03 .02 .02]
    assert effect.effect == pytest.approx(0.02)
    assert effect.ci_low == pytest.approx(0.02 - T_975_DF4 * sem)
    assert effect.ci_high == pytest.approx(0.02 + T_975_DF4 * sem)
    assert effect.p_value < 0.01 and effect.n_pairs == 5


def test_paired_effect_of_noise_is_not_significant():
    effect = paired_effect([0.80, 0.81, 0.79, 0.80], [0.81, 0.80, 0.80, 0.79])
    assert effect.ci_low < 0 < effect.ci_high and effect.p_value > 0.5


def test_paired_effect_needs_equal_lengths():
    with pytest.raises(ValueError, match="equal lengths"):
        paired_effect([0.1, 0.2], [0.1])
