"""Adamax, NAdam, RAdam and Adadelta from scratch are torch.optim's foreach=False implementation, bit for bit.

Every comparison runs gdlab's class (or its declared init/update) and torch's
class side by side on the same inputs, each with its own forward and backward
pass where there is a model, and asserts ``torch.equal`` after every step: a
difference of one ulp anywhere changes the next gradients and grows. Covered:
every flag combination of each rule, float32 and float64, two param groups,
StepLR, a parameter without a gradient, closures, tensor lr (and other 0-dim
tensor hyperparameters), complex parameters, state dicts moving both ways and
older state dicts, every CPU input and error input torch's own optimizer test
database (``optim_db``) holds for these rules, the declared ``init``/``update``,
K configurations stacked in one call, and the declared variants.
"""

import copy
import inspect
import itertools
import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing._internal.common_optimizers import OptimizerErrorEnum, optim_db

from gdlab.models import MLP
from gdlab.optim import registry
from gdlab.optim.rules import adadelta, adamax, nadam, radam

DTYPES = [torch.float32, torch.float64]
STEPS = 32


def combinations(**axes) -> list[dict]:
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


@dataclass(frozen=True)
class Rule:
    module: object
    lr: float  # the base lr of the side-by-side runs
    flags: list[dict]  # every flag combination (weight decay on/off counts as one)
    first_group: Callable[[dict], dict]  # the first param group's own hyperparameters
    every_state: dict  # a configuration that creates every kind of state the rule keeps

    @property
    def ours(self):
        return self.module.RULE.optimizer

    @property
    def reference(self):
        return self.module.RULE.reference


RULES = {
    "Adamax": Rule(
        adamax, 0.01, combinations(weight_decay=[0.0, 0.01], maximize=[False, True]),
        lambda config: {"lr": config["lr"] * 0.3, "betas": (0.8, 0.99), "eps": 1e-6},
        {"lr": 0.01, "weight_decay": 0.01},
    ),
    "NAdam": Rule(
        nadam, 0.01,
        combinations(weight_decay=[0.0, 0.01], decoupled_weight_decay=[False, True], maximize=[False, True]),
        lambda config: {"lr": config["lr"] * 0.3, "betas": (0.8, 0.99), "eps": 1e-6, "momentum_decay": 6e-3},
        {"lr": 0.01, "weight_decay": 0.01, "momentum_decay": 6e-3},
    ),
    "RAdam": Rule(
        radam, 0.01,
        combinations(weight_decay=[0.0, 0.01], decoupled_weight_decay=[False, True], maximize=[False, True]),
        lambda config: {"lr": config["lr"] * 0.3, "betas": (0.8, 0.9), "eps": 1e-6},
        {"lr": 0.01, "weight_decay": 0.01, "decoupled_weight_decay": True},
    ),
    "Adadelta": Rule(
        adadelta, 1.0, combinations(weight_decay=[0.0, 0.01], maximize=[False, True]),
        lambda config: {"lr": 0.5, "rho": 0.95, "eps": 1e-5},
        {"lr": 1.0, "weight_decay": 0.01},
    ),
}


def torch_foreach_false(torch_class):
    return lambda params, **config: torch_class(params, foreach=False, **config)


def step_lr(optimizer):
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.5)


# Side by side on a small MLP ------------------------------------------------------------------


def make_run(optimizer_class, config, first_group, model):
    """Two param groups (the first layer with its own hyperparameters; the rest plus a
    parameter that never gets a gradient), and a StepLR schedule over them."""
    spare = nn.Parameter(torch.ones(5, dtype=model.layers[0].weight.dtype))
    first, *rest = model.layers
    groups = [
        {"params": list(first.parameters()), **first_group},
        {"params": [p for layer in rest for p in layer.parameters()] + [spare]},
    ]
    optimizer = optimizer_class(groups, **config)
    return optimizer, step_lr(optimizer), spare


