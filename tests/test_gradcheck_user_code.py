"""check_mlp_backward on code written the way people write it: their loss, their network, their storage.

The backward passes are files in tests/backward_examples/, shaped like a real
course's: float64 throughout (the notebook sets torch's default dtype), the
course's network class (`fc["1"]..`, `z`/`a` dicts, results in
`model.dL_dw[l]` / `model.dL_db[l]`) and its summed squared-error loss, plus
networks and storage laid out the other common ways.
"""

import contextlib
import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gdlab.errors import GdlabError
from gdlab.gradcheck import check_mlp_backward

EXAMPLES = Path(__file__).resolve().parent / "backward_examples"
N, SIZES = 12, [3 * 2 * 2, 6, 4, 3]  # N, the outputs C = 3 and N·C = 36 are told apart by every factor
C = SIZES[-1]


@contextlib.contextmanager
def float64_default():
    """As in the course notebook, whose first cell runs torch.set_default_dtype(torch.double)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def load(name):
    with float64_default():
        spec = importlib.util.spec_from_file_location(f"backward_examples_{name}", EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


course = load("course_model")
report_004 = load("report_004")
bugs = load("course_batch_bugs")
layouts = load("other_layouts")


@pytest.fixture(autouse=True)
def course_dtype():
    with float64_default():
        yield


def course_inputs(seed=0, sizes=SIZES, batch_size=N):
    torch.manual_seed(seed)
    model = course.MyNet(sizes)
    x = torch.randn(batch_size, 3, 2, 2) if sizes[0] == 12 else torch.randn(batch_size, sizes[0])
    y = F.one_hot(torch.randint(0, sizes[-1], (batch_size,)), sizes[-1]).double()
    return model, x, y


# The loss the course trains with, and the same loss by name; and the mean one people may name instead.
SUMMED = [pytest.param(dict(loss=course.summed_loss), id="course-loss"),
          pytest.param(dict(loss="mse", reduction="sum"), id="mse-sum")]
EITHER = SUMMED + [pytest.param(dict(loss="mse"), id="mse-mean")]


def check(backward, seed=0, **loss):
    model, x, y = course_inputs(seed)
    return check_mlp_backward(backward, x, y, model=model, **loss)


def across(report):
    (finding,) = [f for f in report.findings if f.tensor is None]
    return finding


def expect_reduction(report, loss):
    """For the mean loss the course's summed code is N·C off: said once, as a relation, not a mistake."""
    if loss.get("loss") == "mse" and loss.get("reduction", "mean") == "mean":
        assert report.reduction is not None and report.reduction.factor == pytest.approx(N * C)
    else:
        assert report.reduction is None


# ---------------------------------------------------------------- the course report's code is right


@pytest.mark.parametrize("loss", SUMMED)
def test_the_course_reports_backward_pass_is_correct_for_the_courses_summed_loss(loss):
    report = check(report_004.backpropagation_as_listed, **loss)
    assert report.ok and report.verdict == "ok" and report.kind == "none"
    assert report.findings == [] and report.reduction is None and report.side_effects == ()
    assert report.finite_differences is not None and report.finite_differences.ok
    assert [row.name for row in report.comparisons] == [
        f"fc.{l}.{kind}" for l in (1, 2, 3) for kind in ("weight", "bias")
    ]
    text = report.render()
    assert text.rstrip().endswith("Verdict: OK") and "MISMATCH" not in text and "mean" not in text


def test_checked_against_the_mean_loss_it_is_the_summed_loss_not_a_mistake():
    report = check(report_004.backpropagation_as_listed, loss="mse")
    assert not report.ok and report.gradients_ok
    assert report.verdict == "other_reduction" and report.kind == "variant"
    assert report.findings == [] and report.side_effects == ()
    relation = report.reduction
    assert relation.factor == pytest.approx(N * C)
    assert relation.message.startswith("your gradient is for the summed loss")
    assert f"is the mean loss (averaged over all {N} x {C} elements of y_pred)" in relation.message
    assert f"the factor N·C = {N} x {C} = {N * C}" in relation.message
    assert 'loss="mse", reduction="sum"' in relation.message and "not a mistake" in relation.message
    text = report.render()
    assert "MISMATCH" not in text and "missing" not in text
    assert f"analytic vs autograd of the summed loss ({N * C} x the loss given)" in text


