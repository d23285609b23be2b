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
    if loss == "mse":
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


def test_missing_batch_mean():
    report = run_check(backward_pass(lambda y, t: cross_entropy_gradient(y, t) * len(t)), loss="cross_entropy")
    finding = whole_network_finding(report)
    assert not report.ok
    assert finding.kind == "missing_mean" and finding.factor == pytest.approx(BATCH)
    assert "missing mean over the batch" in finding.message and f"{BATCH} is the batch size" in finding.message


def test_extra_batch_mean():
    report = run_check(backward_pass(lambda y, t: cross_entropy_gradient(y, t) / len(t)), loss="cross_entropy")
    finding = whole_network_finding(report)
    assert finding.kind == "extra_mean" and finding.factor == pytest.approx(1 / BATCH)
    assert "extra mean" in finding.message


def test_mse_divided_by_the_batch_only_misses_the_mean_over_outputs():
    report = run_check(backward_pass(lambda y, t: 2 * (y - t) / len(y)))
    finding = whole_network_finding(report)
    assert finding.kind == "missing_mean" and finding.factor == pytest.approx(3)
    assert "number of outputs" in finding.message and "y_pred.numel()" in finding.message


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


# ---------------------------------------------------------------- the course report's backward pass


class CourseNet(nn.Module):
    """The course's network layout: fc["1".."L"], activation dicts f/df, caches z/a keyed by layer."""

    def __init__(self, sizes):
        super().__init__()
        self.L = len(sizes) - 1
        self.fc = nn.ModuleDict({str(l): nn.Linear(sizes[l - 1], sizes[l]) for l in range(1, self.L + 1)})
        self.f = {l: torch.relu for l in range(1, self.L)} | {self.L: lambda z: z}
        self.df = {l: (lambda z: (z > 0).to(z.dtype)) for l in range(1, self.L)} | {
            self.L: lambda z: torch.ones_like(z)
        }
        self.z, self.a, self.dL_dw, self.dL_db = {}, {}, {}, {}

    def forward(self, x):
        self.a[0] = torch.flatten(x, 1)
        for l in range(1, self.L + 1):
            self.z[l] = self.fc[str(l)](self.a[l - 1])
            self.a[l] = self.f[l](self.z[l])
        return self.a[self.L]


def report_004_backpropagation(model, y_true, y_pred):
    """Verbatim from /work/shared/reference/004_backprop_and_sweep_report.txt."""
    with torch.no_grad():
        # MSE = (pred - true)^2
        # MSE_derived = 2(pred - true)
        # The slope of the loss function can be computed like this:
        grad_post_activation = 2 * (y_pred - y_true)

        # Compute gradient for each layer backwards from output layer to the first hidden layer
        for layer in range(model.L, 0, -1):

            # Slope of loss with respect to pre-activation of current layer
            grad_pre_activation = grad_post_activation * model.df[layer](model.z[layer])

            # Compute gradients of the loss with respect to the weights and biases of the current layer
            model.dL_dw[layer] = torch.matmul(grad_pre_activation.T, model.a[layer - 1])
            model.dL_db[layer] = torch.sum(grad_pre_activation, dim=0)

            # Compute the gradient of the loss with respect to the output of the previous layer
            grad_post_activation = torch.matmul(grad_pre_activation, model.fc[str(layer)].weight)


def course_inputs(seed=0, batch_size=BATCH):
    torch.manual_seed(seed)
    model = CourseNet([3 * 2 * 2, 16, 8, 2])
    x = torch.randn(batch_size, 3, 2, 2)
    y = F.one_hot(torch.randint(0, 2, (batch_size,)), 2).float()
    return model, x, y


def test_the_course_reports_backward_pass_is_missing_the_mean_over_all_elements():
    model, x, y = course_inputs()
    report = check_mlp_backward(report_004_backpropagation, x, y, model=model, loss="mse")
    assert not report.ok and not report.finite_differences.ok
    finding = whole_network_finding(report)
    # F.mse_loss averages over N x C = 12 x 2 = 24 elements; the code divides by nothing.
    assert finding.kind == "missing_mean" and finding.factor == pytest.approx(BATCH * 2)
    assert "missing mean" in finding.message and "number of elements of y_pred (12 x 2)" in finding.message
    assert "y_pred.numel()" in finding.message and "fudge factor" in finding.message
    assert [row.name for row in report.comparisons][:2] == ["fc.1.weight", "fc.1.bias"]


def test_the_course_reports_backward_pass_passes_once_the_mean_is_added():
    def fixed(model, y_true, y_pred):
        report_004_backpropagation(model, y_true, y_pred)
        for layer in model.dL_dw:
            model.dL_dw[layer] = model.dL_dw[layer] / y_pred.numel()
            model.dL_db[layer] = model.dL_db[layer] / y_pred.numel()

    model, x, y = course_inputs(seed=1)
    assert check_mlp_backward(fixed, x, y, model=model, loss="mse").ok


def test_the_reports_1e9_fudge_factor_does_not_make_the_gradient_pass():
    def fudged(model, y_true, y_pred):
        report_004_backpropagation(model, y_true, y_pred)
        return [(1e-9 * model.dL_dw[l], 1e-9 * model.dL_db[l]) for l in range(1, model.L + 1)]

    model, x, y = course_inputs()
    report = check_mlp_backward(fudged, x, y, model=model, loss="mse")
    finding = whole_network_finding(report)
    assert not report.ok
    assert finding.kind == "constant_factor" and finding.factor == pytest.approx(1e-9 * BATCH * 2)


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
    model, x, y = course_inputs()
    with pytest.raises(GdlabError, match="model=net"):
        check_mlp_backward(report_004_backpropagation, x, y)
    with pytest.raises(GdlabError, match="no backward"):
        check_mlp_backward(model, x, y)
    with pytest.raises(GdlabError, match="one_hot"):
        check_mlp_backward(report_004_backpropagation, x, y.argmax(1), model=model, loss="mse")
    with pytest.raises(GdlabError, match="argmax"):
        check_mlp_backward(report_004_backpropagation, x, y, model=model, loss="cross_entropy")
    with pytest.raises(GdlabError, match="'hinge'"):
        check_mlp_backward(report_004_backpropagation, x, y, model=model, loss="hinge")
    with pytest.raises(GdlabError, match="returned None.*dL_dW"):
        check_mlp_backward(lambda model, y_true, y_pred: None, x, y, model=nn.Sequential(nn.Flatten(), nn.Linear(12, 2)))
    with pytest.raises(GdlabError, match="2 nn.Linear layers, got 1"):
        check_mlp_backward(
            lambda model, y_true, y_pred: [(torch.ones(4, 12), torch.ones(4))], x, y,
            model=nn.Sequential(nn.Flatten(), nn.Linear(12, 4), nn.Linear(4, 2)),
        )


# ---------------------------------------------------------------- the report as text


def test_render_shows_every_tensor_the_verdicts_and_the_diagnosis():
    model, x, y = course_inputs()
    text = str(check_mlp_backward(report_004_backpropagation, x, y, model=model, loss="mse"))
    for name in ("fc.1.weight", "fc.3.bias", "analytic vs autograd", "analytic vs finite differences"):
        assert name in text
    assert "MISMATCH" in text and "[missing_mean]" in text and text.rstrip().endswith("Verdict: MISMATCH")
    assert text.count("Every gradient") == 1  # the per-tensor repeats are folded into one finding
    good = run_check(backward_pass(mse_gradient)).render()
    assert "MISMATCH" not in good and good.rstrip().endswith("Verdict: OK")


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
