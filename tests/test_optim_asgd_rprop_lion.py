"""ASGD and Rprop are bit-for-bit torch.optim's foreach=False implementation; Lion
(which torch lacks) is its paper's equations and bit-for-bit the lion-pytorch package.

ASGD and Rprop: two copies of one small MLP train side by side, each from its own
forward and backward pass, one stepped by gdlab's class and one by torch's, over
flag combinations, float32 and float64, two param groups, an LR scheduler,
closures and a parameter without gradient; state dicts go both ways; torch's own
test inputs (``optim_db``: kwargs, tensor lr, complex parameters, error inputs)
give torch's results and errors. Lion: Algorithm 2 of Chen et al. 2023 written
out below in plain Python floats, and the independent ``lion_pytorch.Lion``.
For all three, the declaration's ``init``/``update`` equal the class, and K
stacked configurations with tensor hyperparameters equal each one run alone.
"""

import copy
import functools
import importlib.util
import inspect
import io
import itertools
import os
import re
import sys
import types
import unittest

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gdlab.models import MLP
from gdlab.optim import registry
from gdlab.optim.functional import TENSOR_PATH_RTOL
from gdlab.optim.rules import asgd, lion, rprop


def _load_common_optimizers():
    """torch's test database, imported without leaving torch's testing settings behind (as
    tests/test_optim_db.py does): importing it freezes ``torch.backends`` flags and sets an
    environment variable for the whole process, and its ``common_utils`` needs ``expecttest``
    only as the base of torch's own TestCase."""
    if importlib.util.find_spec("expecttest") is None:
        stand_in = types.ModuleType("expecttest")
        stand_in.TestCase = unittest.TestCase
        stand_in.ACCEPT = False
        sys.modules["expecttest"] = stand_in
    frozen = torch.backends.flags_frozen()
    environment = dict(os.environ)
    from torch.testing._internal import common_optimizers

    if not frozen:
        vars(torch.backends)["__allow_nonbracketed_mutation_flag"] = True
    for key in set(os.environ) - set(environment):
        del os.environ[key]
    return common_optimizers


common_optimizers = _load_common_optimizers()
OptimizerErrorEnum = common_optimizers.OptimizerErrorEnum
optim_db = common_optimizers.optim_db

STEPS = 32
DTYPES = [torch.float32, torch.float64]


def combinations(**axes):
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


def case_id(flags):
    return "-".join(f"{key}={value}" for key, value in flags.items())


# --------------------------------------------------------------------------------------------
# ASGD and Rprop against torch: a small MLP trained side by side.

ASGD_FLAGS = combinations(
    weight_decay=[0.0, 0.01], maximize=[False, True], t0=[1e6, 5.0], lambd=[1e-4, 0.05]
)
RPROP_FLAGS = combinations(
    maximize=[False, True], etas=[(0.5, 1.2), (0.3, 1.5)], step_sizes=[(1e-6, 50), (1e-4, 0.02)]
)


def asgd_first_group(config):
    return {"lr": config["lr"] * 0.3, "alpha": 0.6, "t0": 3.0, "weight_decay": 0.05 if config["weight_decay"] else 0.0}


def rprop_first_group(config):
    return {"lr": 0.003, "etas": (0.4, 1.3), "step_sizes": (1e-5, 1.0)}


# name: (gdlab class, torch class, base lr, flag combinations, the first group's own hyperparameters)
TORCH_RULES = {
    "ASGD": (asgd.ASGD, torch.optim.ASGD, 0.05, ASGD_FLAGS, asgd_first_group),
    "Rprop": (rprop.Rprop, torch.optim.Rprop, 0.01, RPROP_FLAGS, rprop_first_group),
}


def make_run(optimizer_class, config, first_group, model, schedule):
    """An optimizer over two param groups (the first layer with its own hyperparameters;
    the rest plus a parameter that never gets a gradient) and its LR schedule."""
    spare = nn.Parameter(torch.ones(5, dtype=model.layers[0].weight.dtype))
    first, *rest = model.layers
    groups = [
        {"params": list(first.parameters()), **first_group},
        {"params": [param for layer in rest for param in layer.parameters()] + [spare]},
    ]
    optimizer = optimizer_class(groups, **copy.deepcopy(config))
    return optimizer, schedule(optimizer), spare


def step_lr(optimizer):
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.5)


def train_side_by_side(optimizer_class, reference_class, config, first_group, dtype, steps=STEPS):
    """Both optimizers step through closures on the same batches; parameters and the
    closures' losses must agree bit for bit after every step."""
    torch.manual_seed(0)
    model = MLP([8, 12, 12, 3], activation="tanh").to(dtype)
    reference_model = copy.deepcopy(model)
    inputs = torch.randn(96, 8, dtype=dtype)
    labels = torch.randint(0, 3, (96,))
    run = make_run(optimizer_class, config, first_group, model, step_lr)
    reference_run = make_run(reference_class, config, first_group, reference_model, step_lr)
    for step in range(steps):
        batch = slice(step * 16 % 96, step * 16 % 96 + 16)
        losses = []
        for net, (optimizer, scheduler, _) in ((model, run), (reference_model, reference_run)):
            def closure(net=net, optimizer=optimizer):
                optimizer.zero_grad()
                loss = F.cross_entropy(net(inputs[batch]), labels[batch])
                loss.backward()
                return loss

            losses.append(optimizer.step(closure))
            scheduler.step()
        assert torch.equal(losses[0], losses[1]), f"step {step + 1}: the closures' losses differ"
        for (name, param), reference in zip(model.named_parameters(), reference_model.parameters()):
            assert torch.equal(param, reference), (
                f"{optimizer_class.__name__} {config} {dtype}: {name} differs after step {step + 1} "
                f"by up to {(param - reference).abs().max().item():.3g}"
            )
    spare, reference_spare = run[2], reference_run[2]
    assert torch.equal(spare, torch.ones_like(spare)) and torch.equal(reference_spare, spare)
    return run[0], reference_run[0]