def test_the_course_default_network_with_two_outputs():
    model, x, y = course_inputs(sizes=[2, 3, 2], batch_size=5)
    assert check_mlp_backward(report_004.backpropagation_as_listed, x, y, model=model, loss=course.summed_loss).ok
    mean = check_mlp_backward(report_004.backpropagation_as_listed, x, y, model=model, loss="mse")
    assert mean.verdict == "other_reduction" and mean.reduction.factor == pytest.approx(10)


@pytest.mark.parametrize("loss", EITHER)
def test_the_report_as_it_ran_updates_the_weights_inside_backward(loss):
    model, x, y = course_inputs()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    report = check_mlp_backward(report_004.backpropagation, x, y, model=model, **loss)
    assert report.gradients_ok and not report.ok
    assert report.verdict == "changes_model" and report.kind == "bug"
    expect_reduction(report, loss)
    (effect,) = report.side_effects
    assert effect.kind == "changes_parameters"
    assert "fc.1.weight, fc.1.bias, fc.2.weight, fc.2.bias, fc.3.weight, fc.3.bias" in effect.message
    assert "learning rate 1e-09, taken inside backward" in effect.message
    assert "[changes_parameters]" in report.render()
    assert "CHANGES THE MODEL" in report.render()
    # The check ran on a copy: the network passed in is as it was.
    assert all(torch.equal(before[name], p) for name, p in model.named_parameters())


def test_a_backward_pass_for_the_mean_loss_checked_with_the_courses_summed_loss():
    report = check(bugs.mean_loss_gradient, loss=course.summed_loss)
    assert report.verdict == "other_reduction" and report.reduction.factor == pytest.approx(1 / (N * C))
    assert report.reduction.message.startswith("your gradient is for the mean loss")
    assert "your loss summed_loss is the summed loss" in report.reduction.message
    assert f"1/N·C = 1/{N * C}" in report.reduction.message
    assert check(bugs.mean_loss_gradient, loss="mse").ok


# ---------------------------------------------------------------- batch-dimension mistakes, localized


@pytest.mark.parametrize("loss", EITHER)
def test_bias_gradients_not_summed_over_the_batch_are_named_per_layer(loss):
    report = check(bugs.output_layer_then_hidden_loop_bias_not_summed, **loss)
    assert report.verdict == "mismatch"
    expect_reduction(report, loss)
    per_tensor = {f.tensor: f for f in report.findings if f.tensor}
    assert set(per_tensor) == {"fc.1.bias", "fc.2.bias"}
    assert {f.kind for f in per_tensor.values()} == {"not_summed_over_batch"}
    assert f"shape ({N}, 6)" in per_tensor["fc.1.bias"].message
    assert "summed over dim 0 it is right" in per_tensor["fc.1.bias"].message
    finding = across(report)
    assert finding.kind == "bias_gradient" and "fc.1, fc.2" in finding.message
    assert [row.name for row in report.comparisons if not row.ok] == ["fc.1.bias", "fc.2.bias"]


@pytest.mark.parametrize("loss", EITHER)
def test_a_sum_before_the_activation_derivative_is_found_in_its_layer(loss):
    report = check(bugs.propagates_the_bias_gradient, **loss)
    assert report.verdict == "mismatch"
    expect_reduction(report, loss)
    finding = across(report)
    assert finding.kind == "summed_before_derivative" and finding.layer == "fc.2"
    assert "db @ W" in finding.message and "The layers after fc.2 match" in finding.message
    assert {row.name for row in report.comparisons if not row.ok} == {
        "fc.1.weight", "fc.1.bias", "fc.2.weight", "fc.2.bias"
    }
    cells = {f.tensor: f.summary for f in report.findings if f.tensor}
    assert cells["fc.2.weight"] == "summed over the batch before f'(z)"
    assert cells["fc.1.weight"] == "follows from fc.2"


