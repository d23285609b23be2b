"""Both sides of the check's rounding tolerance (gdlab.check.compare).

A step passes when r = ||q - (p + u)|| / (||p|| + ||u||) <= 8 eps(dtype). On
this problem with lr 0.01 a plain-SGD update u is a few thousandths of p in
size, so r for an update off by a fraction f of itself is about f * ||u|| / ||p||:
f = 1e-3 is far above 8 eps in float32 (9.5e-7), f = 1e-6 far below it, and
both far above 8 eps in float64 (1.8e-15).
"""

import itertools
from pathlib import Path

import pytest
import torch

from gdlab.check import check_training_function, load_function
from gdlab.check.compare import TOLERANCE_EPS, relative_difference, tolerance

EXAMPLES = Path(__file__).parent / "check_examples"


def sgd_with_learning_rate_times(factor: float):
    def train(n_epochs, model, loss_fn, train_loader, lr):
        for _ in range(n_epochs):
            for x, y in train_loader:
                model.zero_grad()
                loss_fn(model(x), y).backward()
                with torch.no_grad():
                    for p in model.parameters():
                        p.data = p.data - (lr * factor) * p.grad

    return train


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_difference_below_the_tolerance_passes_and_one_above_fails(dtype):
    generator = torch.Generator().manual_seed(0)
    before = torch.randn(1000, generator=generator, dtype=torch.float64)
    update = 1e-2 * torch.randn(1000, generator=generator, dtype=torch.float64)
    expected = before + update
    direction = torch.randn(1000, generator=generator, dtype=torch.float64)
    direction /= direction.norm()
    scale = (before.norm() + update.norm()).item()
    eps = torch.finfo(dtype).eps
    for multiple, passes in ((TOLERANCE_EPS / 2, True), (TOLERANCE_EPS * 2, False)):
        observed = expected + multiple * eps * scale * direction
        r = relative_difference(before, expected, observed)
        assert r == pytest.approx(multiple * eps, rel=1e-6)
        assert (r <= tolerance(dtype)) is passes


def test_relative_difference_of_equal_and_of_non_finite_tensors():
    before = torch.tensor([1.0, 2.0, 3.0])
    after = torch.tensor([1.5, float("nan"), 3.0])
    assert relative_difference(before, after, after.clone()) == 0.0
    assert relative_difference(before, after, torch.tensor([1.5, 2.0, 3.0])) == float("inf")
    assert relative_difference(before, before + 1, torch.tensor([2.0, 3.0, float("inf")])) == float("inf")


def test_rounding_only_differences_pass_in_both_dtypes():
    for dtype in (torch.float32, torch.float64):
        report = check_training_function(sgd_with_learning_rate_times(1.0), "sgd", {"lr": 0.01}, dtype=dtype)
        assert report.passed, report.render()


def test_an_update_off_by_a_thousandth_fails_in_float32_and_is_named_as_a_scaled_learning_rate():
    report = check_training_function(sgd_with_learning_rate_times(1.001), "sgd", {"lr": 0.01})
    assert not report.passed
    assert report.first_divergence.step == 1
    assert "every update is 1.001 times torch's" in report.likely_cause


def test_an_update_off_by_a_millionth_is_below_float32_rounding_but_fails_in_float64():
    in_float32 = check_training_function(sgd_with_learning_rate_times(1 + 1e-6), "sgd", {"lr": 0.01})
    assert in_float32.passed, in_float32.render()
    in_float64 = check_training_function(
        sgd_with_learning_rate_times(1 + 1e-6), "sgd", {"lr": 0.01}, dtype=torch.float64
    )
    assert not in_float64.passed
    assert in_float64.first_divergence.step == 1
    assert "every update is (1 + 1e-06) times torch's" in in_float64.likely_cause


def test_weight_decay_too_small_for_float32_is_seen_in_float64():
    wrong_sign = load_function(str(EXAMPLES / "sgd_weight_decay_wrong_sign.py") + ":train_sgd")
    hparams = {"lr": 1e-3, "weight_decay": 1e-5}
    assert check_training_function(wrong_sign, "sgd", hparams).passed
    in_float64 = check_training_function(wrong_sign, "sgd", hparams, dtype=torch.float64)
    assert not in_float64.passed
    assert in_float64.likely_cause.startswith("weight decay has the wrong sign")


def _correct_rule_settings():
    sgd = EXAMPLES / "sgd_correct.py"
    others = EXAMPLES / "other_rules_correct.py"
    for lr, momentum, weight_decay in itertools.product([0.1, 0.01, 0.001], [0.0, 0.5, 0.9, 0.99], [0.0, 1e-2, 1e-4]):
        yield f"{sgd}:train_sgd", "sgd", {"lr": lr, "momentum": momentum, "weight_decay": weight_decay}
    for lr, weight_decay, amsgrad in itertools.product([1e-2, 1e-3, 1e-4], [0.0, 1e-2], [False, True]):
        yield f"{others}:train_adam", "adam", {"lr": lr, "weight_decay": weight_decay, "amsgrad": amsgrad}
    for lr, weight_decay in itertools.product([1e-2, 1e-3], [0.0, 1e-2, 0.1]):
        yield f"{others}:train_adamw", "adamw", {"lr": lr, "weight_decay": weight_decay}
    for lr, weight_decay, momentum, centered in itertools.product([1e-2, 1e-3], [0.0, 1e-2], [0.0, 0.9], [False, True]):
        yield f"{others}:train_rmsprop", "rmsprop", {"lr": lr, "weight_decay": weight_decay, "momentum": momentum,
                                                     "centered": centered}
    for lr, weight_decay, lr_decay, initial in itertools.product([0.1, 0.01], [0.0, 1e-2], [0.0, 0.1], [0.0, 0.5]):
        yield f"{others}:train_adagrad", "adagrad", {"lr": lr, "weight_decay": weight_decay, "lr_decay": lr_decay,
                                                     "initial_accumulator_value": initial}


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hand_written_rules_stay_far_below_the_tolerance_over_many_settings(dtype):
    """The margin compare.py documents: about 150 settings, 3 epochs, every r below 1 eps (tolerance 8 eps)."""
    eps = torch.finfo(dtype).eps
    for target, rule, hparams in _correct_rule_settings():
        report = check_training_function(load_function(target), rule, hparams, epochs=3, dtype=dtype)
        assert report.passed, report.render()
        assert report.max_relative_difference < eps, (target, hparams, report.max_relative_difference / eps)