def assert_same_state(state_dict, reference_state_dict):
    """The same per-parameter keys, dtypes and values (bit for bit), and the same group keys."""
    state, reference_state = state_dict["state"], reference_state_dict["state"]
    assert state.keys() == reference_state.keys()
    for index in reference_state:
        assert list(state[index]) == list(reference_state[index])
        for key, value in reference_state[index].items():
            assert state[index][key].dtype == value.dtype, (index, key)
            assert state[index][key].shape == value.shape, (index, key)
            assert torch.equal(state[index][key], value), (index, key)
    for group, reference_group in zip(state_dict["param_groups"], reference_state_dict["param_groups"], strict=True):
        assert list(group) == list(reference_group)


TORCH_CASES = [
    pytest.param(name, flags, dtype, id=f"{name}-{case_id(flags)}-{dtype}")
    for name, (_, _, _, all_flags, _) in TORCH_RULES.items()
    for flags in all_flags
    for dtype in DTYPES
]


@pytest.mark.parametrize("name, flags, dtype", TORCH_CASES)
def test_bit_exact_with_torch_for_every_flag_combination(name, flags, dtype):
    gdlab_class, torch_class, lr, _, first_group = TORCH_RULES[name]
    config = {"lr": lr, **flags}
    optimizer, reference = train_side_by_side(
        gdlab_class, functools.partial(torch_class, foreach=False), config, first_group(config), dtype
    )
    assert_same_state(optimizer.state_dict(), reference.state_dict())
    lrs = [group["lr"] for group in optimizer.param_groups]
    assert lrs[0] != lrs[1] and lrs == [group["lr"] for group in reference.param_groups]
    assert lrs[1] == lr * 0.5 ** (STEPS // 10)


def test_asgd_averages_once_t0_is_passed():
    """The flag grid reaches both branches of the average (copy while mu = 1, mean after t0)."""
    config = {"lr": 0.05, "t0": 5.0}
    optimizer, _ = train_side_by_side(
        asgd.ASGD, functools.partial(torch.optim.ASGD, foreach=False), config, {}, torch.float64, steps=12
    )
    param = optimizer.param_groups[0]["params"][0]
    state = optimizer.state[param]
    assert state["mu"].item() == torch.tensor(1 / (12 - 5), dtype=torch.float32).item()
    assert not torch.equal(state["ax"], param)  # an average of iterates, not the last one


@pytest.mark.parametrize("name", list(TORCH_RULES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64], ids=str)
def test_tensor_lr_with_a_scheduler(name, dtype):
    """A 1-element tensor lr (rewritten in place by the scheduler), real and complex parameters."""
    gdlab_class, torch_class, lr, _, _ = TORCH_RULES[name]
    torch.manual_seed(1)
    weight = torch.randn(4, 3, dtype=dtype, requires_grad=True)
    inputs, targets = torch.randn(3, 6, dtype=dtype), torch.randn(4, 6, dtype=dtype)
    config = {"lr": torch.tensor(lr), "t0": 4.0} if name == "ASGD" else {"lr": torch.tensor([lr])}
    runs = []
    for optimizer_class in (gdlab_class, functools.partial(torch_class, foreach=False)):
        param = weight.detach().clone().requires_grad_()
        optimizer = optimizer_class([param], **copy.deepcopy(config))
        runs.append((param, optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=4, gamma=0.5)))
    for step in range(16):
        for param, optimizer, scheduler in runs:
            optimizer.zero_grad()
            residual = param @ inputs - targets
            (residual * residual.conj()).real.sum().backward()
            optimizer.step()
            scheduler.step()
        assert torch.equal(runs[0][0], runs[1][0]), f"step {step + 1}"
    assert torch.equal(runs[0][1].param_groups[0]["lr"], runs[1][1].param_groups[0]["lr"])
    assert_same_state(runs[0][1].state_dict(), runs[1][1].state_dict())


# --------------------------------------------------------------------------------------------
# state_dict both ways, and older state dicts.

STATE_CONFIGS = {
    "ASGD": {"lr": 0.05, "t0": 5.0, "lambd": 0.01, "weight_decay": 0.01},
    "Rprop": {"lr": 0.01, "etas": (0.4, 1.3), "step_sizes": (1e-5, 1.0)},
}
HALF = 15


def make_problem(dtype=torch.float32):
    torch.manual_seed(0)
    model = MLP([6, 10, 3], activation="relu").to(dtype)
    return model, torch.randn(90, 6, dtype=dtype), torch.randint(0, 3, (90,))