@pytest.mark.parametrize("loss", EITHER)
def test_a_loss_gradient_summed_over_the_batch_is_found_at_the_output_layer(loss):
    # No output tensor is a multiple of the reference here; the reduction is still read off the output layer.
    report = check(bugs.sums_the_loss_gradient_first, **loss)
    assert report.verdict == "mismatch"
    expect_reduction(report, loss)
    finding = across(report)
    assert finding.kind == "summed_before_derivative" and finding.layer == "fc.3"
    assert "the loss gradient itself lost its batch dimension" in finding.message


@pytest.mark.parametrize("loss", EITHER)
def test_one_bias_averaged_over_the_batch_is_named_in_its_layer(loss):
    report = check(bugs.averages_the_bias_gradient_in_the_first_layer, **loss)
    assert report.verdict == "mismatch"
    expect_reduction(report, loss)
    finding = across(report)
    assert finding.kind == "one_layer" and finding.layer == "fc.1"
    assert "Its weight gradient matches, so dL/dz is right there" in finding.message
    (bias,) = [f for f in report.findings if f.tensor]
    assert bias.tensor == "fc.1.bias" and bias.kind == "extra_mean" and bias.factor == pytest.approx(1 / N)


@pytest.mark.parametrize("loss", EITHER)
def test_the_missing_two_of_the_squared_error_is_a_mistake_whatever_the_reduction(loss):
    report = check(bugs.forgets_the_two, **loss)
    assert report.verdict == "mismatch"
    expect_reduction(report, loss)
    finding = across(report)
    assert finding.kind == "factor_of_two" and finding.factor == pytest.approx(0.5)


def test_a_loss_gradient_built_in_y_preds_memory_is_flagged():
    report = check(bugs.subtracts_in_place, loss=course.summed_loss)
    assert report.gradients_ok and report.verdict == "changes_model"
    (effect,) = report.side_effects
    assert effect.kind == "changes_inputs" and "y_pred in place" in effect.message


def test_a_backward_pass_that_also_fills_grad_with_other_values_is_flagged():
    report = check(bugs.also_writes_grad_for_the_optimizer, loss=course.summed_loss)
    assert report.gradients_ok and report.verdict == "changes_model"
    (effect,) = report.side_effects
    assert effect.kind == "changes_grad"
    assert "fc.1.weight, fc.1.bias" in effect.message and "model.dL_dw / model.dL_db" in effect.message


# ---------------------------------------------------------------- other networks, losses and storage


def two_layer_inputs(seed=0):
    torch.manual_seed(seed)
    return layouts.TwoLayerNet(), torch.randn(10, 6), torch.randint(0, 3, (10,))


@pytest.mark.parametrize("loss", [nn.CrossEntropyLoss(), "cross_entropy"], ids=["module", "name"])
def test_results_in_grad_and_arguments_in_another_order(loss):
    # backward_into_grad(net, output, labels): y_pred second, the labels third; results in .grad.
    net, x, labels = two_layer_inputs()
    report = check_mlp_backward(layouts.backward_into_grad, x, labels, model=net, loss=loss)
    assert report.ok, report.render()
    assert [row.name for row in report.comparisons] == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]


def test_summed_cross_entropy_against_the_mean_and_the_summed_loss():
    net, x, labels = two_layer_inputs()
    mean = check_mlp_backward(layouts.backward_summed_cross_entropy, x, labels, model=net, loss="cross_entropy")
    assert mean.verdict == "other_reduction" and mean.reduction.factor == pytest.approx(10)
    assert "N = 10 (the batch size)" in mean.reduction.message
    summed = nn.CrossEntropyLoss(reduction="sum")
    assert check_mlp_backward(layouts.backward_summed_cross_entropy, x, labels, model=net, loss=summed).ok
    # model= may be the class itself when it takes no arguments
    assert check_mlp_backward(layouts.backward_summed_cross_entropy, x, labels, model=layouts.TwoLayerNet,
                              loss=summed).ok


