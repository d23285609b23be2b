"""The paired runs' yardstick: the largest per-iteration loss difference."""

import math

import pytest

from gdlab.study.execute import max_loss_difference
from gdlab.train import History


@pytest.mark.parametrize(
    "first, second, expected",
    [
        ([2.0, 1.0, 0.5], [2.0, 1.0, 0.5], 0.0),
        ([2.0, 1.25], [2.0, 1.0], 0.25),
        ([2.0, math.nan], [2.0, math.nan], 0.0),  # diverged together, at the same step
        ([2.0, math.inf], [2.0, math.inf], 0.0),
        ([2.0, math.nan], [2.0, 1.0], math.inf),  # one diverged, the other did not
        ([2.0, 1.0], [2.0, 1.0, 0.5], math.inf),  # one stopped earlier
        ([], [], 0.0),
    ],
)
def test_max_loss_difference(first, second, expected):
    assert max_loss_difference(History(iteration_loss=first), History(iteration_loss=second)) == expected
