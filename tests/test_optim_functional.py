"""The functional rules: the float path against torch's own functional API, and
the tensor path (K stacked configurations in one call) against the float path."""

import importlib

import pytest
import torch

from gdlab.optim import functional
from gdlab.optim.functional import TENSOR_PATH_RTOL



SHAPES = [(6, 5), (6,)]
K = 4

# Per rule: state lists in call order (built for a list of parameters), then
# one hyperparameter set per stacked configuration, then flag settings.
def sgd_state(params):
    return [[None] * len(params)]


def adam_state(params):
    return [[torch.zeros_like(p) for p in params] for _ in range(3)] + [[torch.tensor(0.0) for _ in params]]


def rmsprop_state(params):
    return [[torch.zeros_like(p) for p in params] for _ in range(3)] + [[torch.tensor(0.0) for _ in params]]


def adagrad_state(params):
    return [[torch.full_like(p, 0.1) for p in params], [torch.tensor(0.0) for _ in params]]


ADAM_HYPERPARAMETERS = {
    "lr": [1e-3, 1e-2, 3e-3, 1e-1],
    "beta1": [0.9, 0.8, 0.0, 0.5],
    "beta2": [0.999, 0.99, 0.9, 0.5],
    "weight_decay": [0.0, 0.01, 0.1, 0.001],
    "eps": [1e-8, 1e-6, 1e-8, 1e-3],
}
ADAM_FLAGS = [{"amsgrad": False, "maximize": False}, {"amsgrad": True, "maximize": True}]

RULES = {
    # The third SGD configuration has momentum 0 with dampening: torch ignores
    # dampening without momentum, and so must its slice of a stacked update.
    "sgd": (sgd_state, {
        "lr": [0.1, 0.01, 0.05, 0.2],
        "weight_decay": [0.0, 0.01, 0.1, 0.001],
        "momentum": [0.9, 0.5, 0.0, 0.99],
        "dampening": [0.0, 0.1, 0.3, 0.0],
    }, [{"nesterov": False, "maximize": False}]),
    "sgd_nesterov": (sgd_state, {
        "lr": [0.1, 0.01, 0.05, 0.2],
        "weight_decay": [0.0, 0.01, 0.1, 0.001],
        "momentum": [0.9, 0.5, 0.1, 0.99],
        "dampening": [0.0, 0.0, 0.0, 0.0],
    }, [{"nesterov": True, "maximize": True}]),
    "adam": (adam_state, ADAM_HYPERPARAMETERS, ADAM_FLAGS),
    "adamw": (adam_state, ADAM_HYPERPARAMETERS, ADAM_FLAGS),
    "rmsprop": (rmsprop_state, {
        "lr": [1e-3, 1e-2, 3e-3, 1e-1],
        "alpha": [0.99, 0.9, 0.5, 0.3],  # alpha = 0 with centered is sqrt(g² - g²): NaN in torch too
        "eps": [1e-8, 1e-6, 1e-8, 1e-3],
        "weight_decay": [0.0, 0.01, 0.1, 0.001],
        "momentum": [0.9, 0.0, 0.5, 0.99],
    }, [{"centered": False, "maximize": False}, {"centered": True, "maximize": True}]),
    "adagrad": (adagrad_state, {
        "lr": [1e-3, 1e-2, 3e-3, 1e-1],
        "weight_decay": [0.0, 0.01, 0.1, 0.001],
        "lr_decay": [0.0, 0.01, 0.1, 1.0],
        "eps": [1e-10, 1e-6, 1e-8, 1e-3],
    }, [{"maximize": False}, {"maximize": True}]),
}


def rule_function(name):
    return getattr(functional, name.removesuffix("_nesterov"))


CASES = [pytest.param(name, flags, id=f"{name}-{flags}") for name, (_, _, all_flags) in RULES.items() for flags in all_flags]


def run_stacked_and_sliced(name, flags, as_tensor, steps=100):
    """Run K configurations stacked (hyperparameters as tensors, via ``as_tensor``) and
    each alone (float hyperparameters) on the same gradients; return both results."""
    make_state, hyperparameters, _ = RULES[name]
    rule = rule_function(name)
    generator = torch.Generator().manual_seed(0)
    stacked = [torch.randn(K, *shape, generator=generator, dtype=torch.float64) for shape in SHAPES]
    alone = [[param[k].clone() for param in stacked] for k in range(K)]
    stacked_state = make_state(stacked)
    alone_states = [make_state(params) for params in alone]
    tensor_hyperparameters = {key: as_tensor(torch.tensor(values, dtype=torch.float64)) for key, values in hyperparameters.items()}
    for _ in range(steps):
        grads = [torch.randn(K, *shape, generator=generator, dtype=torch.float64) for shape in SHAPES]
        rule(stacked, grads, *stacked_state, **tensor_hyperparameters, **flags)
        for k in range(K):
            rule(alone[k], [grad[k] for grad in grads], *alone_states[k],
                 **{key: values[k] for key, values in hyperparameters.items()}, **flags)
    return stacked, alone


