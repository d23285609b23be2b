"""gdlab.backprop: the hand-written backward pass equals autograd, and says clearly when misused."""

import zlib

import pytest
import torch
import torch.nn.functional as F

import gdlab
from gdlab.backprop import ACTIVATIONS, LOSSES, MLP
from gdlab.errors import GdlabError

ACTIVATION_NAMES = ["relu", "sigmoid", "tanh", "leaky_relu", "identity"]
LOSS_NAMES = ["mse", "cross_entropy"]
# Input of shape (N, 2, 3): forward must flatten it to 6 features.
DEPTHS = {"no hidden layer": [6, 4], "one hidden": [6, 5, 4], "three hidden": [6, 7, 5, 3, 4]}


def targets(loss, batch_size, outputs, dtype, generator):
    if loss == "mse":
        return torch.randn(batch_size, outputs, dtype=dtype, generator=generator)
    return torch.randint(0, outputs, (batch_size,), generator=generator)


def autograd_pairs(net, x, y, loss):
    y_pred = gdlab.models.MLP.forward(net, x)
    value = F.mse_loss(y_pred, y) if loss == "mse" else F.cross_entropy(y_pred, y)
    flat = torch.autograd.grad(value, list(net.parameters()))
    return list(zip(flat[0::2], flat[1::2]))


def hand_pairs(net, x, y, loss):
    with torch.no_grad():
        y_pred = net(x.detach())
        return net.backward(y, y_pred, loss=loss)


def assert_pairs_close(pairs, reference, rtol, atol_scale):
    assert len(pairs) == len(reference)
    for (dW, db), (ref_W, ref_b) in zip(pairs, reference):
        for ours, theirs in ((dW, ref_W), (db, ref_b)):
            assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
            scale = theirs.abs().max().item()
            torch.testing.assert_close(ours, theirs, rtol=rtol, atol=atol_scale * scale)


@pytest.mark.parametrize("depth", DEPTHS, ids=list(DEPTHS))
@pytest.mark.parametrize("batch_size", [1, 7])
@pytest.mark.parametrize("loss", LOSS_NAMES)
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_backward_equals_autograd_float64(activation, loss, batch_size, depth):
    generator = torch.Generator().manual_seed(zlib.crc32(f"{activation}{loss}{batch_size}{depth}".encode()))
    torch.manual_seed(generator.initial_seed())
    sizes = DEPTHS[depth]
    net = MLP(sizes, activation=activation).double()
    x = torch.randn(batch_size, 2, 3, dtype=torch.float64, generator=generator)
    y = targets(loss, batch_size, sizes[-1], torch.float64, generator)
    # 1e-9 relative, with an absolute floor 1e-12 x the tensor's scale for entries
    # that are tiny through cancellation.
    assert_pairs_close(hand_pairs(net, x, y, loss), autograd_pairs(net, x, y, loss), 1e-9, 1e-12)


# float32: both sides round differently in their reductions; the gap measured over
# these cases is below 2e-5 relative per element and 4e-7 of the tensor's scale.
FLOAT32_RTOL, FLOAT32_ATOL_SCALE = 1e-4, 1e-5


@pytest.mark.parametrize("loss", LOSS_NAMES)
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_backward_equals_autograd_float32_within_stated_tolerance(activation, loss):
    generator = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    net = MLP([6, 9, 8, 4], activation=activation)
    x = torch.randn(16, 6, generator=generator)
    y = targets(loss, 16, 4, torch.float32, generator)
    pairs = hand_pairs(net, x, y, loss)
    assert all(t.dtype == torch.float32 for pair in pairs for t in pair)
    assert_pairs_close(pairs, autograd_pairs(net, x, y, loss), FLOAT32_RTOL, FLOAT32_ATOL_SCALE)