def train(model, optimizer, inputs, labels, steps, start):
    for step in range(start, start + steps):
        batch = slice(step * 15 % 90, step * 15 % 90 + 15)
        optimizer.zero_grad()
        F.cross_entropy(model(inputs[batch]), labels[batch]).backward()
        optimizer.step()


def through_bytes(state):
    """As a checkpoint on disk goes (weights_only: plain tensors and numbers)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def run_with_a_stop(first_class, second_class, config):
    model, inputs, labels = make_problem()
    optimizer = first_class(model.parameters(), **config)
    train(model, optimizer, inputs, labels, HALF, start=0)
    checkpoint = through_bytes(optimizer.state_dict())
    resumed = second_class(model.parameters(), **config)
    resumed.load_state_dict(checkpoint)
    train(model, resumed, inputs, labels, HALF, start=HALF)
    return model, resumed


@pytest.mark.parametrize("name", list(TORCH_RULES))
@pytest.mark.parametrize("direction", ["gdlab_to_torch", "torch_to_gdlab"])
def test_state_dict_moves_between_gdlab_and_torch(name, direction):
    gdlab_class, torch_class, *_ = TORCH_RULES[name]
    torch_class = functools.partial(torch_class, foreach=False)
    first, second = (gdlab_class, torch_class) if direction == "gdlab_to_torch" else (torch_class, gdlab_class)
    config = STATE_CONFIGS[name]
    resumed_model, resumed = run_with_a_stop(first, second, config)
    model, inputs, labels = make_problem()
    uninterrupted = torch_class(model.parameters(), **config)
    train(model, uninterrupted, inputs, labels, 2 * HALF, start=0)
    for param, reference in zip(resumed_model.parameters(), model.parameters()):
        assert torch.equal(param, reference)
    assert_same_state(resumed.state_dict(), uninterrupted.state_dict())


# Group keys torch added over the versions; a checkpoint from before them lacks them.
LATER_GROUP_KEYS = ("maximize", "foreach", "capturable", "differentiable")
# State that older torch kept as Python numbers.
NUMBER_STATE = {"ASGD": ("step", "eta", "mu"), "Rprop": ("step",)}


def older(state_dict, name):
    state_dict = copy.deepcopy(state_dict)
    for group in state_dict["param_groups"]:
        for key in LATER_GROUP_KEYS:
            del group[key]
    for param_state in state_dict["state"].values():
        for key in NUMBER_STATE[name]:
            param_state[key] = float(param_state[key])
    return state_dict


@pytest.mark.parametrize("name", list(TORCH_RULES))
def test_an_older_state_dict_loads_and_steps_as_in_torch(name):
    gdlab_class, torch_class, *_ = TORCH_RULES[name]
    torch_class = functools.partial(torch_class, foreach=False)
    config = STATE_CONFIGS[name]
    model, inputs, labels = make_problem()
    optimizer = torch_class(model.parameters(), **config)
    train(model, optimizer, inputs, labels, HALF, start=0)
    checkpoint = older(optimizer.state_dict(), name)
    assert isinstance(checkpoint["state"][0]["step"], float)

    models, optimizers = [], []
    for optimizer_class in (gdlab_class, torch_class):
        copied = copy.deepcopy(model)
        loaded = optimizer_class(copied.parameters(), **config)
        loaded.load_state_dict(copy.deepcopy(checkpoint))
        models.append(copied)
        optimizers.append(loaded)
    assert_same_state(optimizers[0].state_dict(), optimizers[1].state_dict())
    for key in LATER_GROUP_KEYS:
        assert optimizers[0].param_groups[0][key] == optimizers[1].param_groups[0][key]
    for copied, loaded in zip(models, optimizers):
        train(copied, loaded, inputs, labels, HALF, start=HALF)
    for param, reference in zip(*(copied.parameters() for copied in models)):
        assert torch.equal(param, reference)
    assert_same_state(optimizers[0].state_dict(), optimizers[1].state_dict())


# --------------------------------------------------------------------------------------------
# torch's own test inputs (torch.testing._internal.common_optimizers.optim_db).


def torch_info(torch_class):
    return next(info for info in optim_db if info.optim_cls is torch_class)


def db_cases():
    cases = []
    for name, (_, torch_class, *_) in TORCH_RULES.items():
        info = torch_info(torch_class)
        dtypes = DTYPES + ([torch.complex64] if info.supports_complex else [])
        for index, optimizer_input in enumerate(info.optim_inputs_func("cpu")):
            for dtype in dtypes:
                cases.append(pytest.param(name, index, dtype, id=f"{name}-{optimizer_input.desc}-{dtype}"))
    return cases


def test_torch_inputs_include_what_the_rules_support():
    """The inputs walked below are not empty and include complex parameters."""
    for _, torch_class, *_ in TORCH_RULES.values():
        info = torch_info(torch_class)
        assert len(info.optim_inputs_func("cpu")) >= 5 and info.supports_complex


@pytest.mark.parametrize("name, index, dtype", db_cases())
def test_every_torch_input_gives_torch_results(name, index, dtype):
    gdlab_class, torch_class, *_ = TORCH_RULES[name]
    optimizer_input = torch_info(torch_class).optim_inputs_func("cpu")[index]
    assert optimizer_input.params is None  # torch's inputs for these rules: default parameters
    torch.manual_seed(index)
    weight, bias = torch.randn(4, 3, dtype=dtype), torch.randn(4, dtype=dtype)
    inputs, targets = torch.randn(3, 5, dtype=dtype), torch.randn(4, 5, dtype=dtype)
    runs = []
    for optimizer_class in (gdlab_class, functools.partial(torch_class, foreach=False)):
        params = [weight.clone().requires_grad_(), bias.clone().requires_grad_()]
        runs.append((params, optimizer_class(params, **copy.deepcopy(optimizer_input.kwargs))))
    for step in range(12):
        for (params_, optimizer) in runs:
            optimizer.zero_grad()
            residual = params_[0] @ inputs + params_[1][:, None] - targets
            loss = (residual * residual.conj()).real.sum() + 0.1 * (params_[0] * params_[0].conj()).real.pow(2).sum()
            loss.backward()
            optimizer.step()
        for param, reference in zip(runs[0][0], runs[1][0]):
            assert torch.equal(param, reference), f"{optimizer_input.desc}: step {step + 1}"
    assert_same_state(runs[0][1].state_dict(), runs[1][1].state_dict())


def error_cases():
    return [
        pytest.param(name, index, id=f"{name}-{error_input.optimizer_error_input.desc}")
        for name, (_, torch_class, *_) in TORCH_RULES.items()
        for index, error_input in enumerate(torch_info(torch_class).optim_error_inputs_func("cpu", torch.float32))
    ]


def raises_like_torch(error_input):
    if issubclass(error_input.error_type, Warning):
        return pytest.warns(error_input.error_type, match=error_input.error_regex)
    return pytest.raises(error_input.error_type, match=error_input.error_regex)


@pytest.mark.parametrize("name, index", error_cases())
def test_every_torch_error_input_raises_as_in_torch(name, index):
    gdlab_class, torch_class, *_ = TORCH_RULES[name]
    error_input = torch_info(torch_class).optim_error_inputs_func("cpu", torch.float32)[index]
    optimizer_input = error_input.optimizer_error_input
    for optimizer_class in (torch_class, gdlab_class):  # torch's first: the input really is an error there
        params = optimizer_input.params
        if params is None:
            params = [nn.Parameter(torch.randn(2, 2)), nn.Parameter(torch.randn(2))]
        if error_input.error_on == OptimizerErrorEnum.CONSTRUCTION_ERROR:
            with raises_like_torch(error_input):
                optimizer_class(params, **optimizer_input.kwargs)
        else:
            optimizer = optimizer_class(params, **optimizer_input.kwargs)
            for param in optimizer.param_groups[0]["params"]:
                param.grad = torch.ones_like(param)
            with raises_like_torch(error_input):
                optimizer.step()


BAD_ARGUMENTS = [
    ("ASGD", {"lr": -0.1}),
    ("ASGD", {"lr": float("nan")}),
    ("ASGD", {"weight_decay": -1e-3}),
    ("ASGD", {"lr": torch.tensor([0.1, 0.2])}),
    ("Rprop", {"lr": -1.0}),
    ("Rprop", {"etas": (0.5, 0.9)}),
    ("Rprop", {"etas": (0.0, 1.2)}),
    ("Rprop", {"etas": (1.0, 1.2)}),
]


@pytest.mark.parametrize("name, kwargs", BAD_ARGUMENTS, ids=lambda value: str(value))
def test_invalid_arguments_raise_torch_type_and_message(name, kwargs):
    gdlab_class, torch_class, *_ = TORCH_RULES[name]
    with pytest.raises(Exception) as torch_error:
        torch_class([nn.Parameter(torch.zeros(2))], **kwargs)
    with pytest.raises(type(torch_error.value), match=re.escape(str(torch_error.value))):
        gdlab_class([nn.Parameter(torch.zeros(2))], **kwargs)


@pytest.mark.parametrize("name", list(TORCH_RULES))
@pytest.mark.parametrize("flag", ["capturable", "differentiable"])
def test_torch_implementation_switches_are_refused_with_a_reason(name, flag):
    gdlab_class = TORCH_RULES[name][0]
    with pytest.raises(ValueError, match=f"{flag}=True is not supported: gdlab runs torch's single-tensor rule"):
        gdlab_class([nn.Parameter(torch.zeros(2))], **{flag: True})
    gdlab_class([nn.Parameter(torch.zeros(2))], foreach=True)  # accepted; there is one implementation


# --------------------------------------------------------------------------------------------
# Lion against its paper: Algorithm 2 of Chen et al. 2023, in plain Python floats.


def sign(value):
    return (value > 0) - (value < 0)


def lion_by_the_paper(theta, gradient_of, steps, lr, beta1, beta2, weight_decay, maximize=False):
    """Algorithm 2 (Lion), one coordinate at a time:

        g_t <- grad f(theta_{t-1})
        c_t <- beta1 * m_{t-1} + (1 - beta1) * g_t
        theta_t <- theta_{t-1} - lr * (sign(c_t) + lambda * theta_{t-1})
        m_t <- beta2 * m_{t-1} + (1 - beta2) * g_t

    (``maximize`` follows the gradient of -f.) Returns every iterate and the final momentum.
    """
    theta, momentum = list(theta), [0.0] * len(theta)
    trajectory = [list(theta)]
    for _ in range(steps):
        gradient = gradient_of(theta)
        if maximize:
            gradient = [-g for g in gradient]
        interpolation = [beta1 * m + (1 - beta1) * g for m, g in zip(momentum, gradient)]
        theta = [t - lr * (sign(c) + weight_decay * t) for t, c in zip(theta, interpolation)]
        momentum = [beta2 * m + (1 - beta2) * g for m, g in zip(momentum, gradient)]
        trajectory.append(list(theta))
    return trajectory, momentum


# The tiny problem: f(theta) = sum_i a_i / 2 * (theta_i - target_i)^2 + 0.1 * theta_i^4, whose
# gradient is computed by the same IEEE operations in Python floats and in float64 tensors.
CURVATURE = [1.0, 3.0, 0.5, 2.0, 0.25, 1.5]
TARGET = [0.3, -1.2, 2.0, 0.05, -0.7, 1.1]
START = [1.0, -0.5, 0.4, -2.0, 0.9, 0.0]


def python_gradient(theta):
    return [a * (t - c) + 0.4 * (t * t * t) for a, t, c in zip(CURVATURE, theta, TARGET)]


def tensor_gradient(theta):
    curvature, target = torch.tensor(CURVATURE, dtype=torch.float64), torch.tensor(TARGET, dtype=torch.float64)
    return curvature * (theta - target) + 0.4 * (theta * theta * theta)


def run_gdlab_lion(steps, **config):
    theta = torch.tensor(START, dtype=torch.float64, requires_grad=True)
    optimizer = lion.Lion([theta], **config)
    trajectory = [theta.detach().clone()]
    for _ in range(steps):
        theta.grad = tensor_gradient(theta.detach())
        optimizer.step()
        trajectory.append(theta.detach().clone())
    return trajectory, optimizer.state[theta]["exp_avg"]


LION_EQUATION_CONFIGS = [
    {"lr": 0.01, "betas": (0.9, 0.99), "weight_decay": 0.0},
    {"lr": 0.01, "betas": (0.9, 0.99), "weight_decay": 0.5},
    {"lr": 0.003, "betas": (0.95, 0.98), "weight_decay": 0.1, "maximize": True},
    {"lr": 0.05, "betas": (0.5, 0.9), "weight_decay": 0.0, "maximize": True},
    {"lr": 0.02, "betas": (0.0, 0.0), "weight_decay": 0.2},
]
# The equations and the rule round differently: the paper's theta - lr * (sign(c) + lambda * theta)
# is computed as theta * (1 - lr * lambda) - lr * sign(c) (lion-pytorch's order), and the moving
# averages as m * beta + (1 - beta) * g by torch's ``add(alpha=)``. Each step adds at most an ulp or
# two, which add up over the steps: measured over these 40 steps (x86-64, torch 2.13), iterates
# within 8.9e-15 (|theta| <= 4) and momenta within 1.5e-14, at most 4.3e-15 relative to
# max(1, |value|); exactly 0 for the iterates without weight decay. The bound, relative to
# max(1, |value|), leaves room for other CPUs' kernels. Signs agree throughout: a sign that
# differed would move an entry by 2 * lr, far outside it.
LION_EQUATION_RTOL = 1e-13


def relative_difference(value, expected):
    expected = torch.tensor(expected, dtype=torch.float64)
    return (value - expected).abs().max().item() / max(1.0, expected.abs().max().item())


@pytest.mark.parametrize("config", LION_EQUATION_CONFIGS, ids=case_id)
def test_lion_is_algorithm_2_of_the_paper(config):
    steps = 40
    expected, expected_momentum = lion_by_the_paper(
        START, python_gradient, steps, config["lr"], *config["betas"], config["weight_decay"],
        maximize=config.get("maximize", False),
    )
    trajectory, momentum = run_gdlab_lion(steps, **config)
    for step, (theta, paper_theta) in enumerate(zip(trajectory, expected)):
        difference = relative_difference(theta, paper_theta)
        assert difference <= LION_EQUATION_RTOL, f"step {step}: {difference:.3g} from the paper's iterate"
    assert relative_difference(momentum, expected_momentum) <= LION_EQUATION_RTOL
    if config["weight_decay"] == 0:
        # Without weight decay the update is theta - lr * sign(c) in both: the same rounding.
        assert torch.equal(trajectory[-1], torch.tensor(expected[-1], dtype=torch.float64))
        # Every coordinate moves by lr (sign(c) is never 0 here) at every step.
        for before, after in zip(trajectory, trajectory[1:]):
            assert torch.allclose((after - before).abs(), torch.full_like(before, config["lr"]), rtol=0, atol=1e-14)


def test_lion_without_momentum_is_sign_descent():
    """betas = (0, 0): c = g, so theta <- theta - lr * sign(g), exactly."""
    trajectory, _ = run_gdlab_lion(10, lr=0.05, betas=(0.0, 0.0))
    for before, after in zip(trajectory, trajectory[1:]):
        assert torch.equal(after, before - 0.05 * tensor_gradient(before).sign())


def test_lion_maximize_is_descent_on_the_negated_gradient():
    torch.manual_seed(0)
    params = [torch.randn(5, 4, dtype=torch.float64) for _ in range(2)]
    grads = [[torch.randn(5, 4, dtype=torch.float64) for _ in range(20)] for _ in range(2)]
    results = []
    for maximize in (False, True):
        copies = [param.clone().requires_grad_() for param in params]
        optimizer = lion.Lion(copies, lr=0.01, weight_decay=0.1, maximize=maximize)
        for step in range(20):
            for param, param_grads in zip(copies, grads):
                param.grad = -param_grads[step] if maximize else param_grads[step]
            optimizer.step()
        results.append(copies)
    for plain, maximized in zip(*results):
        assert torch.equal(plain, maximized)


def test_lion_treats_a_complex_entry_as_two_real_entries():
    """torch's convention for complex parameters: the real and imaginary parts are independent."""
    torch.manual_seed(0)
    complex_param = torch.randn(4, 3, dtype=torch.complex128, requires_grad=True)
    real_param = torch.view_as_real(complex_param.detach()).clone().requires_grad_()
    optimizers = [lion.Lion([param], lr=0.01, weight_decay=0.1) for param in (complex_param, real_param)]
    for _ in range(15):
        grad = torch.randn(4, 3, dtype=torch.complex128)
        complex_param.grad, real_param.grad = grad, torch.view_as_real(grad).clone()
        for optimizer in optimizers:
            optimizer.step()
    assert torch.equal(torch.view_as_real(complex_param.detach()), real_param.detach())