def train_side_by_side(name, config, dtype, steps=STEPS):
    rule = RULES[name]
    torch.manual_seed(0)
    model = MLP([8, 12, 12, 3], activation="tanh").to(dtype)
    reference_model = copy.deepcopy(model)
    inputs = torch.randn(96, 8, dtype=dtype)
    labels = torch.randint(0, 3, (96,))
    first_group = rule.first_group(config)
    # Each side its own copy: a scheduler rewrites a tensor lr in place.
    optimizer, scheduler, spare = make_run(rule.ours, *copy.deepcopy((config, first_group)), model)
    reference, reference_scheduler, reference_spare = make_run(
        torch_foreach_false(rule.reference), *copy.deepcopy((config, first_group)), reference_model
    )
    for step in range(steps):
        batch = slice(step * 16 % 96, step * 16 % 96 + 16)
        losses = []
        for net, opt, sched in ((model, optimizer, scheduler), (reference_model, reference, reference_scheduler)):

            def closure(net=net, opt=opt):
                opt.zero_grad()
                loss = F.cross_entropy(net(inputs[batch]), labels[batch])
                loss.backward()
                return loss

            if step % 2:  # every other step through a closure, whose loss step returns
                losses.append(opt.step(closure))
            else:
                closure()
                assert opt.step() is None
            sched.step()
        if step % 2:
            assert losses[0].requires_grad and torch.equal(losses[0], losses[1])
        for (param_name, param), other in zip(model.named_parameters(), reference_model.parameters()):
            assert torch.equal(param, other), (
                f"{name} {config} {dtype}: {param_name} differs after step {step + 1} "
                f"by up to {(param - other).abs().max().item():.3g}"
            )
    assert torch.equal(spare, torch.ones_like(spare)) and torch.equal(reference_spare, spare)
    return optimizer, reference


EXACT_CASES = [
    pytest.param(name, flags, dtype, id=f"{name}-{'-'.join(f'{k}={v}' for k, v in flags.items())}-{dtype}")
    for name, rule in RULES.items()
    for flags in rule.flags
    for dtype in DTYPES
]