def test_course_sized_network_matches_autograd():
    torch.manual_seed(0)
    net = MLP([784, 100, 100, 10], activation="relu").double()
    x = torch.rand(64, 1, 28, 28, dtype=torch.float64)
    y = torch.randint(0, 10, (64,))
    assert_pairs_close(hand_pairs(net, x, y, "cross_entropy"), autograd_pairs(net, x, y, "cross_entropy"), 1e-9, 1e-12)


def test_backward_uses_no_autograd():
    torch.manual_seed(1)
    net = MLP([6, 5, 4], activation="tanh").double().requires_grad_(False)
    x = torch.randn(3, 6, dtype=torch.float64)
    y = torch.randn(3, 4, dtype=torch.float64)
    assert not x.requires_grad
    with torch.no_grad():
        pairs = net.backward(y, net(x), loss="mse")
    for dW, db in pairs:
        assert dW.grad_fn is None and db.grad_fn is None
    assert all(p.grad is None for p in net.parameters())
    net.requires_grad_(True)
    assert_pairs_close(pairs, autograd_pairs(net, x, y, "mse"), 1e-9, 1e-12)


def test_backward_after_a_forward_with_grad_enabled_builds_no_graph():
    torch.manual_seed(2)
    net = MLP([6, 5, 4]).double()
    x = torch.randn(3, 6, dtype=torch.float64)
    y_pred = net(x)
    assert y_pred.requires_grad
    pairs = net.backward(torch.zeros(3, 4, dtype=torch.float64), y_pred, loss="mse")
    assert all(not t.requires_grad for pair in pairs for t in pair)


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_same_parameters_and_outputs_as_the_training_model(activation):
    torch.manual_seed(4)
    model = gdlab.models.MLP([6, 5, 5, 3], activation=activation)
    net = MLP([6, 5, 5, 3], activation=activation)
    net.load_state_dict(model.state_dict())
    assert list(net.state_dict()) == list(model.state_dict())
    x = torch.randn(10, 2, 3) * 3
    assert torch.equal(net(x), model(x))


def test_forward_caches_z_and_a_by_layer():
    torch.manual_seed(5)
    net = MLP([6, 5, 4, 3], activation="sigmoid").double()
    x = torch.randn(2, 2, 3, dtype=torch.float64)
    y_pred = net(x)
    assert len(net.z) == len(net.a) == 4
    assert torch.equal(net.a[0], x.flatten(1)) and torch.equal(net.z[0], x.flatten(1))
    for l, layer in enumerate(net.layers, start=1):
        assert torch.equal(net.z[l], layer(net.a[l - 1]))
    assert torch.equal(net.a[1], torch.sigmoid(net.z[1]))
    assert torch.equal(net.a[2], torch.sigmoid(net.z[2]))
    assert torch.equal(net.a[3], net.z[3]) and net.a[3] is y_pred


