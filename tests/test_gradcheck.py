"""gdlab.gradcheck: reference gradients, comparison, and a diagnosis of each usual mistake."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

from gdlab.backprop import ACTIVATIONS, MLP
from gdlab.errors import GdlabError
from gdlab.gradcheck import (
    autograd_gradient,
    check_mlp_backward,
    compare,
    diagnose,
    numerical_gradient,
)

BATCH = 12  # differs from every output size and from 2, so a factor names one cause


# ---------------------------------------------------------------- reference gradients


def test_numerical_gradient_equals_the_derivative_worked_out_by_hand():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(3, 4, generator=generator)  # float32 on purpose: it is copied to float64
    b = torch.rand(3, 4, generator=generator) + 0.5

    def f(a, b):
        return (a**2 * b).sum() + b.prod()

    a_before, b_before = a.clone(), b.clone()
    grad_a, grad_b = numerical_gradient(f, [a, b])
    a64, b64 = a.double(), b.double()
    assert grad_a.dtype == grad_b.dtype == torch.float64
    torch.testing.assert_close(grad_a, 2 * a64 * b64, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(grad_b, a64**2 + b64.prod() / b64, rtol=1e-7, atol=1e-9)
    assert torch.equal(a, a_before) and torch.equal(b, b_before)


def test_numerical_gradient_handles_non_contiguous_inputs_and_agrees_with_autograd():
    generator = torch.Generator().manual_seed(1)
    weight = torch.randn(5, 3, dtype=torch.float64, generator=generator).T  # a transposed view
    x = torch.randn(4, 5, dtype=torch.float64, generator=generator)

    def f(weight):
        return torch.tanh(x @ weight.T).sum()

    (numerical,) = numerical_gradient(f, [weight])
    (analytic,) = autograd_gradient(f, [weight])
    assert numerical.shape == weight.shape
    torch.testing.assert_close(numerical, analytic, rtol=1e-7, atol=1e-9)


def test_numerical_gradient_refuses_non_scalar_and_float32_results_and_bad_eps():
    x = torch.ones(3, dtype=torch.float64)
    with pytest.raises(GdlabError, match=r"scalar.*\(3,\).*\.mean\(\) or \.sum\(\)"):
        numerical_gradient(lambda t: t * 2, [x])
    with pytest.raises(GdlabError, match=r"float32.*\.double\(\)"):
        numerical_gradient(lambda t: t.float().sum(), [x])
    with pytest.raises(GdlabError, match="eps must be positive"):
        numerical_gradient(lambda t: t.sum(), [x], eps=0)
    with pytest.raises(GdlabError, match="floating-point"):
        numerical_gradient(lambda t: t.sum(), [torch.ones(3, dtype=torch.long)])


def test_autograd_gradient_leaves_inputs_alone_and_gives_zeros_for_unused_ones():
    x, unused = torch.tensor([1.0, -2.0]), torch.ones(2, 2)
    grad_x, grad_unused = autograd_gradient(lambda x, u: (x**3).sum(), [x, unused])
    assert torch.equal(grad_x, torch.tensor([3.0, 12.0]))
    assert torch.equal(grad_unused, torch.zeros(2, 2))
    assert not x.requires_grad and grad_x.grad_fn is None


# ---------------------------------------------------------------- compare


def test_compare_verdict_follows_the_stated_tolerance_and_relative_error_is_safe_at_zero():
    reference = [torch.tensor([1.0, 0.0], dtype=torch.float64)]
    rtol, atol = 1e-5, 1e-8
    inside = compare([torch.tensor([1.0 + 0.9e-5, 0.5e-8], dtype=torch.float64)], reference, rtol=rtol, atol=atol)
    outside = compare([torch.tensor([1.0, 2e-8], dtype=torch.float64)], reference, rtol=rtol, atol=atol)
    assert inside.ok and inside.verdict == "ok"
    assert not outside.ok and outside.verdict == "mismatch"
    (row,) = outside.comparisons
    assert row.max_abs_error == pytest.approx(2e-8)
    # |a - r| / (|r| + atol/rtol) at r = 0: 2e-8 / 1e-3
    assert row.max_rel_error == pytest.approx(2e-5)
    assert inside.comparisons[0].max_rel_error <= rtol < outside.comparisons[0].max_rel_error


def test_compare_defaults_are_tighter_for_float64_than_float32():
    reference = [torch.ones(3, dtype=torch.float64)]
    off_by_1e4 = [torch.full((3,), 1 + 1e-4, dtype=torch.float64)]
    assert not compare(off_by_1e4, reference).ok
    assert compare([t.float() for t in off_by_1e4], reference).ok


def test_compare_accepts_layer_pairs_and_names_them_like_the_model():
    pairs = [(torch.ones(2, 3), torch.ones(2)), (torch.ones(1, 2), torch.ones(1))]
    report = compare(pairs, pairs)
    assert [row.name for row in report.comparisons] == [
        "layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"
    ]
    assert report.ok and report.findings == []


def test_compare_refuses_lists_that_do_not_line_up():
    with pytest.raises(GdlabError, match="3 tensors.*2"):
        compare([torch.ones(1)] * 3, [torch.ones(1)] * 2)
    with pytest.raises(GdlabError, match="1 names for 2 tensors"):
        compare([torch.ones(1)] * 2, [torch.ones(1)] * 2, names=["w"])
    with pytest.raises(GdlabError, match="NoneType.*never computed"):
        compare([None], [torch.ones(1)])
    with pytest.raises(GdlabError, match="rtol > 0"):
        compare([torch.ones(1)], [torch.ones(1)], rtol=0)


# ---------------------------------------------------------------- diagnose on plain tensors


def reference_gradients(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 6, dtype=torch.float64, generator=generator),
            torch.randn(4, dtype=torch.float64, generator=generator)]


def test_a_factor_is_estimated_robustly_despite_elements_near_zero():
    reference = reference_gradients()
    reference[0][0, :3] = torch.tensor([1e-12, -1e-13, 0.0], dtype=torch.float64)
    analytic = [3.7 * t for t in reference]
    analytic[0][0, :3] = torch.tensor([5e-9, -5e-9, 5e-9], dtype=torch.float64)  # noise at the floor
    findings = diagnose(analytic, reference, names=["w", "b"])
    per_tensor = [f for f in findings if f.tensor == "w"]
    assert per_tensor[0].kind == "constant_factor"
    assert per_tensor[0].factor == pytest.approx(3.7, rel=1e-9)


def test_a_combined_factor_names_each_cause():
    reference = reference_gradients()
    analytic = [-BATCH * t for t in reference]
    (finding,) = [f for f in diagnose(analytic, reference, batch_size=BATCH) if f.tensor is None]
    assert finding.kind == "constant_factor" and finding.factor == pytest.approx(-BATCH)
    assert "sign is flipped" in finding.message and "missing mean over the batch" in finding.message


@settings(max_examples=40, deadline=None)
@given(batch_size=st.integers(3, 500), inverse=st.booleans())
def test_a_factor_equal_to_the_batch_size_or_its_inverse_is_a_mean(batch_size, inverse):
    reference = reference_gradients()
    factor = 1 / batch_size if inverse else batch_size
    (finding, *_) = diagnose([factor * t for t in reference], reference, batch_size=batch_size)
    assert finding.kind == ("extra_mean" if inverse else "missing_mean")
    assert finding.factor == pytest.approx(factor, rel=1e-9)
    assert ("extra mean" if inverse else "missing mean over the batch") in finding.message


@settings(max_examples=40, deadline=None)
@given(factor=st.floats(-50, 50))
def test_any_other_constant_factor_is_reported_as_one(factor):
    named = [1, -1, 2, -2, 0.5, -0.5, BATCH, -BATCH, 1 / BATCH, -1 / BATCH, 2 * BATCH, BATCH / 2]
    assume(abs(factor) > 1e-3 and all(abs(factor - value) > 1e-3 * abs(value) for value in named))
    reference = reference_gradients()
    findings = diagnose([factor * t for t in reference], reference, batch_size=BATCH)
    assert findings[0].kind == "constant_factor"
    assert findings[0].factor == pytest.approx(factor, rel=1e-9)


def test_random_differences_have_no_simple_pattern_and_report_the_errors():
    reference = reference_gradients(0)
    analytic = reference_gradients(1)
    findings = diagnose(analytic, reference, names=["w", "b"])
    assert {f.kind for f in findings if f.tensor} == {"no_pattern"}
    assert "max abs error" in findings[-1].message and "max rel error" in findings[-1].message


def test_nan_and_wrong_shapes_are_named():
    reference = reference_gradients()
    nan = [reference[0].clone(), reference[1]]
    nan[0][1, 1] = float("nan")
    assert diagnose(nan, reference, names=["w", "b"])[-1].kind == "not_finite"
    keepdim_bias = [reference[0], reference[1][None, :]]
    (finding,) = [f for f in diagnose(keepdim_bias, reference, names=["w", "b"]) if f.tensor == "b"]
    assert finding.kind == "shape_mismatch" and "right once reshaped" in finding.message
    assert "(1, 4)" in finding.message and "(4,)" in finding.message


# ---------------------------------------------------------------- broken backward passes


def backward_pass(loss_gradient, weight_gradient=None, bias_gradient=None, derivative=None, a_prev=None):
    """A backward(model, y_true, y_pred) for gdlab.backprop.MLP built from replaceable pieces.

    The defaults are right; each test swaps in one wrong piece, the way a student's code goes wrong.
    """
    weight_gradient = weight_gradient or (lambda l, delta, a_prev: delta.T @ a_prev)
    bias_gradient = bias_gradient or (lambda l, delta: delta.sum(dim=0))
    a_prev = a_prev or (lambda model, l: model.a[l - 1])

    def backward(model, y_true, y_pred):
        correct_derivative = ACTIVATIONS[model.activation_name].derivative
        activation_derivative = derivative or correct_derivative
        delta = loss_gradient(y_pred, y_true)
        grads = []
        for l in range(len(model.layers), 0, -1):
            grads.append((weight_gradient(l, delta, a_prev(model, l)), bias_gradient(l, delta)))
            if l > 1:
                delta = (delta @ model.layers[l - 1].weight) * activation_derivative(model.z[l - 1], model.a[l - 1])
        return grads[::-1]

    return backward


def mse_gradient(y_pred, y_true):
    return 2 * (y_pred - y_true) / y_pred.numel()


def cross_entropy_gradient(y_pred, labels):
    return (torch.softmax(y_pred, dim=1) - F.one_hot(labels, y_pred.shape[1])) / len(labels)


def run_check(backward, sizes=(6, 5, 4, 3), activation="tanh", loss="mse", seed=0, **kwargs):
    torch.manual_seed(seed)
    model = MLP(list(sizes), activation=activation)
    x = torch.randn(BATCH, sizes[0])
    if loss == "mse" or callable(loss):
        y = torch.randn(BATCH, sizes[-1])
    else:
        y = torch.randint(0, sizes[-1], (BATCH,))
    return check_mlp_backward(backward, x, y, model=model, loss=loss, **kwargs)


def whole_network_finding(report):
    (finding,) = [f for f in report.findings if f.tensor is None]
    return finding


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_a_correct_backward_function_passes_against_autograd_and_finite_differences(loss):
    gradient = mse_gradient if loss == "mse" else cross_entropy_gradient
    report = run_check(backward_pass(gradient), loss=loss)
    assert report.ok and report.findings == []
    assert report.finite_differences is not None and report.finite_differences.ok
    assert report.finite_differences.reference_name == "finite differences"


def test_gdlab_backprop_mlp_itself_passes():
    torch.manual_seed(0)
    net = MLP([6, 5, 4, 3], activation="sigmoid")
    x, y = torch.randn(BATCH, 6), torch.randint(0, 3, (BATCH,))
    report = check_mlp_backward(net, x, y, loss="cross_entropy")
    assert report.ok
    assert net.layers[0].weight.dtype == torch.float32  # the check ran on a float64 copy


def test_a_gradient_summed_over_the_batch_is_the_summed_cross_entropy_not_a_mistake():
    report = run_check(backward_pass(lambda y, t: cross_entropy_gradient(y, t) * len(t)), loss="cross_entropy")
    assert not report.ok and report.gradients_ok
    assert report.verdict == "other_reduction" and report.kind == "variant"
    assert report.reduction.factor == pytest.approx(BATCH)
    assert f"N = {BATCH} (the batch size)" in report.reduction.message
    assert 'reduction="sum"' in report.reduction.message
    assert report.findings == []  # nothing else is wrong, and the reduction is no finding of a mistake
    summed = run_check(backward_pass(lambda y, t: cross_entropy_gradient(y, t) * len(t)), loss="cross_entropy",
                       reduction="sum")
    assert summed.ok and summed.verdict == "ok"


def test_extra_batch_mean():
    report = run_check(backward_pass(lambda y, t: cross_entropy_gradient(y, t) / len(t)), loss="cross_entropy")
    finding = whole_network_finding(report)
    assert finding.kind == "extra_mean" and finding.factor == pytest.approx(1 / BATCH)
    assert "extra mean" in finding.message


def test_mse_divided_by_the_batch_only_is_the_per_example_sum_averaged_over_the_batch():
    # 2 (y - t) / N is the gradient of ((y - t)**2).sum(1).mean(), a loss of its own, 3 (outputs) x F.mse_loss.
    report = run_check(backward_pass(lambda y, t: 2 * (y - t) / len(y)))
    assert report.verdict == "other_reduction" and report.reduction.factor == pytest.approx(3)
    assert "summed over the outputs and averaged over the batch" in report.reduction.message
    assert "C = 3 (outputs per example)" in report.reduction.message
    as_trained = run_check(backward_pass(lambda y, t: 2 * (y - t) / len(y)),
                           loss=lambda y_pred, y: ((y_pred - y) ** 2).sum(1).mean())
    assert as_trained.ok


def test_a_mistake_on_top_of_a_reduction_is_still_a_mistake():
    # Summed over everything (x N·C) and the sign flipped: the reduction is said, the sign is the finding.
    report = run_check(backward_pass(lambda y, t: 2 * (t - y)))
    assert report.verdict == "mismatch" and report.reduction.factor == pytest.approx(BATCH * 3)
    finding = whole_network_finding(report)
    assert finding.kind == "sign_flipped" and finding.factor == pytest.approx(-1)


def test_sign_error():
    report = run_check(backward_pass(lambda y, t: 2 * (t - y) / y.numel()))
    finding = whole_network_finding(report)
    assert finding.kind == "sign_flipped" and finding.factor == pytest.approx(-1)
    assert "y_pred - y_true" in finding.message


def test_mse_derivative_without_its_factor_two():
    report = run_check(backward_pass(lambda y, t: (y - t) / y.numel()))
    finding = whole_network_finding(report)
    assert finding.kind == "factor_of_two" and finding.factor == pytest.approx(0.5)
    assert "2 (y - t), not (y - t)" in finding.message


def test_transposed_weight_gradient_non_square():
    report = run_check(backward_pass(mse_gradient, weight_gradient=lambda l, delta, a_prev: a_prev.T @ delta))
    weights = {f.tensor: f for f in report.findings if f.tensor and f.tensor.endswith("weight")}
    assert set(weights) == {"layers.0.weight", "layers.1.weight", "layers.2.weight"}
    assert {f.kind for f in weights.values()} == {"transposed"}
    assert all(row.ok for row in report.comparisons if row.name.endswith("bias"))
    assert "dL/dz.T @ a_prev" in weights["layers.0.weight"].message


def test_transposed_weight_gradient_square():
    report = run_check(
        backward_pass(mse_gradient, weight_gradient=lambda l, delta, a_prev: (delta.T @ a_prev).T),
        sizes=(5, 5, 5),
    )
    kinds = {f.tensor: f.kind for f in report.findings if f.tensor}
    assert kinds == {"layers.0.weight": "transposed", "layers.1.weight": "transposed"}


def test_wrong_activation_derivative_points_at_the_layer_where_it_enters():
    # sigmoid'(z) = a (1 - a); applying sigmoid to a again is the classic slip.
    def sigmoid_applied_twice(z, a):
        return torch.sigmoid(a) * (1 - torch.sigmoid(a))

    report = run_check(backward_pass(mse_gradient, derivative=sigmoid_applied_twice), activation="sigmoid")
    (finding,) = [f for f in report.findings if f.tensor is None]
    assert finding.kind == "backward_flow" and finding.layer == "layers.1"
    assert "activation derivative" in finding.message
    wrong = {row.name for row in report.comparisons if not row.ok}
    assert wrong == {"layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"}


def test_all_zero_gradient():
    def never_filled(l, delta, a_prev):
        weight = delta.T @ a_prev
        return torch.zeros_like(weight) if l == 2 else weight

    report = run_check(backward_pass(mse_gradient, weight_gradient=never_filled))
    kinds = {f.tensor: f.kind for f in report.findings if f.tensor}
    assert kinds == {"layers.1.weight": "all_zero"}
    assert "never filled in" in report.findings[-1].message


def test_one_layer_wrong_is_named():
    # Layer 2's weight gradient uses the previous pre-activation z instead of the activation a.
    def z_instead_of_a(model, l):
        return model.z[l - 1] if l == 2 else model.a[l - 1]

    report = run_check(backward_pass(mse_gradient, a_prev=z_instead_of_a), sizes=(6, 5, 4, 4, 3))
    (finding,) = [f for f in report.findings if f.tensor is None]
    assert finding.kind == "one_layer" and finding.layer == "layers.1"
    assert "Only layers.1 is wrong" in finding.message and "a_prev" in finding.message
    assert [row.name for row in report.comparisons if not row.ok] == ["layers.1.weight"]


def test_one_layer_off_by_a_mean_names_both_the_layer_and_the_factor():
    def bias_mean_in_last_layer(l, delta):
        return delta.mean(dim=0) if l == 3 else delta.sum(dim=0)

    report = run_check(backward_pass(mse_gradient, bias_gradient=bias_mean_in_last_layer))
    layer_finding = [f for f in report.findings if f.tensor is None][0]
    assert layer_finding.kind == "one_layer" and layer_finding.layer == "layers.2"
    (bias_finding,) = [f for f in report.findings if f.tensor == "layers.2.bias"]
    assert bias_finding.kind == "extra_mean" and bias_finding.factor == pytest.approx(1 / BATCH)


def test_every_layer_wrong_without_a_common_factor_points_at_the_loss_gradient():
    # cross-entropy gradient that forgets to subtract the one-hot labels
    report = run_check(backward_pass(lambda y, t: torch.softmax(y, dim=1) / len(t)), loss="cross_entropy")
    finding = whole_network_finding(report)
    assert finding.kind == "loss_gradient" and "softmax(y_pred) - onehot(y_true)" in finding.message


# ---------------------------------------------------------------- storage, layer order, calls
# (the course's own code, and code shaped like it, is in tests/test_gradcheck_user_code.py)


def test_a_gradient_scaled_by_a_fudge_factor_is_wrong_for_any_loss():
    def fudged(model, y_true, y_pred):
        return [(1e-9 * w, 1e-9 * b) for w, b in backward_pass(mse_gradient)(model, y_true, y_pred)]

    report = run_check(fudged)
    finding = whole_network_finding(report)
    assert report.verdict == "mismatch" and report.reduction is None
    assert finding.kind == "constant_factor" and finding.factor == pytest.approx(1e-9)
    assert "fudge factor" in finding.message


class OutputDefinedFirst(nn.Module):
    def __init__(self):
        super().__init__()
        self.out = nn.Linear(5, 3)
        self.hidden = nn.Linear(6, 5)

    def forward(self, x):
        self.x, self.h = x, torch.tanh(self.hidden(x))
        return self.out(self.h)


def test_layers_are_taken_in_the_order_the_forward_calls_them():
    def backward(model, y_true, y_pred):
        delta = mse_gradient(y_pred, y_true)
        hidden = (delta @ model.out.weight) * (1 - model.h**2)
        return [(hidden.T @ model.x, hidden.sum(0)), (delta.T @ model.h, delta.sum(0))]

    torch.manual_seed(0)
    report = check_mlp_backward(backward, torch.randn(BATCH, 6), torch.randn(BATCH, 3), model=OutputDefinedFirst())
    assert report.ok
    assert [row.name for row in report.comparisons] == ["hidden.weight", "hidden.bias", "out.weight", "out.bias"]


def test_gradients_stored_as_a_list_indexed_from_one_are_read_in_layer_order():
    def stored_in_lists(model, y_true, y_pred):
        pairs = backward_pass(mse_gradient)(model, y_true, y_pred)
        model.dL_dW = [None] + [w for w, _ in pairs]
        model.dL_db = [None] + [b for _, b in pairs]

    assert run_check(stored_in_lists).ok


def test_finite_differences_can_be_left_out():
    report = run_check(backward_pass(mse_gradient), finite_differences=False)
    assert report.ok and report.finite_differences is None


def test_a_backward_pass_that_needs_autograd_fails_loudly():
    def uses_autograd(model, y_true, y_pred):
        F.mse_loss(y_pred, y_true).backward()
        return [(layer.weight.grad, layer.bias.grad) for layer in model.layers]

    with pytest.raises(RuntimeError, match="does not require grad"):
        run_check(uses_autograd)


def test_check_mlp_backward_explains_bad_calls():
    torch.manual_seed(0)
    model = MLP([6, 5, 3])
    x, y = torch.randn(BATCH, 6), torch.randn(BATCH, 3)
    correct = backward_pass(mse_gradient)
    with pytest.raises(GdlabError, match="model=net"):
        check_mlp_backward(correct, x, y)
    with pytest.raises(GdlabError, match="no backward"):
        check_mlp_backward(nn.Sequential(nn.Linear(6, 3)), x, y)
    with pytest.raises(GdlabError, match="one_hot"):
        check_mlp_backward(correct, x, y.argmax(1), model=model, loss="mse")
    with pytest.raises(GdlabError, match="argmax"):
        check_mlp_backward(correct, x, y, model=model, loss="cross_entropy")
    with pytest.raises(GdlabError, match="'hinge'.*your own loss function"):
        check_mlp_backward(correct, x, y, model=model, loss="hinge")
    with pytest.raises(GdlabError, match="reduction must be 'mean' or 'sum'"):
        check_mlp_backward(correct, x, y, model=model, reduction="batchmean")
    with pytest.raises(GdlabError, match=r"returned None.*gradients="):
        check_mlp_backward(lambda model, y_true, y_pred: None, x, y, model=nn.Sequential(nn.Linear(6, 3)))
    with pytest.raises(GdlabError, match="2 nn.Linear layers, got 1"):
        check_mlp_backward(
            lambda model, y_true, y_pred: [(torch.ones(4, 6), torch.ones(4))], x, y,
            model=nn.Sequential(nn.Linear(6, 4), nn.Linear(4, 3)),
        )
    with pytest.raises(GdlabError, match=r"cannot be called as backward\(model, y_true, y_pred\)"):
        check_mlp_backward(lambda model, x, y_true, y_pred: None, x, y, model=model)
    with pytest.raises(GdlabError, match="not a place"):
        check_mlp_backward(correct, x, y, model=model, gradients="somewhere")


# ---------------------------------------------------------------- the report as text


def test_render_shows_every_tensor_the_verdicts_and_the_diagnosis():
    text = run_check(backward_pass(lambda y, t: 2 * (t - y) / y.numel()), sizes=(6, 5, 3)).render()
    for name in ("layers.0.weight", "layers.1.bias", "analytic vs autograd", "analytic vs finite differences"):
        assert name in text
    assert "MISMATCH" in text and "[sign_flipped]" in text and text.rstrip().endswith("Verdict: MISMATCH")
    assert text.count("Every gradient") == 1  # the per-tensor repeats are folded into one finding
    good = run_check(backward_pass(mse_gradient)).render()
    assert "MISMATCH" not in good and good.rstrip().endswith("Verdict: OK")
    summed = run_check(backward_pass(lambda y, t: 2 * (y - t))).render()
    assert summed.startswith("Loss: your gradient is for the summed loss")
    assert "MISMATCH" not in summed and "analytic vs autograd of the summed loss (36 x the loss given)" in summed
    assert summed.rstrip().endswith("Verdict: OTHER REDUCTION: right for the summed loss, not for the loss given")


# ---------------------------------------------------------------- where finite differences cannot be trusted


def test_a_relu_kink_within_eps_does_not_fail_a_correct_backward_pass():
    torch.manual_seed(0)
    net = MLP([3, 4, 2], activation="relu").double()
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    with torch.no_grad():  # put sample 0's first hidden pre-activation 1e-9 from the kink
        net.layers[0].bias[0] -= net.layers[0](x)[0, 0] - 1e-9
    raw = numerical_gradient(lambda b: F.mse_loss(net.layers[1](torch.relu(x @ net.layers[0].weight.T + b)), y),
                             [net.layers[0].bias])[0]
    exact = autograd_gradient(lambda b: F.mse_loss(net.layers[1](torch.relu(x @ net.layers[0].weight.T + b)), y),
                              [net.layers[0].bias])[0]
    assert not torch.allclose(raw, exact, rtol=1e-5, atol=1e-8)  # the kink really fools the difference quotient
    report = check_mlp_backward(net, x, y, loss="mse")
    assert report.ok
    (note,) = report.finite_differences.notes
    assert "kink" in note and "use autograd's value" in note


def test_a_forward_with_randomness_is_refused_with_the_fix():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2))
    x, y = torch.randn(6, 4), torch.randn(6, 2)
    with pytest.raises(GdlabError, match=r"different losses.*model\.eval\(\)"):
        check_mlp_backward(lambda model, y_true, y_pred: None, x, y, model=model)