@pytest.mark.parametrize("name, flags", CASES)
def test_each_slice_of_a_stacked_update_follows_its_own_hyperparameters(name, flags):
    stacked, alone = run_stacked_and_sliced(name, flags, as_tensor=lambda t: t.reshape(K, 1, 1))
    for k in range(K):
        for index, param in enumerate(stacked):
            expected = alone[k][index]
            difference = (param[k] - expected).abs().max().item()
            assert difference <= TENSOR_PATH_RTOL * max(1.0, expected.abs().max().item()), (
                f"{name} {flags}: configuration {k}, parameter {index} off by {difference:.3g}"
            )


def test_the_slices_really_differ_so_the_comparison_means_something():
    stacked, _ = run_stacked_and_sliced("adam", ADAM_FLAGS[0], as_tensor=lambda t: t, steps=5)
    initial = torch.randn(K, *SHAPES[0], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    moved = [(stacked[0][k] - initial[k]).abs().max().item() for k in range(K)]
    assert len(set(moved)) == K


@pytest.mark.parametrize("shape", [(K,), (K, 1), (K, 1, 1)])
def test_per_configuration_shapes_are_interchangeable(shape):
    reference, _ = run_stacked_and_sliced("rmsprop", {"centered": True, "maximize": False}, lambda t: t, steps=10)
    result, _ = run_stacked_and_sliced("rmsprop", {"centered": True, "maximize": False}, lambda t: t.reshape(shape), steps=10)
    assert all(torch.equal(a, b) for a, b in zip(result, reference))


def test_a_0_dim_tensor_hyperparameter_applies_to_every_configuration():
    params = [torch.ones(K, 3, dtype=torch.float64)]
    functional.sgd(params, [torch.ones(K, 3, dtype=torch.float64)], [], lr=torch.tensor(0.5, dtype=torch.float64),
                   weight_decay=0.0, momentum=0.0, dampening=0.0, nesterov=False, maximize=False)
    assert torch.equal(params[0], torch.full((K, 3), 0.5, dtype=torch.float64))


def test_a_hyperparameter_that_is_not_one_per_configuration_is_refused():
    params = [torch.ones(K, 3)]
    with pytest.raises(ValueError, match=r"got shape \(3,\) for a parameter of shape \(4, 3\)"):
        functional.sgd(params, [torch.ones(K, 3)], [], lr=torch.full((3,), 0.1), weight_decay=0.0,
                       momentum=0.0, dampening=0.0, nesterov=False, maximize=False)


# The float path against torch's own functional API (foreach=False): same
# lists in, same tensors out, bit for bit.
TORCH_FUNCTIONAL = {
    "sgd": ("torch.optim.sgd", "sgd", {"lr": 0.05, "weight_decay": 0.01, "momentum": 0.9, "dampening": 0.0, "nesterov": True, "maximize": True}),
    "adam": ("torch.optim.adam", "adam", {"lr": 0.01, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.01, "eps": 1e-8, "amsgrad": True, "maximize": True}),
    "adamw": ("torch.optim.adamw", "adamw", {"lr": 0.01, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.1, "eps": 1e-8, "amsgrad": True, "maximize": False}),
    "rmsprop": ("torch.optim.rmsprop", "rmsprop", {"lr": 0.01, "alpha": 0.9, "eps": 1e-8, "weight_decay": 0.01, "momentum": 0.9, "centered": True, "maximize": True}),
    "adagrad": ("torch.optim.adagrad", "adagrad", {"lr": 0.1, "weight_decay": 0.01, "lr_decay": 0.01, "eps": 1e-10, "maximize": True}),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", TORCH_FUNCTIONAL)
def test_float_path_equals_torch_functional_api(name, dtype):
    module, function, hyperparameters = TORCH_FUNCTIONAL[name]
    torch_rule = getattr(importlib.import_module(module), function)
    make_state = RULES[name][0]
    generator = torch.Generator().manual_seed(1)
    params = [torch.randn(*shape, generator=generator, dtype=dtype) for shape in SHAPES]
    reference_params = [param.clone() for param in params]
    state, reference_state = make_state(params), make_state(reference_params)
    for step in range(60):
        grads = [torch.randn(*shape, generator=generator, dtype=dtype) for shape in SHAPES]
        rule_function(name)(params, grads, *state, **hyperparameters)
        torch_rule(reference_params, grads, *reference_state, foreach=False, **hyperparameters)
        for param, reference in zip(params, reference_params):
            assert torch.equal(param, reference), f"{name} {dtype}: differs after step {step + 1}"


# 0-dim tensor hyperparameters (what torch's classes hand their single-tensor path for a tensor
# lr or betas): torch's own arithmetic on them, in their dtype (float32 here, float64 params).
ZERO_DIM = {"sgd": ("lr",), "adam": ("lr", "beta1", "beta2"), "adamw": ("lr", "beta1", "beta2"),
            "rmsprop": ("lr",), "adagrad": ("lr",)}


def run_against_torch(name, dtype, hyperparameters, steps=30):
    module, function, _ = TORCH_FUNCTIONAL[name]
    torch_rule = getattr(importlib.import_module(module), function)
    make_state = RULES[name][0]
    generator = torch.Generator().manual_seed(2)
    params = [torch.randn(*shape, generator=generator, dtype=dtype) for shape in SHAPES]
    reference_params = [param.clone() for param in params]
    state, reference_state = make_state(params), make_state(reference_params)
    for _ in range(steps):
        grads = [torch.randn(*shape, generator=generator, dtype=dtype) for shape in SHAPES]
        rule_function(name)(params, grads, *state, **hyperparameters)
        torch_rule(reference_params, grads, *reference_state, foreach=False, **hyperparameters)
    return params, reference_params


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
@pytest.mark.parametrize("name", TORCH_FUNCTIONAL)
def test_0_dim_tensor_hyperparameters_follow_torchs_tensor_path(name, dtype):
    hyperparameters = dict(TORCH_FUNCTIONAL[name][2])
    if name == "adam" and dtype.is_complex:
        hyperparameters["amsgrad"] = True  # torch views the maxima as real too
    as_tensors = {key: torch.tensor(value) if key in ZERO_DIM[name] else value for key, value in hyperparameters.items()}
    params, reference_params = run_against_torch(name, dtype, as_tensors)
    assert all(torch.equal(a, b) for a, b in zip(params, reference_params))
    # Where torch computes with the tensor (a step size from lr, bias corrections from betas), its
    # float32 arithmetic shows: floats give another result. SGD and RMSprop use lr as it is.
    if name not in ("sgd", "rmsprop") and not dtype.is_complex:
        float_params, _ = run_against_torch(name, dtype, {k: v.item() if isinstance(v, torch.Tensor) else v for k, v in as_tensors.items()})
        assert not all(torch.equal(a, b) for a, b in zip(params, float_params))


@pytest.mark.parametrize("name", TORCH_FUNCTIONAL)
def test_complex_parameters_follow_torch(name):
    """Adam, AdamW, RMSprop and Adagrad update view_as_real views, as torch; SGD the complex tensors."""
    params, reference_params = run_against_torch(name, torch.complex64, dict(TORCH_FUNCTIONAL[name][2]))
    assert all(torch.equal(a, b) for a, b in zip(params, reference_params))


def test_adagrad_sparse_gradients_follow_torch():
    """Coalesced, only the named rows updated, as torch's sparse branch; weight decay refused as there."""
    from torch.optim.adagrad import adagrad as torch_adagrad

    param = torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(4, 3)
    reference = param.clone()
    sums, reference_sums = [torch.full_like(param, 0.1)], [torch.full_like(param, 0.1)]
    steps, reference_steps = [torch.tensor(0.0)], [torch.tensor(0.0)]
    hyperparameters = {"lr": 0.1, "weight_decay": 0.0, "lr_decay": 0.01, "eps": 1e-10, "maximize": False}
    for step in range(5):
        indices = torch.tensor([[0, 2, 2, 3 * (step % 2)]])  # a repeated row, uncoalesced; never row 1
        grad = torch.sparse_coo_tensor(indices, torch.randn(4, 3, dtype=torch.float64), (4, 3), check_invariants=True)
        functional.adagrad([param], [grad], sums, steps, **hyperparameters)
        torch_adagrad([reference], [grad], reference_sums, reference_steps, foreach=False, **hyperparameters)
    assert torch.equal(param, reference) and torch.equal(sums[0], reference_sums[0])
    assert torch.equal(param[1], torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(4, 3)[1])  # row 1: never named
    with pytest.raises(RuntimeError, match="weight_decay option is not compatible with sparse gradients"):
        functional.adagrad([param], [grad], sums, steps, **{**hyperparameters, "weight_decay": 0.1})