@pytest.mark.parametrize("name, flags, dtype", EXACT_CASES)
def test_bit_exact_with_torch_for_every_flag_combination(name, flags, dtype):
    config = {"lr": RULES[name].lr, **flags}
    optimizer, reference = train_side_by_side(name, config, dtype)
    lrs = [group["lr"] for group in optimizer.param_groups]
    assert lrs[0] != lrs[1]  # the groups really differ
    assert lrs == [group["lr"] for group in reference.param_groups]
    assert lrs[1] == RULES[name].lr * 0.5 ** (STEPS // 10)  # and the schedule really moved them
    assert_same_state(optimizer.state_dict(), reference.state_dict())


@pytest.mark.parametrize("shape", [(), (1,)], ids=["0-dim", "1-element"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", RULES)
def test_tensor_lr_is_used_as_torch_uses_it(name, dtype, shape):
    """A tensor lr (float32, whatever the parameters' dtype) rounds its arithmetic in
    its own dtype in torch; StepLR then rewrites it in place."""
    rule = RULES[name]
    config = {**rule.every_state, "lr": torch.full(shape, rule.lr)}
    optimizer, reference = train_side_by_side(name, config, dtype, steps=24)
    assert isinstance(optimizer.param_groups[1]["lr"], torch.Tensor)
    assert torch.equal(optimizer.param_groups[1]["lr"], reference.param_groups[1]["lr"])


# Tensors without a model: torch's inputs, complex parameters ---------------------------------


def new_tensors(dtype, seed=0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shapes = [(5, 4), (5,), (3, 5), ()]
    if dtype.is_complex:
        return [torch.randn(shape, dtype=dtype, generator=generator).requires_grad_() for shape in shapes]
    return [torch.randn(shape, generator=generator).to(dtype).requires_grad_() for shape in shapes]


def gradients(params, step) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1000 + step)
    return [torch.randn(p.shape, dtype=p.dtype, generator=generator) for p in params]


def run_on_tensors(rule: Rule, config: dict, dtype, steps: int, optimizer_class=None):
    """The same gradient sequence through gdlab's class and torch's (foreach=False)."""
    params, reference_params = new_tensors(dtype), new_tensors(dtype)
    optimizer = (optimizer_class or rule.ours)(params, **config)
    reference = rule.reference(reference_params, foreach=False, **config)
    for step in range(steps):
        for opt, ps in ((optimizer, params), (reference, reference_params)):
            for p, g in zip(ps, gradients(ps, step)):
                p.grad = g
            opt.step()
    return params, reference_params


def assert_all_equal(params, reference_params):
    for index, (param, other) in enumerate(zip(params, reference_params)):
        assert param.dtype == other.dtype
        assert torch.equal(param, other), f"parameter {index} differs by {(param - other).abs().max().item():.3g}"


ZERO_DIM_HYPERPARAMETERS = {
    "Adamax": {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1},
    "NAdam": {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1, "momentum_decay": 6e-3},
    "RAdam": {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1},
    "Adadelta": {"lr": 0.5, "rho": 0.95, "eps": 1e-5, "weight_decay": 0.1},
}


def as_zero_dim_tensors(config: dict) -> dict:
    return {
        key: tuple(torch.tensor(v) for v in value) if isinstance(value, tuple) else torch.tensor(value)
        for key, value in config.items()
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.complex64])
@pytest.mark.parametrize("name", RULES)
def test_every_hyperparameter_as_a_0_dim_tensor_is_used_as_torch_uses_it(name, dtype):
    """torch's classes accept 0-dim tensors for betas, eps, weight_decay, rho and
    momentum_decay too, and compute with them as tensors; gdlab runs the same ops."""
    config = as_zero_dim_tensors(ZERO_DIM_HYPERPARAMETERS[name])
    params, reference_params = run_on_tensors(RULES[name], config, dtype, steps=20)
    assert_all_equal(params, reference_params)


def info_of(name: str):
    (info,) = [info for info in optim_db if info.optim_cls is RULES[name].reference]
    return info


def optim_db_inputs(name: str) -> list:
    return info_of(name).optim_inputs_func("cpu")


OPTIM_DB_CASES = [
    pytest.param(name, index, dtype, id=f"{name}-{optimizer_input.desc}-{dtype}")
    for name in RULES
    for index, optimizer_input in enumerate(optim_db_inputs(name))
    for dtype in [torch.float32, torch.float64, torch.complex64]
]


def test_optim_db_holds_the_expected_inputs_for_these_rules():
    for name in RULES:
        info = info_of(name)
        assert len(optim_db_inputs(name)) >= 5
        assert info.supports_complex  # so complex parameters are checked below for each rule


@pytest.mark.parametrize("name, index, dtype", OPTIM_DB_CASES)
def test_every_cpu_input_of_torchs_optimizer_database(name, index, dtype):
    optimizer_input = optim_db_inputs(name)[index]
    assert optimizer_input.params is None  # torch's CPU inputs leave the parameters to the test
    params, reference_params = run_on_tensors(RULES[name], dict(optimizer_input.kwargs), dtype, steps=12)
    assert_all_equal(params, reference_params)


def optim_db_error_inputs(name: str) -> list:
    return info_of(name).optim_error_inputs_func("cpu", torch.float32)


ERROR_CASES = [
    pytest.param(name, index, id=f"{name}-{error_input.optimizer_error_input.desc}")
    for name in RULES
    for index, error_input in enumerate(optim_db_error_inputs(name))
]


def raised_by(optimizer_class, error_input):
    """The exception (or warning) ``optimizer_class`` raises on torch's error input, or None."""
    given = error_input.optimizer_error_input
    params = given.params if given.params is not None else [nn.Parameter(torch.randn(2, 2))]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            optimizer = optimizer_class(params, **given.kwargs)
            if error_input.error_on == OptimizerErrorEnum.STEP_ERROR:
                for param in optimizer.param_groups[0]["params"]:
                    param.grad = torch.ones_like(param)
                optimizer.step()
        except (Exception, Warning) as error:  # a warning, raised as an error, is an outcome too
            return error
    return None


@pytest.mark.parametrize("name, index", ERROR_CASES)
def test_every_error_input_of_torchs_optimizer_database(name, index):
    error_input = optim_db_error_inputs(name)[index]
    for optimizer_class in (RULES[name].ours, RULES[name].reference):
        error = raised_by(optimizer_class, error_input)
        assert type(error) is error_input.error_type, (optimizer_class, error)
        assert error_input.error_regex and re.search(error_input.error_regex, str(error)), str(error)


# Class behaviour torch defines -----------------------------------------------------------------


@pytest.mark.parametrize("name", RULES)
def test_constructor_signature_and_group_defaults_are_torchs(name):
    ours, reference = RULES[name].ours, RULES[name].reference
    ours_parameters = inspect.signature(ours.__init__).parameters.values()
    torch_parameters = inspect.signature(reference.__init__).parameters.values()
    assert [(p.name, p.kind, p.default) for p in ours_parameters] == [
        (p.name, p.kind, p.default) for p in torch_parameters
    ]
    params = [nn.Parameter(torch.zeros(2))]
    assert ours(params).defaults == reference(params).defaults
    assert list(ours(params).param_groups[0]) == list(reference(params).param_groups[0])


@pytest.mark.parametrize("name", RULES)
def test_foreach_is_accepted_and_ignored(name):
    rule = RULES[name]
    for foreach in (None, True):
        params, reference_params = run_on_tensors(
            rule, rule.every_state, torch.float64, steps=8,
            optimizer_class=lambda ps, **config: rule.ours(ps, foreach=foreach, **config),
        )
        assert_all_equal(params, reference_params)


@pytest.mark.parametrize("flag", ["capturable", "differentiable"])
@pytest.mark.parametrize("name", RULES)
def test_capturable_and_differentiable_are_refused_with_a_reason(name, flag):
    params = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match=f"{flag}=True is not supported.*single-tensor"):
        RULES[name].ours(params, **{flag: True})
    # Also when a loaded state_dict sets it: refused at the step, before anything changes.
    optimizer = RULES[name].ours(params)
    optimizer.param_groups[0][flag] = True
    params[0].grad = torch.ones(2)
    with pytest.raises(ValueError, match=f"{flag}=True is not supported"):
        optimizer.step()
    assert torch.equal(params[0], torch.zeros(2))


INVALID = {
    "Adamax": [({"lr": -1.0}, "Invalid learning rate: -1.0"), ({"eps": -1e-8}, "Invalid epsilon value"),
               ({"betas": (1.0, 0.9)}, "Invalid beta parameter at index 0: 1.0"),
               ({"weight_decay": -0.1}, "Invalid weight_decay value: -0.1"),
               ({"lr": torch.tensor(-0.1)}, "Invalid learning rate")],
    "NAdam": [({"lr": -1.0}, "Invalid learning rate: -1.0"), ({"betas": (0.9, 1.0)}, "index 1: 1.0"),
              ({"momentum_decay": -1e-3}, "Invalid momentum_decay value: -0.001")],
    "RAdam": [({"lr": -1.0}, "Invalid learning rate: -1.0"), ({"eps": -1.0}, "Invalid epsilon value: -1.0")],
    "Adadelta": [({"rho": -0.1}, "Invalid rho value: -0.1"), ({"eps": -1.0}, "Invalid epsilon value: -1.0"),
                 ({"weight_decay": -1.0}, "Invalid weight_decay value: -1.0")],
}


@pytest.mark.parametrize("name, kwargs, message", [
    pytest.param(name, kwargs, message, id=f"{name}-{next(iter(kwargs))}")
    for name, cases in INVALID.items() for kwargs, message in cases
])
def test_invalid_hyperparameters_raise_torchs_error(name, kwargs, message):
    for optimizer_class in (RULES[name].ours, RULES[name].reference):
        with pytest.raises(ValueError, match=message):
            optimizer_class([nn.Parameter(torch.zeros(2))], **kwargs)


def test_adadelta_takes_rho_of_1_as_torch_does():
    params, reference_params = run_on_tensors(RULES["Adadelta"], {"rho": 1.0}, torch.float64, steps=5)
    assert_all_equal(params, reference_params)


def test_a_sparse_gradient_is_refused_as_torch_refuses_it():
    for optimizer_class in (RULES["NAdam"].ours, RULES["NAdam"].reference):
        param = nn.Parameter(torch.zeros(4, 2))
        param.grad = torch.zeros(4, 2).to_sparse()
        with pytest.raises(RuntimeError, match="does not support sparse gradients"):
            optimizer_class([param]).step()


# state_dict ------------------------------------------------------------------------------------

HALF = 15


def make_problem(dtype=torch.float32):
    torch.manual_seed(0)
    model = MLP([6, 10, 3], activation="relu").to(dtype)
    inputs, labels = torch.randn(90, 6, dtype=dtype), torch.randint(0, 3, (90,))
    return model, inputs, labels


def two_groups(model, config):
    first, second = model.layers
    return [{"params": list(first.parameters()), "lr": config["lr"] / 3}, {"params": list(second.parameters())}]


def train(model, optimizer, scheduler, inputs, labels, steps, start):
    for step in range(start, start + steps):
        batch = slice(step * 15 % 90, step * 15 % 90 + 15)
        optimizer.zero_grad()
        F.cross_entropy(model(inputs[batch]), labels[batch]).backward()
        optimizer.step()
        scheduler.step()


def run_with_a_stop(first_class, second_class, config, edit_state=lambda state: state):
    """HALF steps with first_class; its state_dict (edited) loaded into a fresh second_class; HALF more."""
    model, inputs, labels = make_problem()
    optimizer = first_class(two_groups(model, config), **config)
    scheduler = step_lr(optimizer)
    train(model, optimizer, scheduler, inputs, labels, HALF, start=0)
    state, scheduler_state = edit_state(copy.deepcopy(optimizer.state_dict())), scheduler.state_dict()
    resumed = second_class(two_groups(model, config), **config)
    resumed.load_state_dict(state)
    resumed_scheduler = step_lr(resumed)
    resumed_scheduler.load_state_dict(scheduler_state)
    train(model, resumed, resumed_scheduler, inputs, labels, HALF, start=HALF)
    return model, resumed


def run_without_stop(optimizer_class, config):
    model, inputs, labels = make_problem()
    optimizer = optimizer_class(two_groups(model, config), **config)
    train(model, optimizer, step_lr(optimizer), inputs, labels, 2 * HALF, start=0)
    return model


def assert_same_parameters(model, reference):
    for (name, param), other in zip(model.named_parameters(), reference.parameters()):
        assert torch.equal(param, other), f"{name} differs by {(param - other).abs().max().item():.3g}"


def assert_same_state(state_dict, reference_state_dict):
    """The same per-parameter keys in torch's order, dtypes and values, and the same group keys."""
    state, reference_state = state_dict["state"], reference_state_dict["state"]
    assert state.keys() == reference_state.keys()
    for index in reference_state:
        assert list(state[index]) == list(reference_state[index])
        for key, value in reference_state[index].items():
            assert state[index][key].dtype == value.dtype and state[index][key].shape == value.shape, (index, key)
            assert torch.equal(state[index][key], value), (index, key)
    for group, reference_group in zip(state_dict["param_groups"], reference_state_dict["param_groups"]):
        assert group.keys() == reference_group.keys()
        # torch's side was built with foreach=False, gdlab's with the default None.
        assert {k: v for k, v in group.items() if k != "foreach"} == {
            k: v for k, v in reference_group.items() if k != "foreach"
        }


@pytest.mark.parametrize("name", RULES)
def test_state_dicts_move_between_gdlab_and_torch_both_ways(name):
    rule = RULES[name]
    torch_class = torch_foreach_false(rule.reference)
    reference = run_without_stop(torch_class, rule.every_state)
    for first, second in ((rule.ours, torch_class), (torch_class, rule.ours), (rule.ours, rule.ours)):
        model, resumed = run_with_a_stop(first, second, rule.every_state)
        assert_same_parameters(model, reference)


def older_state_dict(state_dict, removed_keys):
    """As an older torch saved it: group keys added since missing, steps (and NAdam's
    mu_product) stored as Python floats."""
    for group in state_dict["param_groups"]:
        for key in removed_keys:
            del group[key]
    for param_state in state_dict["state"].values():
        for key in ("step", "mu_product"):
            if key in param_state:
                param_state[key] = float(param_state[key])
    return state_dict


@pytest.mark.parametrize("name", RULES)
def test_an_older_state_dict_loads_and_steps_as_in_torch(name):
    rule = RULES[name]
    torch_class = torch_foreach_false(rule.reference)
    removed = ["maximize", "foreach", "capturable", "differentiable"]
    config = dict(rule.every_state)
    if "decoupled_weight_decay" in rule.ours([nn.Parameter(torch.zeros(1))]).defaults:
        # A state dict from before decoupled_weight_decay existed held an L2 rule.
        removed.append("decoupled_weight_decay")
        config["decoupled_weight_decay"] = False
    def older(state_dict):
        return older_state_dict(state_dict, removed)

    torch_model, torch_resumed = run_with_a_stop(torch_class, torch_class, config, older)
    model, resumed = run_with_a_stop(torch_class, rule.ours, config, older)
    assert_same_parameters(model, torch_model)
    assert_same_state(resumed.state_dict(), torch_resumed.state_dict())
    for param_state in resumed.state.values():
        assert param_state["step"].dim() == 0 and param_state["step"].dtype == torch.float32


# The declaration: init/update, stacking, variants -----------------------------------------------


def class_hparams(rule: Rule, config: dict) -> dict:
    """The class's full hyperparameters for ``config``, as its param group holds them."""
    group = rule.ours([nn.Parameter(torch.zeros(1))], **config).param_groups[0]
    return {key: value for key, value in group.items() if key != "params"}


DECLARATION_CASES = [
    pytest.param(name, config, dtype, id=f"{name}-{i}-{dtype}")
    for name, rule in RULES.items()
    for i, config in enumerate([{}, rule.every_state, {**rule.every_state, "maximize": True, "lr": torch.tensor(0.02)}])
    for dtype in [torch.float64, torch.complex64]
]


@pytest.mark.parametrize("name, config, dtype", DECLARATION_CASES)
def test_declared_init_and_update_on_lists_of_tensors_equal_the_class(name, config, dtype):
    rule = RULES[name]
    declaration = rule.module.RULE
    hparams = class_hparams(rule, config)
    params, class_params = new_tensors(dtype), new_tensors(dtype)
    state = declaration.init(params, hparams)
    assert type(state)._fields == tuple(torch_state_keys(rule, config))
    optimizer = rule.reference(class_params, foreach=False, **config)
    for step in range(20):
        with torch.no_grad():
            declaration.update(params, gradients(params, step), state, **hparams)
        for p, g in zip(class_params, gradients(class_params, step)):
            p.grad = g
        optimizer.step()
        assert_all_equal(params, class_params)
    for index, param in enumerate(class_params):
        for key, value in optimizer.state[param].items():
            assert torch.equal(getattr(state, key)[index], value), (index, key)


def torch_state_keys(rule: Rule, config: dict) -> list[str]:
    param = nn.Parameter(torch.zeros(2))
    param.grad = torch.ones(2)
    optimizer = rule.reference([param], foreach=False, **config)
    optimizer.step()
    return list(optimizer.state[param])


def test_every_rule_is_registered_under_its_name():
    for name, rule in RULES.items():
        declaration = registry.get(name.lower())
        assert declaration is rule.module.RULE and declaration.optimizer is rule.ours
        assert registry.by_optimizer(rule.reference) is declaration
        assert declaration.stackable
        defaults = rule.ours([nn.Parameter(torch.zeros(1))]).defaults
        for hyperparameter in declaration.hyperparameters:
            assert defaults[hyperparameter.name] == hyperparameter.default, hyperparameter.name


K = 3
# One value per member for every numeric hyperparameter; each rule's flags given once for all members.
STACKED_MEMBERS = {
    "Adamax": [{"lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
               {"lr": 0.003, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.01},
               {"lr": 0.02, "betas": (0.5, 0.9), "eps": 1e-4, "weight_decay": 0.1}],
    "NAdam": [{"lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "momentum_decay": 4e-3},
              {"lr": 0.003, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.01, "momentum_decay": 1e-2},
              {"lr": 0.02, "betas": (0.5, 0.9), "eps": 1e-4, "weight_decay": 0.1, "momentum_decay": 1e-3}],
    # beta2 of 0.999, 0.75, 0.6: rectified from step 6, from step 8, never (rho_inf = 4).
    "RAdam": [{"lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
              {"lr": 0.003, "betas": (0.8, 0.75), "eps": 1e-6, "weight_decay": 0.01},
              {"lr": 0.02, "betas": (0.5, 0.6), "eps": 1e-4, "weight_decay": 0.1}],
    "Adadelta": [{"lr": 1.0, "rho": 0.9, "eps": 1e-6, "weight_decay": 0.0},
                 {"lr": 0.5, "rho": 0.95, "eps": 1e-5, "weight_decay": 0.01},
                 {"lr": 2.0, "rho": 0.5, "eps": 1e-4, "weight_decay": 0.1}],
}
STACKED_CASES = [
    pytest.param(name, flags, shared, id=f"{name}-{'-'.join(f'{k}={v}' for k, v in flags.items())}-shared={shared}")
    for name, rule in RULES.items()
    for flags in (
        combinations(decoupled_weight_decay=[False, True], maximize=[False, True])
        if name in ("NAdam", "RAdam") else combinations(maximize=[False, True])
    )
    for shared in [(), ("eps", "weight_decay")]
]


def stacked_hparams(rule: Rule, members: list[dict], flags: dict) -> dict:
    """As the stacked backend hands them over: a hyperparameter the members share as the
    number, one they differ in as a tensor of K values (float64); betas as a pair of either."""
    hparams = class_hparams(rule, {**members[0], **flags})
    for key in members[0]:
        if key == "betas":
            hparams[key] = tuple(stacked_value([m[key][i] for m in members]) for i in range(2))
        else:
            hparams[key] = stacked_value([m[key] for m in members])
    return hparams


def stacked_value(values: list[float]) -> float | torch.Tensor:
    if all(value == values[0] for value in values):
        return values[0]
    return torch.tensor(values, dtype=torch.float64)


@pytest.mark.parametrize("name, flags, shared", STACKED_CASES)
def test_stacked_configurations_each_equal_the_class_run_alone(name, flags, shared):
    rule = RULES[name]
    members = [{**member, **{key: STACKED_MEMBERS[name][0][key] for key in shared}} for member in STACKED_MEMBERS[name]]
    alone = [new_tensors(torch.float64, seed=member)[:3] for member in range(K)]
    stacked = [torch.stack([params[i].detach() for params in alone]) for i in range(3)]
    optimizers = [rule.ours(params, **member, **flags) for params, member in zip(alone, members)]
    hparams = stacked_hparams(rule, members, flags)
    state = rule.module.RULE.init(stacked, hparams)
    for step in range(30):
        member_gradients = [gradients(params, step) for params in alone]
        for params, grads, optimizer in zip(alone, member_gradients, optimizers):
            for p, g in zip(params, grads):
                p.grad = g
            optimizer.step()
        with torch.no_grad():
            rule.module.RULE.update(
                stacked, [torch.stack([grads[i] for grads in member_gradients]) for i in range(3)], state, **hparams
            )
        for member, params in enumerate(alone):
            for i, param in enumerate(params):
                difference = (stacked[i][member] - param).abs().max().item()
                scale = max(1.0, param.abs().max().item())
                assert difference / scale <= 1e-13, (name, step, member, i, difference)


def test_stacked_radam_members_take_different_branches():
    """The stacked test above covers steps where one member is rectified and another is not."""
    steps_to_rectify = []
    for member in STACKED_MEMBERS["RAdam"]:
        beta2 = member["betas"][1]
        rho_inf = 2 / (1 - beta2) - 1
        steps_to_rectify.append(next(
            (t for t in range(1, 31) if rho_inf - 2 * t * beta2**t / (1 - beta2**t) > 5), None
        ))
    assert steps_to_rectify == [6, 8, None]


def nadam_member_products(hparams):
    return nadam.init([torch.zeros(K, 2)], hparams).mu_product[0]


def test_stacked_nadam_keeps_one_momentum_product_per_member_in_torchs_dtype():
    rule = RULES["NAdam"]
    hparams = stacked_hparams(rule, STACKED_MEMBERS["NAdam"], {})
    assert nadam_member_products(hparams).shape == (K,)
    assert nadam_member_products(hparams).dtype == torch.float32
    assert nadam_member_products(class_hparams(rule, {})).shape == ()


def variant(rule: Rule, name: str):
    (found,) = [v for v in rule.module.RULE.variants if v.name == name]
    return found


def run_update(update, init, hparams, steps, dtype=torch.float64):
    params = new_tensors(dtype)
    state = init(params, hparams)
    with torch.no_grad():
        for step in range(steps):
            update(params, gradients(params, step), state, **hparams)
    return params


def test_adamax_eps_outside_the_max_is_the_rule_when_eps_is_0_and_differs_otherwise():
    rule = RULES["Adamax"]
    declaration = rule.module.RULE
    found = variant(rule, "eps outside the max")
    for eps, equal in ((0.0, True), (1e-3, False)):
        hparams = class_hparams(rule, {"lr": 0.01, "eps": eps, "weight_decay": 0.01})
        mistaken = run_update(found.update, declaration.init, hparams, 20)
        reference = run_update(declaration.update, declaration.init, hparams, 20)
        assert all(torch.equal(a, b) for a, b in zip(mistaken, reference)) is equal
        assert found.applies(hparams) is not equal


def test_nadam_constant_momentum_is_the_textbook_formula_with_mu_equal_to_beta1():
    rule = RULES["NAdam"]
    hparams = class_hparams(rule, {"lr": 0.01, "betas": (0.8, 0.99)})
    mistaken = run_update(variant(rule, "constant momentum").update, nadam.init, hparams, 10)
    reference = run_update(nadam.update, nadam.init, hparams, 10)
    assert not torch.allclose(mistaken[0], reference[0])
    # optax's NAdam: theta -= lr * (beta1 m / (1 - beta1^(t+1)) + (1 - beta1) g / (1 - beta1^t)) / (sqrt(v_hat) + eps)
    beta1, beta2 = hparams["betas"]
    expected = new_tensors(torch.float64)
    with torch.no_grad():
        m = [torch.zeros_like(p) for p in expected]
        v = [torch.zeros_like(p) for p in expected]
        for step in range(10):
            t = step + 1
            for p, g, m_i, v_i in zip(expected, gradients(expected, step), m, v):
                m_i.mul_(beta1).add_((1 - beta1) * g)
                v_i.mul_(beta2).add_((1 - beta2) * g * g)
                nesterov = beta1 * m_i / (1 - beta1 ** (t + 1)) + (1 - beta1) * g / (1 - beta1**t)
                p.sub_(hparams["lr"] * nesterov / ((v_i / (1 - beta2**t)).sqrt() + hparams["eps"]))
    for got, want in zip(mistaken, expected):
        # mu_product is kept in float32 as torch keeps it, so agreement is to float32's precision.
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)


def test_adadelta_eps_outside_the_roots_takes_a_first_step_sqrt_eps_times_too_small():
    rule = RULES["Adadelta"]
    found = variant(rule, "eps outside the square roots")
    hparams = class_hparams(rule, {})
    assert found.kind == "bug" and found.applies(hparams)
    start = new_tensors(torch.float64)
    mistaken = run_update(found.update, adadelta.init, hparams, 1)
    reference = run_update(adadelta.update, adadelta.init, hparams, 1)
    rho, eps, lr = hparams["rho"], hparams["eps"], hparams["lr"]
    (g, *_) = gradients(start, 0)
    expected_mistaken = start[0] - lr * eps / (((1 - rho) * g * g).sqrt() + eps) * g
    expected_reference = start[0] - lr * math.sqrt(eps) / ((1 - rho) * g * g + eps).sqrt() * g
    torch.testing.assert_close(mistaken[0], expected_mistaken, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(reference[0], expected_reference, rtol=1e-12, atol=1e-15)
