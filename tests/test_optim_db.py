"""Every registered rule against torch's own optimizer test database (``optim_db``).

torch's optimizer tests draw their inputs from
``torch.testing._internal.common_optimizers.optim_db``: per optimizer, the
constructor inputs it is tested with (``optim_inputs_func``), the inputs that
must fail and how (``optim_error_inputs_func``), whether it takes complex
parameters and sparse gradients, and its LR schedulers. This file runs each
of them on gdlab's class and on torch's (``foreach=False``, the declaration's
``reference_kwargs``) and asks for the same outcome: torch.equal parameters,
state and returned losses after every one of ``STEPS`` steps, or the same
exception.

It is driven from both sides, so nothing here lists rules or inputs: every
declaration of ``gdlab.optim.registry`` whose ``reference`` has an
OptimizerInfo in optim_db is checked, with whatever inputs this torch's
database holds. A rule that needs a special problem gets the first of this
file's small problems that torch's own class accepts (a two-layer network
with biases; the same without biases, for matrix-only rules such as Muon;
an embedding with sparse gradients, for SparseAdam); every step is taken
with a closure, so closure-only rules (LBFGS) run too. Where torch accepts
none of them the case is skipped, with torch's refusals as the reason, and
is left to the rule's own test file.
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import math
import os
import re
import sys
import types
import unittest
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import ReduceLROnPlateau

from gdlab.optim import registry

STEPS = 12
# A rule whose step needs a closure (LBFGS) runs up to max_iter (20) updates in one step.
CLOSURE_RULE_STEPS = 2
DTYPES = [torch.float32, torch.float64]
COMPLEX_DTYPES = [torch.complex64, torch.complex128]
CORE_RULES = {"sgd", "adam", "adamw", "rmsprop", "adagrad"}


def _load_common_optimizers():
    """torch's test database, imported without leaving torch's testing settings behind.

    ``common_utils`` (which it imports) needs ``expecttest`` only as the base
    of torch's own TestCase; where that package is missing a stand-in with
    that one class is installed. Importing it freezes ``torch.backends`` flags
    and sets an environment variable for the whole process; both are undone.
    """
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
INFOS = {info.optim_cls: info for info in common_optimizers.optim_db}


@dataclass(frozen=True)
class Rule:
    name: str
    optimizer: type[torch.optim.Optimizer]
    reference: type[torch.optim.Optimizer]
    reference_kwargs: dict
    info: object  # torch's OptimizerInfo

    @property
    def steps(self) -> int:
        return CLOSURE_RULE_STEPS if self.info.step_requires_closure else STEPS

    def make(self, params, kwargs):
        return self.optimizer(params, **copy.deepcopy(kwargs))

    def make_reference(self, params, kwargs):
        return self.reference(params, **{**copy.deepcopy(kwargs), **self.reference_kwargs})


RULES = {
    declaration.name: Rule(
        declaration.name,
        declaration.optimizer,
        declaration.reference,
        dict(declaration.reference_kwargs),
        INFOS[declaration.reference],
    )
    for declaration in registry.declarations()
    if declaration.reference is not None and declaration.reference in INFOS
}


# ---------------------------------------------------------------------------
# Small problems: each builds its parameters from a fixed seed and a loss of them.


@dataclass(frozen=True)
class Problem:
    name: str
    build: Callable[[torch.dtype], tuple[list[nn.Parameter], Callable[[], torch.Tensor]]]


def _network(bias: bool):
    def build(dtype):
        generator = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        first, second = nn.Linear(3, 4, bias=bias), nn.Linear(4, 2, bias=bias)
        model = nn.Sequential(first, nn.Tanh(), second).to(dtype)
        inputs = torch.randn(8, 3, generator=generator).to(dtype)
        targets = torch.randn(8, 2, generator=generator).to(dtype)
        return list(model.parameters()), lambda: F.mse_loss(model(inputs), targets)

    return build


def _embedding(dtype):
    """Sparse gradients only: rows 3 and 4 are never looked up, row 2 three times."""
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    embedding = nn.Embedding(6, 3, sparse=True).to(dtype)
    indices = torch.tensor([0, 2, 2, 5, 1, 2])
    targets = torch.randn(6, 3, generator=generator).to(dtype)
    return [embedding.weight], lambda: (embedding(indices) - targets).tanh().pow(2).sum()


def _complex_least_squares(dtype):
    """|W x + b - y|^2 with complex W, b (and data): a real loss of complex parameters."""
    generator = torch.Generator().manual_seed(0)
    weight = nn.Parameter(torch.randn(3, 4, generator=generator, dtype=dtype) * 0.5)
    bias = nn.Parameter(torch.randn(3, generator=generator, dtype=dtype) * 0.1)
    inputs = torch.randn(4, 5, generator=generator, dtype=dtype)
    targets = torch.randn(3, 5, generator=generator, dtype=dtype)

    def loss():
        residual = weight @ inputs + bias[:, None] - targets
        return (residual.abs() ** 2).mean() + 0.1 * torch.view_as_real(weight).tanh().sum()

    return [weight, bias], loss


NETWORK = Problem("network (weights and biases)", _network(bias=True))
MATRICES = Problem("network without biases (matrices only)", _network(bias=False))
SPARSE = Problem("embedding with sparse gradients", _embedding)
COMPLEX = Problem("complex least squares", _complex_least_squares)
DENSE_PROBLEMS = (NETWORK, MATRICES, SPARSE)


@dataclass
class Run:
    params: list[nn.Parameter]
    optimizer: torch.optim.Optimizer
    schedulers: list
    closure: Callable[[], torch.Tensor]
    losses: list[torch.Tensor]


def start(make, problem, dtype, kwargs, schedulers=()):
    """One optimizer (``make``: gdlab's or torch's) on a fresh copy of ``problem``."""
    params, loss_of = problem.build(dtype)
    optimizer = make(params, kwargs)

    def closure():
        optimizer.zero_grad()
        loss = loss_of()
        loss.backward()
        return loss

    return Run(params, optimizer, [scheduler(optimizer) for scheduler in schedulers], closure, [])


def step(run):
    loss = run.optimizer.step(run.closure)
    run.losses.append(loss)
    for scheduler in run.schedulers:
        if isinstance(scheduler, ReduceLROnPlateau):
            scheduler.step(loss.item() if isinstance(loss, torch.Tensor) else loss)
        else:
            scheduler.step()


def pick_problem(rule, kwargs, dtype, candidates, schedulers=()):
    """The first problem on which torch's class takes two steps with these inputs, or a skip."""
    refusals = []
    for problem in candidates:
        try:
            run = start(rule.make_reference, problem, dtype, kwargs, schedulers)
            step(run)
            step(run)
            return problem
        except Exception as error:  # torch's refusal decides; gdlab is not run yet
            refusals.append(f"{problem.name}: {type(error).__name__}: {error}")
    pytest.skip(
        f"torch's {rule.reference.__name__} itself accepts none of this file's problems with {kwargs}, "
        f"so there is nothing to compare with ({'; '.join(refusals)}); the rule's own tests cover it"
    )