def test_leaky_relu_uses_torch_default_slope():
    z = torch.tensor([-2.0, -0.5, 0.0, 3.0], dtype=torch.float64)
    assert torch.equal(ACTIVATIONS["leaky_relu"].forward(z), torch.nn.LeakyReLU()(z))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_each_activation_derivative_matches_autograd_including_the_kink(name, dtype):
    z = torch.cat([torch.linspace(-4, 4, 41, dtype=dtype), torch.zeros(1, dtype=dtype)]).requires_grad_(True)
    activation = ACTIVATIONS[name]
    a = activation.forward(z)
    (expected,) = torch.autograd.grad(a.sum(), z)
    derivative = activation.derivative(z.detach(), a.detach())
    assert derivative.dtype == dtype
    # tanh' = 1 - a² cancels near |z| = 4, where torch's kernel rounds differently:
    # rounding-level tolerances; a wrong value at the kink z = 0 would be off by 1.
    tolerance = dict(rtol=1e-12, atol=1e-15) if dtype == torch.float64 else dict(rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(derivative, expected, **tolerance)


def test_losses_match_torch_and_cross_entropy_is_stable_for_huge_logits():
    generator = torch.Generator().manual_seed(6)
    logits = torch.randn(5, 4, dtype=torch.float64, generator=generator) * 1e4
    labels = torch.randint(0, 4, (5,), generator=generator)
    value = LOSSES["cross_entropy"].forward(logits, labels)
    assert torch.isfinite(value)
    torch.testing.assert_close(value, F.cross_entropy(logits, labels), rtol=1e-12, atol=0)
    gradient = LOSSES["cross_entropy"].gradient(logits, labels)
    leaf = logits.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(F.cross_entropy(leaf, labels), leaf)
    assert torch.isfinite(gradient).all()
    torch.testing.assert_close(gradient, expected, rtol=1e-12, atol=1e-15)
    y, t = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    torch.testing.assert_close(LOSSES["mse"].forward(y, t), F.mse_loss(y, t), rtol=1e-14, atol=0)


def test_backward_before_forward_is_a_clear_error():
    net = MLP([4, 3])
    with pytest.raises(GdlabError, match="before forward.*y_pred = net\\(x\\)"):
        net.backward(torch.zeros(2, 3), torch.zeros(2, 3))


def test_unknown_loss_names_the_value_and_the_choices():
    net = MLP([4, 3])
    y_pred = net(torch.zeros(2, 4))
    with pytest.raises(GdlabError, match="'hinge'.*'mse'.*'cross_entropy'"):
        net.backward(torch.zeros(2, 3), y_pred, loss="hinge")


def test_mse_target_of_the_wrong_shape_suggests_one_hot():
    net = MLP([4, 3])
    y_pred = net(torch.zeros(2, 4))
    with pytest.raises(GdlabError, match=r"\(2, 3\).*\(2,\).*one_hot"):
        net.backward(torch.tensor([0, 1]), y_pred, loss="mse")


def test_cross_entropy_needs_integer_labels_in_range():
    net = MLP([4, 3])
    y_pred = net(torch.zeros(2, 4))
    with pytest.raises(GdlabError, match="integer class labels.*argmax"):
        net.backward(torch.zeros(2, 3), y_pred, loss="cross_entropy")
    with pytest.raises(GdlabError, match="0..2.*from 0 to 3"):
        net.backward(torch.tensor([0, 3]), y_pred, loss="cross_entropy")


def test_y_pred_from_another_forward_is_refused():
    net = MLP([4, 3])
    y_pred = net(torch.zeros(2, 4))
    net(torch.ones(2, 4))
    with pytest.raises(GdlabError, match="not the output of the last forward"):
        net.backward(torch.zeros(2, 3), y_pred)
    with pytest.raises(GdlabError, match=r"shape \(5, 3\).*\(2, 3\)"):
        net.backward(torch.zeros(5, 3), torch.zeros(5, 3))


def test_unknown_activation_is_refused_by_the_shared_constructor():
    with pytest.raises(GdlabError, match="'gelu'"):
        MLP([4, 3], activation="gelu")


# ---------------------------------------------------------------- one of each: one table, one backward pass


def test_one_activation_table_whose_module_runs_the_declared_function():
    assert gdlab.models.ACTIVATIONS is ACTIVATIONS
    assert list(ACTIVATIONS) == ACTIVATION_NAMES
    z = torch.cat([torch.linspace(-5, 5, 101, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])
    for name, activation in ACTIVATIONS.items():
        assert torch.equal(activation.module()(z), activation.forward(z)), name


def labels_and_targets(name, scores, generator):
    """Labels for a loss on labels; for one on targets shaped like the scores, the labels' one-hot rows."""
    labels = torch.randint(0, scores.shape[1], (scores.shape[0],), generator=generator)
    if LOSSES[name].targets == gdlab.backprop.losses.LABELS:
        return labels, labels
    return labels, F.one_hot(labels, scores.shape[1]).to(scores.dtype)


@pytest.mark.parametrize("name", list(LOSSES))
def test_a_loss_name_means_one_loss_in_training_backward_and_the_gradient_check(name):
    generator = torch.Generator().manual_seed(8)
    torch.manual_seed(8)
    net = MLP([6, 5, 3], activation="tanh").double()
    x = torch.randn(10, 6, dtype=torch.float64, generator=generator)
    scores = gdlab.models.MLP.forward(net, x)
    labels, target = labels_and_targets(name, scores, generator)
    declared = LOSSES[name].forward(scores, target)
    # What a study trains with on its labels is the declared loss of their target.
    assert torch.equal(gdlab.train.get_loss(name)(scores, labels), declared)
    # The backward pass differentiates that same loss.
    flat = torch.autograd.grad(declared, list(net.parameters()))
    assert_pairs_close(hand_pairs(net, x, target, name), list(zip(flat[0::2], flat[1::2])), 1e-9, 1e-12)
    # And the gradient check holds it to that loss.
    assert gdlab.gradcheck.check_mlp_backward(net, x, target, loss=name).ok


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_cross_entropy_gradient_for_stacked_members_is_each_members_own(dtype):
    generator = torch.Generator().manual_seed(9)
    scores = torch.randn(3, 7, 5, dtype=dtype, generator=generator) * 4
    labels = torch.randint(0, 5, (7,), generator=generator)
    losses, gradients = gdlab.backprop.cross_entropy_and_gradient(scores, labels)
    assert losses.shape == (3,) and gradients.shape == scores.shape
    tolerance = dict(rtol=1e-12, atol=1e-15) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-7)
    for member in range(3):
        leaf = scores[member].clone().requires_grad_(True)
        loss = F.cross_entropy(leaf, labels)
        (expected,) = torch.autograd.grad(loss, leaf)
        torch.testing.assert_close(losses[member], loss.detach(), **tolerance)
        torch.testing.assert_close(gradients[member], expected, **tolerance)
        # One member alone (K = 1, plain (N, C) scores) gets exactly its slice of the stacked result.
        alone_loss, alone_gradient = gdlab.backprop.cross_entropy_and_gradient(scores[member], labels)
        assert torch.equal(alone_gradient, gradients[member]) and torch.equal(alone_loss, losses[member])


def test_one_backward_pass_for_k_stacked_networks_and_for_one():
    torch.manual_seed(10)
    nets = [MLP([6, 5, 4, 3], activation="sigmoid").double() for _ in range(3)]
    x = torch.randn(8, 6, dtype=torch.float64)
    score_gradients = torch.randn(3, 8, 3, dtype=torch.float64)  # any dL/dscores: the pass is linear in it
    for net in nets:
        net(x)
    stacked = gdlab.backprop.mlp_backward(
        weights=[torch.stack([net.layers[l].weight.detach() for net in nets]) for l in range(3)],
        layer_inputs=[x] + [torch.stack([net.a[l].detach() for net in nets]) for l in (1, 2)],
        pre_activations=[torch.stack([net.z[l].detach() for net in nets]) for l in (1, 2)],
        score_gradients=score_gradients,
        derivative=ACTIVATIONS["sigmoid"].derivative,
    )
    for member, net in enumerate(nets):
        expected = torch.autograd.grad(net.a[-1], list(net.parameters()), score_gradients[member])
        for gradient, own in zip(stacked, expected):
            torch.testing.assert_close(gradient[member], own, rtol=1e-12, atol=1e-14)


def test_backward_returns_new_tensors_every_call():
    # The stacked trainer hands the pass buffers to reuse; a user's gradients must not change under them.
    torch.manual_seed(11)
    net = MLP([4, 3, 2]).double()
    first = net.backward(torch.zeros(5, 2, dtype=torch.float64), net(torch.randn(5, 4, dtype=torch.float64)))
    kept = [tensor.clone() for pair in first for tensor in pair]
    net.backward(torch.ones(5, 2, dtype=torch.float64), net(torch.randn(5, 4, dtype=torch.float64)))
    assert all(torch.equal(tensor, copy) for tensor, copy in zip((t for pair in first for t in pair), kept))