def list_net_inputs(seed=0):
    torch.manual_seed(seed)
    return layouts.ListNet(), torch.randn(7, 8), torch.randn(7, 2)


def test_two_returned_lists_weights_then_biases():
    net, x, y = list_net_inputs()
    assert check_mlp_backward(layouts.backward_returning_lists, x, y, model=net, loss=nn.MSELoss()).ok


def test_storage_under_names_of_its_own_is_found_and_ambiguity_is_asked_about():
    net, x, y = list_net_inputs()
    assert check_mlp_backward(layouts.backward_into_own_lists, x, y, model=net, loss=nn.MSELoss()).ok
    with pytest.raises(GdlabError, match=r"\['gW', 'gW_summed'\].*gradients=\('weights_attr', 'biases_attr'\)"):
        check_mlp_backward(layouts.backward_with_two_weight_lists, x, y, model=net, loss=nn.MSELoss())
    told = check_mlp_backward(layouts.backward_with_two_weight_lists, x, y, model=net, loss=nn.MSELoss(),
                              gradients=("gW", "gb"))
    assert told.ok
    other = check_mlp_backward(layouts.backward_with_two_weight_lists, x, y, model=net, loss=nn.MSELoss(),
                               gradients=("gW_summed", "gb"))
    assert not other.gradients_ok  # it reads what it is told to


def test_where_the_gradients_are_can_be_said():
    net, x, y = list_net_inputs()
    assert check_mlp_backward(layouts.backward_returning_lists, x, y, model=net, loss=nn.MSELoss(),
                              gradients="return").ok
    two, x2, labels = two_layer_inputs()
    assert check_mlp_backward(layouts.backward_into_grad, x2, labels, model=two, loss="cross_entropy",
                              gradients="grad").ok
    assert check_mlp_backward(layouts.backward_into_own_lists, x, y, model=net, loss=nn.MSELoss(),
                              gradients=lambda model: list(zip(model.gW, model.gb))).ok
    with pytest.raises(GdlabError, match=r"gradients='grad' but \.grad is None in layers.0"):
        check_mlp_backward(layouts.backward_into_own_lists, x, y, model=net, loss=nn.MSELoss(), gradients="grad")


def test_a_network_with_its_own_backward_method_and_gradients_keyed_by_layer_name():
    torch.manual_seed(0)
    net, x, y = layouts.CourseNetWithBackward(), torch.randn(9, 4), torch.randn(9, 3)
    report = check_mlp_backward(net, x, y, loss="mse", reduction="sum")
    assert report.ok
    assert [row.name for row in report.comparisons] == ["hidden.weight", "hidden.bias", "out.weight", "out.bias"]
    per_example = check_mlp_backward(net, x, y, loss=lambda y_pred, y: ((y_pred - y) ** 2).sum(1).mean())
    assert per_example.verdict == "other_reduction" and per_example.reduction.factor == pytest.approx(9)
    assert "your loss function is the loss summed over the outputs and averaged over the batch" in (
        per_example.reduction.message
    )


def test_a_loss_that_is_not_one_number_is_refused_with_the_fix():
    model, x, y = course_inputs()
    with pytest.raises(GdlabError, match=r"returned \(12, 3\), not one number.*\.sum\(\)"):
        check_mlp_backward(report_004.backpropagation_as_listed, x, y, model=model, loss=course.loss)


def test_a_network_class_that_needs_arguments_is_refused_with_the_fix():
    model, x, y = course_inputs()

    class Sized(nn.Module):
        def __init__(self, sizes):
            super().__init__()

    with pytest.raises(GdlabError, match=r"model=Sized is a class that needs arguments.*model=Sized\(\.\.\.\)"):
        check_mlp_backward(report_004.backpropagation_as_listed, x, y, model=Sized, loss=course.summed_loss)