# ---------------------------------------------------------------------------
# Comparison, bit for bit (NaN where torch has NaN).


def assert_same(value, expected, where):
    if isinstance(expected, torch.Tensor):
        assert isinstance(value, torch.Tensor), f"{where}: {value!r} is not a tensor, torch has {expected!r}"
        assert value.dtype == expected.dtype, f"{where}: dtype {value.dtype}, torch {expected.dtype}"
        assert value.shape == expected.shape, f"{where}: shape {tuple(value.shape)}, torch {tuple(expected.shape)}"
        assert value.is_sparse == expected.is_sparse, f"{where}: sparse {value.is_sparse}, torch {expected.is_sparse}"
        if expected.is_sparse:
            value, expected = value.to_dense(), expected.to_dense()
        value, expected = value.detach(), expected.detach()
        if value.is_floating_point() or value.is_complex():
            nan, expected_nan = torch.isnan(value), torch.isnan(expected)
            assert torch.equal(nan, expected_nan), f"{where}: NaN where torch has none (or the reverse)"
            value, expected = value[~nan], expected[~expected_nan]
        if not torch.equal(value, expected):
            difference = (value - expected).abs().max().item()
            raise AssertionError(f"{where}: differs from torch by up to {difference:.3g}")
    elif isinstance(expected, dict):
        assert isinstance(value, dict), f"{where}: {value!r} is not a dict"
        assert set(value) == set(expected), f"{where}: keys {sorted(map(str, value))}, torch {sorted(map(str, expected))}"
        for key in expected:
            assert_same(value[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert isinstance(value, (list, tuple)) and len(value) == len(expected), f"{where}: {value!r} vs torch {expected!r}"
        for index, (item, expected_item) in enumerate(zip(value, expected)):
            assert_same(item, expected_item, f"{where}[{index}]")
    elif isinstance(expected, float) and math.isnan(expected):
        assert isinstance(value, float) and math.isnan(value), f"{where}: {value!r}, torch nan"
    else:
        assert value == expected, f"{where}: {value!r}, torch {expected!r}"


def assert_same_groups(run, reference, rule):
    """The same param group keys and values as torch's (but the switches only the reference was given)."""
    for index, (group, expected) in enumerate(zip(run.optimizer.param_groups, reference.optimizer.param_groups)):
        assert set(group) == set(expected), (
            f"param_groups[{index}] keys: gdlab lacks {sorted(set(expected) - set(group))}, "
            f"has more {sorted(set(group) - set(expected))}"
        )
        for key in expected:
            if key != "params" and key not in rule.reference_kwargs:
                assert_same(group[key], expected[key], f"param_groups[{index}][{key!r}]")


def run_side_by_side(rule, problem, dtype, kwargs, steps=None, schedulers=(), gdlab_run=None, reference_run=None):
    """gdlab's class and torch's, each on its own copy of ``problem``, compared after every step."""
    run = gdlab_run or start(rule.make, problem, dtype, kwargs, schedulers)
    reference = reference_run or start(rule.make_reference, problem, dtype, kwargs, schedulers)
    for number in range(1, (steps or rule.steps) + 1):
        step(reference)
        step(run)
        for index, (param, expected) in enumerate(zip(run.params, reference.params)):
            assert_same(param, expected, f"{rule.name} {kwargs} {dtype}, step {number}: parameter {index}")
        assert_same(run.losses[-1], reference.losses[-1], f"{rule.name}, step {number}: the loss step() returned")
    assert_same(run.optimizer.state_dict()["state"], reference.optimizer.state_dict()["state"], "state")
    assert_same_groups(run, reference, rule)
    return run, reference


# ---------------------------------------------------------------------------
# Cases, read off optim_db and the registry.


def _describe(value):
    if isinstance(value, torch.Tensor):
        return f"tensor{list(value.shape)}"
    if isinstance(value, (tuple, list)):
        return "(" + ",".join(_describe(item) for item in value) + ")"
    return repr(value)


def _input_id(optim_input):
    described = ",".join(f"{key}={_describe(value)}" for key, value in optim_input.kwargs.items())
    return re.sub(r"\s+", "_", f"{optim_input.desc}[{described}]")


def _inputs(rule):
    return rule.info.optim_inputs_func("cpu")


def with_tensor_hyperparameters(rule, kwargs):
    """``kwargs`` with lr, and betas where the rule has them, as 0-dim float32 tensors (as
    optim_db's own tensor inputs); None when there is nothing to turn into a tensor.

    optim_db's CPU inputs hold a tensor lr for some rules only and tensor betas for none
    (those are in its CUDA inputs, with capturable): this derives them for every input.
    (Shaped ones, (1,) or (1, 1, 1), only Adam and AdamW squeeze on CPU: test_optim_exact.py.)
    """
    parameters = inspect.signature(rule.reference.__init__).parameters
    derived = dict(kwargs)
    if "lr" in parameters:
        lr = kwargs.get("lr", parameters["lr"].default)
        if isinstance(lr, (int, float)) and not isinstance(lr, bool):
            derived["lr"] = torch.tensor(float(lr))
    if "betas" in parameters:
        betas = kwargs.get("betas", parameters["betas"].default)
        if isinstance(betas, tuple) and len(betas) == 2 and all(isinstance(beta, float) for beta in betas):
            derived["betas"] = (torch.tensor(betas[0]), torch.tensor(betas[1]))
    changed = any(derived[key] is not kwargs.get(key) for key in derived)
    return derived if changed else None


def input_variants(rule):
    """(index, tensors, id) for every CPU input of optim_db, as given and with tensor hyperparameters."""
    variants = []
    for index, optim_input in enumerate(_inputs(rule)):
        variants.append((index, False, _input_id(optim_input)))
        if optim_input.params is None and with_tensor_hyperparameters(rule, optim_input.kwargs) is not None:
            variants.append((index, True, _input_id(optim_input) + "-as_tensors"))
    return variants


def input_cases(dtypes, only=lambda info: True, tensors=(False, True)):
    return [
        pytest.param(name, index, as_tensors, dtype, id=f"{name}-{label}-{str(dtype).removeprefix('torch.')}")
        for name, rule in RULES.items()
        if only(rule.info)
        for index, as_tensors, label in input_variants(rule)
        if as_tensors in tensors
        for dtype in dtypes
    ]


def input_kwargs(name, index, as_tensors=False):
    """The constructor keywords of optim_db's input ``index`` for rule ``name``."""
    optim_input = _inputs(RULES[name])[index]
    if optim_input.params is not None:
        pytest.skip(f"this input brings its own params ({optim_input.desc}); the rule's own tests cover it")
    if as_tensors:
        return with_tensor_hyperparameters(RULES[name], optim_input.kwargs)
    return optim_input.kwargs


def test_every_gdlab_rule_with_a_torch_reference_is_checked_here():
    """The five classic rules at least; a rule whose reference optim_db lacks is named here."""
    assert CORE_RULES <= set(RULES), f"missing from this file: {sorted(CORE_RULES - set(RULES))}"
    for declaration in registry.declarations():
        if declaration.reference is not None:
            assert declaration.name in RULES, (
                f"{declaration.name}: its reference {declaration.reference.__name__} has no OptimizerInfo in optim_db"
            )


@pytest.mark.parametrize("name", RULES)
def test_signature_is_torchs(name):
    """Parameter names, order, kinds and defaults of the constructor are torch's."""
    rule = RULES[name]

    def shape(cls):
        return [(p.name, p.kind, p.default) for p in inspect.signature(cls.__init__).parameters.values()]

    assert shape(rule.optimizer) == shape(rule.reference)


@pytest.mark.parametrize("name, index, as_tensors, dtype", input_cases(DTYPES))
def test_every_optim_db_input_steps_exactly_like_torch(name, index, as_tensors, dtype):
    rule = RULES[name]
    kwargs = input_kwargs(name, index, as_tensors)
    problem = pick_problem(rule, kwargs, dtype, DENSE_PROBLEMS)
    run_side_by_side(rule, problem, dtype, kwargs)


@pytest.mark.parametrize(
    "name, index, as_tensors, dtype", input_cases(COMPLEX_DTYPES, only=lambda info: info.supports_complex)
)
def test_complex_parameters_step_exactly_like_torch(name, index, as_tensors, dtype):
    rule = RULES[name]
    kwargs = input_kwargs(name, index, as_tensors)
    problem = pick_problem(rule, kwargs, dtype, (COMPLEX,))
    run_side_by_side(rule, problem, dtype, kwargs)


def scheduler_cases():
    """Each of optim_db's scheduler_inputs for the rule, on its first input and on every input
    whose lr is a tensor (given or derived): schedulers write a tensor lr in place, in float32."""
    cases = []
    for name, rule in RULES.items():
        for index, as_tensors, label in input_variants(rule):
            optim_input = _inputs(rule)[index]
            tensor_lr = as_tensors or isinstance(optim_input.kwargs.get("lr"), torch.Tensor)
            if index != 0 and not tensor_lr:
                continue
            for position in range(len(rule.info.scheduler_inputs)):
                cases.append(pytest.param(name, index, as_tensors, position, id=f"{name}-{label}-schedulers{position}"))
    return cases


@pytest.mark.parametrize("name, index, as_tensors, position", scheduler_cases())
def test_torchs_schedulers_for_the_rule_drive_it_exactly(name, index, as_tensors, position):
    """optim_db's scheduler_inputs (StepLR, ReduceLROnPlateau ...) drive gdlab's class as torch's."""
    rule = RULES[name]
    kwargs = input_kwargs(name, index, as_tensors)
    schedulers = rule.info.scheduler_inputs[position]
    problem = pick_problem(rule, kwargs, torch.float32, DENSE_PROBLEMS, schedulers)
    run, _ = run_side_by_side(rule, problem, torch.float32, kwargs, schedulers=schedulers)
    assert run.schedulers  # the schedulers ran


def sparse_cases():
    cases = []
    for name, rule in RULES.items():
        info = rule.info
        if not (info.supports_sparse or info.only_supports_sparse_grads):
            continue
        sparse_kwargs, sparse_schedulers = info.metadata_for_sparse
        configurations = [("metadata_for_sparse", sparse_kwargs, sparse_schedulers)]
        for optim_input in _inputs(rule):
            configurations.append((_input_id(optim_input), optim_input.kwargs, ()))
            as_tensors = with_tensor_hyperparameters(rule, optim_input.kwargs)
            if as_tensors is not None:
                configurations.append((_input_id(optim_input) + "-as_tensors", as_tensors, ()))
        for label, kwargs, schedulers in configurations:
            for dtype in DTYPES:
                cases.append(
                    pytest.param(name, kwargs, schedulers, dtype, id=f"{name}-{label}-{str(dtype).removeprefix('torch.')}")
                )
    return cases


@pytest.mark.parametrize("name, kwargs, schedulers, dtype", sparse_cases())
def test_sparse_gradients_are_handled_exactly_like_torch(name, kwargs, schedulers, dtype):
    """Where optim_db says the rule takes sparse gradients: the same parameters and state as
    torch's, or, for inputs torch refuses with sparse gradients (weight decay), the same error."""
    rule = RULES[name]
    reference = start(rule.make_reference, SPARSE, dtype, kwargs, schedulers)
    try:
        step(reference)
    except Exception as error:
        run = start(rule.make, SPARSE, dtype, kwargs, schedulers)
        with pytest.raises(type(error)) as raised:
            step(run)
        assert str(error) in str(raised.value), f"torch: {error}; gdlab: {raised.value}"
        return
    run, _ = run_side_by_side(rule, SPARSE, dtype, kwargs, schedulers=schedulers)
    assert run.params[0].grad.is_sparse  # the sparse path is what ran


def error_cases():
    return [
        pytest.param(name, index, id=f"{name}-{index}-{re.sub(r'[^A-Za-z0-9]+', '_', error.optimizer_error_input.desc)}")
        for name, rule in RULES.items()
        if rule.info.optim_error_inputs_func is not None
        for index, error in enumerate(rule.info.optim_error_inputs_func("cpu", torch.float32))
    ]


def expect_error(optimizer_class, error_input):
    """As torch's test_errors: the exception (or warning) type, its message matching error_regex."""
    optim_input = error_input.optimizer_error_input
    expecting = pytest.warns if issubclass(error_input.error_type, Warning) else pytest.raises
    if error_input.error_on == OptimizerErrorEnum.CONSTRUCTION_ERROR:
        with expecting(error_input.error_type, match=error_input.error_regex):
            optimizer_class(optim_input.params, **optim_input.kwargs)
    else:
        optimizer = optimizer_class(optim_input.params, **optim_input.kwargs)
        with expecting(error_input.error_type, match=error_input.error_regex):
            optimizer.step()


@pytest.mark.parametrize("name, index", error_cases())
def test_every_optim_db_error_input_fails_as_in_torch(name, index):
    rule = RULES[name]
    # Fresh inputs for each class: a step error may have touched its parameters.
    expect_error(rule.reference, rule.info.optim_error_inputs_func("cpu", torch.float32)[index])
    expect_error(rule.optimizer, rule.info.optim_error_inputs_func("cpu", torch.float32)[index])


def old_state_dict(state_dict, removed_keys):
    """``state_dict`` as an older torch (or another library) saved it: the group keys
    ``removed_keys`` absent and every ``step`` a Python number."""
    old = copy.deepcopy(state_dict)
    for group in old["param_groups"]:
        for key in removed_keys:
            group.pop(key, None)
    for state in old["state"].values():
        if isinstance(state.get("step"), torch.Tensor):
            state["step"] = float(state["step"].item())
    return old


def loads_and_steps(rule, problem, dtype, kwargs, state_dict):
    run = start(rule.make_reference, problem, dtype, kwargs)
    run.optimizer.load_state_dict(copy.deepcopy(state_dict))
    step(run)


@pytest.mark.parametrize("name, index, as_tensors, dtype", input_cases([torch.float32]))
def test_an_old_state_dict_loads_and_steps_like_torch(name, index, as_tensors, dtype):
    """Group keys that torch fills in on load (each one its __setstate__ tolerates missing:
    maximize, foreach, capturable, differentiable, fused ...) removed, and steps as numbers."""
    rule = RULES[name]
    kwargs = input_kwargs(name, index, as_tensors)
    problem = pick_problem(rule, kwargs, dtype, DENSE_PROBLEMS)
    trained = start(rule.make_reference, problem, dtype, kwargs)
    trained_steps = rule.steps // 2
    for _ in range(trained_steps):
        step(trained)
    saved = trained.optimizer.state_dict()
    removable = []
    for key in saved["param_groups"][0]:
        if key in ("params", "param_names"):
            continue
        try:
            loads_and_steps(rule, problem, dtype, kwargs, old_state_dict(saved, [key]))
            removable.append(key)
        except Exception:
            pass  # torch needs this key
    old = old_state_dict(saved, removable)

    def resumed(make):
        run = start(make, problem, dtype, kwargs)
        with torch.no_grad():  # the parameters where training stopped
            for param, trained_param in zip(run.params, trained.params):
                param.copy_(trained_param)
        run.optimizer.load_state_dict(copy.deepcopy(old))
        return run

    run, reference = resumed(rule.make), resumed(rule.make_reference)
    assert_same_groups(run, reference, rule)
    run_side_by_side(rule, problem, dtype, kwargs, steps=rule.steps - trained_steps, gdlab_run=run, reference_run=reference)