def test_lion_tensor_lr_acts_as_its_value():
    results = []
    for lr in (torch.tensor([0.01], dtype=torch.float64), 0.01):
        theta = torch.tensor(START, dtype=torch.float64, requires_grad=True)
        optimizer = lion.Lion([theta], lr=lr, weight_decay=0.3)
        for _ in range(10):
            theta.grad = tensor_gradient(theta.detach())
            optimizer.step()
        results.append(theta.detach())
    assert torch.equal(*results)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"lr": -1e-4}, ValueError, "Invalid learning rate: -0.0001"),
        ({"lr": torch.tensor([1e-4, 1e-4])}, ValueError, "Tensor lr must be 1-element"),
        ({"betas": (1.0, 0.99)}, ValueError, "Invalid beta parameter at index 0: 1.0"),
        ({"betas": (0.9, -0.1)}, ValueError, "Invalid beta parameter at index 1: -0.1"),
        ({"weight_decay": -0.5}, ValueError, "Invalid weight_decay value: -0.5"),
    ],
    ids=lambda value: str(value)[:40],
)
def test_lion_refuses_invalid_arguments(kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        lion.Lion([nn.Parameter(torch.zeros(2))], **kwargs)


def test_lion_defaults_are_the_papers_and_lion_pytorch_s():
    defaults = lion.Lion([nn.Parameter(torch.zeros(2))]).defaults
    assert defaults == {"lr": 1e-4, "betas": (0.9, 0.99), "weight_decay": 0.0, "maximize": False}


# --------------------------------------------------------------------------------------------
# Lion against the independent PyPI implementation lion-pytorch.
#
# lion_pytorch.Lion (0.2.x, use_triton=False) runs, per parameter:
#     p.mul_(1 - lr * wd); update = exp_avg.clone().mul_(beta1).add(grad, alpha=1 - beta1).sgn_()
#     p.add_(update, alpha=-lr); exp_avg.mul_(beta2).add_(grad, alpha=1 - beta2)
# gdlab's rule runs the same operations in the same order (it skips the multiplication by
# exactly 1 when wd = 0), so the parameters are torch.equal. Its decoupled_weight_decay=True
# divides wd by the initial lr (decay independent of lr), which is not the paper's lr * lambda:
# gdlab's weight_decay is lion-pytorch's default, decoupled_weight_decay=False.

LION_PYTORCH_FLAGS = combinations(weight_decay=[0.0, 0.1], betas=[(0.9, 0.99), (0.95, 0.98)])


def lion_first_group(config):
    return {"lr": config["lr"] * 0.3, "weight_decay": 0.05 if config["weight_decay"] else 0.0}


def lion_pytorch_class():
    lion_pytorch = pytest.importorskip("lion_pytorch", reason="lion-pytorch (a dev extra) is not installed")
    return functools.partial(lion_pytorch.Lion, use_triton=False, decoupled_weight_decay=False)


@pytest.mark.parametrize("flags", LION_PYTORCH_FLAGS, ids=case_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_lion_is_bit_exact_with_lion_pytorch(flags, dtype):
    config = {"lr": 1e-3, **flags}
    optimizer, reference = train_side_by_side(
        lion.Lion, lion_pytorch_class(), config, lion_first_group(config), dtype
    )
    state, reference_state = optimizer.state_dict()["state"], reference.state_dict()["state"]
    assert state.keys() == reference_state.keys()
    for index in state:
        assert torch.equal(state[index]["exp_avg"], reference_state[index]["exp_avg"])


@pytest.mark.parametrize("direction", ["gdlab_to_lion_pytorch", "lion_pytorch_to_gdlab", "gdlab_to_gdlab"])
def test_lion_state_dict_moves_between_gdlab_and_lion_pytorch(direction):
    """lion-pytorch's groups have no ``maximize`` key: loading into gdlab fills in False."""
    reference_class = lion_pytorch_class()
    first, second = {
        "gdlab_to_lion_pytorch": (lion.Lion, reference_class),
        "lion_pytorch_to_gdlab": (reference_class, lion.Lion),
        "gdlab_to_gdlab": (lion.Lion, lion.Lion),
    }[direction]
    config = {"lr": 1e-3, "weight_decay": 0.1}
    resumed_model, resumed = run_with_a_stop(first, second, config)
    model, inputs, labels = make_problem()
    uninterrupted = reference_class(model.parameters(), **config)
    train(model, uninterrupted, inputs, labels, 2 * HALF, start=0)
    for param, reference in zip(resumed_model.parameters(), model.parameters()):
        assert torch.equal(param, reference)
    if second is lion.Lion:
        assert all(group["maximize"] is False for group in resumed.param_groups)


# --------------------------------------------------------------------------------------------
# The declarations: registered, consistent with the classes; init/update equal the class.

RULES = {"asgd": asgd, "rprop": rprop, "lion": lion}
CLASS_CONFIGS = {
    "asgd": {"lr": 0.05, "lambd": 0.01, "alpha": 0.6, "t0": 4.0, "weight_decay": 0.02},
    "rprop": {"lr": 0.02, "etas": (0.4, 1.3), "step_sizes": (1e-4, 0.5)},
    "lion": {"lr": 0.01, "betas": (0.8, 0.95), "weight_decay": 0.1},
}


@pytest.mark.parametrize("name", list(RULES))
def test_the_rule_is_registered_and_declared_as_its_class(name):
    declaration = registry.get(name)
    module = RULES[name]
    assert declaration is module.RULE and registry.by_optimizer(declaration.optimizer) is declaration
    signature = inspect.signature(declaration.optimizer.__init__).parameters
    for hyperparameter in declaration.hyperparameters:
        assert signature[hyperparameter.name].default == hyperparameter.default, hyperparameter.name
    for setting in declaration.verify_grid:
        assert set(setting) <= set(signature)
    if declaration.reference is not None:
        assert registry.by_optimizer(declaration.reference) is declaration
        reference_signature = inspect.signature(declaration.reference.__init__).parameters
        assert list(signature) == list(reference_signature)
        assert all(signature[key].default == reference_signature[key].default for key in signature)
        assert all(signature[key].kind == reference_signature[key].kind for key in signature)


def test_lion_cites_its_sources():
    declaration = registry.get("lion")
    assert declaration.reference is None
    assert "Algorithm 2" in declaration.reference_source and "lion-pytorch" in declaration.reference_source


def gradient_sequence(params, steps, seed):
    """Gradients that depend on the parameters (0.3 * p) plus noise, so signs flip (Rprop) and
    the average moves (ASGD); built by exact elementwise operations, the same for any layout."""
    generator = torch.Generator().manual_seed(seed)
    noise = [
        [torch.randn(param.shape, generator=generator, dtype=param.dtype) for param in params]
        for _ in range(steps)
    ]
    return lambda step, param, index: param * 0.3 + noise[step][index]


@pytest.mark.parametrize("name", list(RULES))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_init_and_update_equal_the_class(name, dtype):
    declaration = registry.get(name)
    torch.manual_seed(0)
    params = [torch.randn(4, 3, dtype=dtype), torch.randn(4, dtype=dtype), torch.randn((), dtype=dtype)]
    gradient = gradient_sequence(params, 20, seed=1)
    class_params = [param.clone().requires_grad_() for param in params]
    optimizer = declaration.optimizer(class_params, **CLASS_CONFIGS[name])
    hparams = {key: value for key, value in optimizer.param_groups[0].items() if key != "params"}
    rule_params = [param.clone() for param in params]
    state = declaration.init(rule_params, hparams)
    for step in range(20):
        for index, param in enumerate(class_params):
            param.grad = gradient(step, param.detach(), index)
        optimizer.step()
        grads = [gradient(step, param, index) for index, param in enumerate(rule_params)]
        declaration.update(rule_params, grads, state, **hparams)
    for index, (param, rule_param) in enumerate(zip(class_params, rule_params)):
        assert torch.equal(param.detach(), rule_param)
        class_state = optimizer.state[param]
        assert set(class_state) == set(type(state)._fields)  # the state type's fields are torch's keys
        for key in class_state:
            assert torch.equal(class_state[key], getattr(state, key)[index]), key


# K = 3 stacked configurations; each hyperparameter differs between members (maximize is shared).
STACKED = {
    "asgd": [
        {"lr": 0.05, "lambd": 1e-4, "alpha": 0.75, "t0": 1e6, "weight_decay": 0.0},
        {"lr": 0.02, "lambd": 0.05, "alpha": 0.5, "t0": 3.0, "weight_decay": 0.01},
        {"lr": 0.1, "lambd": 0.01, "alpha": 1.0, "t0": 7.0, "weight_decay": 0.1},
    ],
    "rprop": [
        {"lr": 0.01, "etas": (0.5, 1.2), "step_sizes": (1e-6, 50.0)},
        {"lr": 0.001, "etas": (0.3, 1.5), "step_sizes": (1e-4, 0.05)},
        {"lr": 0.05, "etas": (0.6, 1.1), "step_sizes": (1e-3, 1.0)},
    ],
    "lion": [
        {"lr": 1e-3, "betas": (0.9, 0.99), "weight_decay": 0.0},
        {"lr": 3e-3, "betas": (0.95, 0.98), "weight_decay": 0.1},
        {"lr": 1e-2, "betas": (0.8, 0.999), "weight_decay": 1.0},
    ],
}


def stacked_hyperparameters(members, shared):
    """One (K,) float64 tensor per number that differs, a float where all agree (``shared``)."""
    hparams = {}
    for key, first in members[0].items():
        if isinstance(first, tuple):
            hparams[key] = tuple(
                first[entry] if key in shared else per_member([member[key][entry] for member in members])
                for entry in range(len(first))
            )
        elif key in shared:
            hparams[key] = first
        else:
            hparams[key] = per_member([member[key] for member in members])
    return hparams


def per_member(values):
    return torch.tensor(values, dtype=torch.float64)


@pytest.mark.parametrize("name", list(RULES))
@pytest.mark.parametrize("shared", [(), ("lr",)], ids=["all_tensors", "lr_shared"])
@pytest.mark.parametrize("maximize", [False, True])
def test_stacked_members_equal_each_member_alone(name, shared, maximize):
    declaration = registry.get(name)
    assert declaration.stackable
    members = [dict(member, maximize=maximize) for member in STACKED[name]]
    if shared:
        members = [dict(member, lr=members[0]["lr"]) for member in members]
    steps = 20
    torch.manual_seed(0)
    stacked = [torch.randn(3, 4, 5, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)]
    gradient = gradient_sequence(stacked, steps, seed=2)

    params = [param.clone() for param in stacked]
    hparams = stacked_hyperparameters(members, shared=set(shared) | {"maximize"})
    state = declaration.init(params, hparams)
    for step in range(steps):
        grads = [gradient(step, param, index) for index, param in enumerate(params)]
        declaration.update(params, grads, state, **hparams)

    for k, member in enumerate(members):
        alone = [param[k].clone().requires_grad_() for param in stacked]
        optimizer = declaration.optimizer(alone, **member)
        for step in range(steps):
            for index, param in enumerate(alone):
                param.grad = gradient(step, torch.stack([param.detach()] * 3), index)[k]
            optimizer.step()
        for index, param in enumerate(alone):
            scale = max(1.0, param.abs().max().item())
            difference = (params[index][k] - param.detach()).abs().max().item()
            assert difference / scale <= TENSOR_PATH_RTOL, f"member {k}, parameter {index}: {difference:.3g}"
            for key, values in optimizer.state[param].items():
                stacked_value = getattr(state, key)[index]
                member_value = stacked_value[k] if stacked_value.dim() > 0 else stacked_value
                scale = max(1.0, values.abs().max().item())
                assert (member_value - values).abs().max().item() <= TENSOR_PATH_RTOL * scale, key


# --------------------------------------------------------------------------------------------
# Variants: the known departures the checker names.


def test_rprop_variant_without_backtracking_moves_after_a_sign_change():
    """Gradients +1, +1, -1, -1 on one entry (lr 0.1, etas 0.5 / 1.2). torch's rule (iRprop-):
    -0.1, -0.12, then 0 (the sign flipped: step size 0.06, gradient forgotten), then +0.06.
    Without backtracking: -0.1, -0.12, +0.06, then +0.072 (the new sign holds)."""
    declaration = registry.get("rprop")
    (variant,) = declaration.variants
    hparams = {"lr": 0.1, "etas": (0.5, 1.2), "step_sizes": (1e-6, 50), "maximize": False}
    moves = {}
    for label, update in (("rule", declaration.update), ("variant", variant.update)):
        param = torch.zeros(1, dtype=torch.float64)
        state = declaration.init([param], hparams)
        trajectory = []
        for grad in (1.0, 1.0, -1.0, -1.0):
            before = param.item()
            update([param], [torch.tensor([grad], dtype=torch.float64)], state, **hparams)
            trajectory.append(param.item() - before)
        moves[label] = trajectory
    assert moves["rule"] == pytest.approx([-0.1, -0.12, 0.0, 0.06], abs=1e-15)
    assert moves["variant"] == pytest.approx([-0.1, -0.12, 0.06, 0.072], abs=1e-15)


def test_lion_variant_takes_the_sign_of_the_updated_momentum():
    declaration = registry.get("lion")
    (variant,) = declaration.variants
    assert variant.kind == "bug"
    hparams = {"lr": 0.1, "betas": (0.9, 0.5), "weight_decay": 0.0, "maximize": False}
    # m = 0.5 * 0 + 0.5 * 1 = 0.5 after step 1; step 2 with g = -0.8: the rule's c = 0.9 * 0.5 - 0.1 * 0.8 > 0
    # moves down, the variant's m = 0.5 * 0.5 - 0.5 * 0.8 < 0 moves up.
    results = {}
    for label, update in (("rule", declaration.update), ("variant", variant.update)):
        param = torch.zeros(1, dtype=torch.float64)
        state = declaration.init([param], hparams)
        for grad in (1.0, -0.8):
            update([param], [torch.tensor([grad], dtype=torch.float64)], state, **hparams)
        results[label] = param.item()
    assert results["rule"] == pytest.approx(-0.2, abs=1e-15)
    assert results["variant"] == pytest.approx(0.0, abs=1e-15)
