"""LBFGS and SparseAdam from scratch are bit-for-bit torch.optim's (torch 2.13).

LBFGS: a small MLP on changing batches and the Rosenbrock function, with and
without the strong-Wolfe line search, float32 and float64, several
``step(closure)`` calls each running many iterations, every piece of state
compared after every call, state dicts moved both ways. SparseAdam: embeddings
with sparse gradients (``nn.Embedding(sparse=True)``), two param groups, an LR
schedule, closures, maximize, state dicts both ways and an older one. Both
against torch's own test inputs (``optim_db``) and error inputs.
"""

import copy
import functools
import importlib.util
import inspect
import io
import os
import sys
import types
import unittest

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gdlab.models import MLP
from gdlab.optim.rules import lbfgs, sparseadam
from gdlab.optim.rules.lbfgs import LBFGS
from gdlab.optim.rules.sparseadam import SparseAdam

DTYPES = [torch.float32, torch.float64]


def assert_same(value, reference, where="state"):
    """Equal in type and, for tensors, in dtype and every bit; lists and dicts entry by entry."""
    assert type(value) is type(reference), f"{where}: {type(value).__name__} vs {type(reference).__name__}"
    if isinstance(reference, torch.Tensor):
        assert value.dtype == reference.dtype, f"{where}: {value.dtype} vs {reference.dtype}"
        assert torch.equal(value, reference), f"{where} differs"
    elif isinstance(reference, (list, tuple)):
        assert len(value) == len(reference), f"{where}: length {len(value)} vs {len(reference)}"
        for index, (item, reference_item) in enumerate(zip(value, reference)):
            assert_same(item, reference_item, f"{where}[{index}]")
    elif isinstance(reference, dict):
        assert list(value) == list(reference), f"{where}: keys {list(value)} vs {list(reference)}"
        for key in reference:
            assert_same(value[key], reference[key], f"{where}[{key!r}]")
    else:
        assert value == reference, f"{where}: {value!r} vs {reference!r}"


def assert_same_parameters(module, reference, where=""):
    for (name, param), other in zip(module.named_parameters(), reference.parameters(), strict=True):
        assert torch.equal(param, other), f"{where} {name} differs by {(param - other).abs().max().item():.3g}"


def saved_and_loaded(state):
    """Through bytes, as a checkpoint would go (weights_only: tensors, numbers, lists, None)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@functools.cache
def common_optimizers():
    """torch's optimizer test database module, imported without leaving torch's test settings behind.

    It needs ``expecttest`` only as the base of torch's own TestCase: where that
    package is missing, a stand-in holding that one class takes its place.
    The import freezes ``torch.backends`` flags and sets an environment
    variable for the whole process; both are undone (as tests/test_optim_db.py does).
    """
    if importlib.util.find_spec("expecttest") is None:
        stand_in = types.ModuleType("expecttest")
        stand_in.TestCase = unittest.TestCase
        stand_in.ACCEPT = False
        sys.modules["expecttest"] = stand_in
    frozen = torch.backends.flags_frozen()
    environment = dict(os.environ)
    from torch.testing._internal import common_optimizers as module

    if not frozen:
        vars(torch.backends)["__allow_nonbracketed_mutation_flag"] = True
    for key in set(os.environ) - set(environment):
        del os.environ[key]
    return module


def optimizer_info(optim_cls):
    """torch's own OptimizerInfo for ``optim_cls`` in ``optim_db``."""
    return next(info for info in common_optimizers().optim_db if info.optim_cls is optim_cls)


# ---------------------------------------------------------------- LBFGS


def mlp_problem(dtype, seed=0):
    torch.manual_seed(seed)
    model = MLP([6, 10, 10, 3], activation="tanh").to(dtype)
    inputs = torch.randn(120, 6, dtype=dtype)
    labels = torch.randint(0, 3, (120,))
    return model, inputs, labels


def mlp_closure(model, optimizer, inputs, labels, call):
    """The loss of batch ``call`` (batches change between step calls, as in mini-batch L-BFGS)."""
    batch = slice(call * 40 % 120, call * 40 % 120 + 40)

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs[batch]), labels[batch])
        loss.backward()
        return loss

    return closure


LBFGS_CONFIGS = {
    "fixed-step": {"lr": 0.5},
    "strong_wolfe": {"line_search_fn": "strong_wolfe"},
    # Short memory (shifted many times), few iterations and evaluations (line search cut short).
    "strong_wolfe-short": {"line_search_fn": "strong_wolfe", "history_size": 3, "max_iter": 8, "max_eval": 9},
    "fixed-step-short": {"lr": 0.3, "history_size": 2, "max_iter": 6, "tolerance_change": 1e-6},
}


def lbfgs_side_by_side(config, dtype, calls=8):
    """gdlab's and torch's LBFGS on copies of one MLP (plus a parameter no loss reaches), with StepLR."""
    model, inputs, labels = mlp_problem(dtype)
    reference = copy.deepcopy(model)
    spare, reference_spare = (nn.Parameter(torch.ones(4, dtype=dtype)) for _ in range(2))
    optimizer = LBFGS([*model.parameters(), spare], **config)
    reference_optimizer = torch.optim.LBFGS([*reference.parameters(), reference_spare], **config)
    schedulers = [torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
                  for opt in (optimizer, reference_optimizer)]
    for call in range(calls):
        loss = optimizer.step(mlp_closure(model, optimizer, inputs, labels, call))
        reference_loss = reference_optimizer.step(mlp_closure(reference, reference_optimizer, inputs, labels, call))
        assert torch.equal(loss, reference_loss), f"loss returned by call {call}"
        assert_same_parameters(model, reference, f"{config} {dtype} after call {call}:")
        assert_same(optimizer.state_dict(), reference_optimizer.state_dict(), f"state_dict after call {call}")
        for scheduler in schedulers:
            scheduler.step()
    assert torch.equal(spare, torch.ones(4, dtype=dtype))
    return model, optimizer, reference_optimizer


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", LBFGS_CONFIGS)
def test_lbfgs_mlp_bit_exact_with_torch(name, dtype):
    config = LBFGS_CONFIGS[name]
    _, optimizer, _ = lbfgs_side_by_side(config, dtype)
    state = optimizer.state[optimizer.param_groups[0]["params"][0]]
    # Many iterations ran and the memory filled up (and with a short history, shifted).
    assert state["n_iter"] >= 30
    assert len(state["old_dirs"]) == config.get("history_size", len(state["old_dirs"])) > 1
    assert optimizer.param_groups[0]["lr"] < config.get("lr", 1)  # StepLR moved it


def rosenbrock(x):
    return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("config", [{"lr": 1e-3}, {"line_search_fn": "strong_wolfe", "history_size": 10}],
                         ids=["fixed-step", "strong_wolfe"])
def test_lbfgs_rosenbrock_bit_exact_with_torch(config, dtype):
    start = torch.tensor([-1.5, 2.0], dtype=dtype)
    x, x_reference = nn.Parameter(start.clone()), nn.Parameter(start.clone())
    optimizer, reference_optimizer = LBFGS([x], **config), torch.optim.LBFGS([x_reference], **config)

    def closure_for(param, opt):
        def closure():
            opt.zero_grad()
            loss = rosenbrock(param)
            loss.backward()
            return loss
        return closure

    for call in range(10):
        loss = optimizer.step(closure_for(x, optimizer))
        assert torch.equal(loss, reference_optimizer.step(closure_for(x_reference, reference_optimizer)))
        assert torch.equal(x, x_reference), f"call {call}: {x.tolist()} vs {x_reference.tolist()}"
        assert_same(optimizer.state_dict(), reference_optimizer.state_dict())
    assert rosenbrock(x.detach()) < rosenbrock(start)


def rosenbrock_problem(dtype):
    x = nn.Parameter(torch.tensor([-1.5, 2.0], dtype=dtype))
    return [x], lambda: rosenbrock(x)


def quartic_problem(dtype):
    torch.manual_seed(0)
    matrix, target = torch.randn(8, 4, dtype=dtype), torch.randn(8, dtype=dtype)
    matrix[:, 0] *= 30  # badly conditioned
    x = nn.Parameter(torch.zeros(4, dtype=dtype))
    return [x], lambda: ((matrix @ x - target) ** 2).sum() + (x**4).sum()


def small_mlp_problem(dtype):
    torch.manual_seed(18)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).to(dtype)
    inputs, labels = torch.randn(20, 3, dtype=dtype), torch.randint(0, 2, (20,))
    return list(model.parameters()), lambda: F.cross_entropy(model(inputs), labels)


def parabola_problem(dtype):
    x = nn.Parameter(torch.tensor([3.0], dtype=dtype))
    return [x], lambda: (x**2).sum()


# Problems and settings (found by tracing the line search) that reach its rarer paths.
LINE_SEARCH_EDGES = {
    # A tiny first step: extrapolation spends all of max_eval before bracketing anything.
    "bracketing-runs-out": (rosenbrock_problem, torch.float64,
                            {"line_search_fn": "strong_wolfe", "lr": 1e-3, "max_eval": 3}),
    # float32 near a minimum: the zoom bracket shrinks below tolerance_change, then so does the step.
    "bracket-below-tolerance": (quartic_problem, torch.float32, {"line_search_fn": "strong_wolfe"}),
    # A trial point at the high end of the bracket, moved 10% inside; then the gradient vanishes.
    "trial-pulled-inside": (small_mlp_problem, torch.float64,
                            {"line_search_fn": "strong_wolfe", "lr": 3, "history_size": 3}),
    # Fixed steps shorter than tolerance_change.
    "step-below-tolerance": (rosenbrock_problem, torch.float32, {"lr": 1e-3, "tolerance_change": 1e-4}),
    # A step from 3 to -3 across the parabola x^2: the loss does not change, the iteration stops.
    "loss-unchanged": (parabola_problem, torch.float64, {"lr": 6}),
}


@pytest.mark.parametrize("name", LINE_SEARCH_EDGES)
def test_lbfgs_line_search_edge_paths_bit_exact_with_torch(name):
    make_problem, dtype, config = LINE_SEARCH_EDGES[name]
    params, loss_fn = make_problem(dtype)
    reference_params, reference_loss_fn = make_problem(dtype)
    optimizer, reference_optimizer = LBFGS(params, **config), torch.optim.LBFGS(reference_params, **config)

    def closure_for(loss_fn, opt):
        def closure():
            opt.zero_grad()
            loss = loss_fn()
            loss.backward()
            return loss
        return closure

    for call in range(10):
        loss = optimizer.step(closure_for(loss_fn, optimizer))
        assert torch.equal(loss, reference_optimizer.step(closure_for(reference_loss_fn, reference_optimizer)))
        for param, reference in zip(params, reference_params, strict=True):
            assert torch.equal(param, reference), f"{name}: call {call}"
        assert_same(optimizer.state_dict(), reference_optimizer.state_dict())


def test_lbfgs_sparse_gradients_bit_exact_with_torch():
    """LBFGS reads a sparse gradient (nn.Embedding(sparse=True)) as its dense equivalent, as torch does."""
    model, batches = embedding_problem(torch.float64)
    reference = copy.deepcopy(model)
    optimizer = LBFGS(model.parameters(), line_search_fn="strong_wolfe", history_size=5)
    reference_optimizer = torch.optim.LBFGS(reference.parameters(), line_search_fn="strong_wolfe", history_size=5)
    for call in range(5):
        for net, opt in ((model, optimizer), (reference, reference_optimizer)):
            def closure(net=net, opt=opt):
                opt.zero_grad()
                loss = embedding_loss(net, batches, call)
                loss.backward()
                assert net.words.weight.grad.is_sparse
                return loss
            opt.step(closure)
        assert_same_parameters(model, reference, f"call {call}:")


def lbfgs_run_with_a_stop(first_class, second_class, config, calls=3):
    """``calls`` step calls with first_class, its state saved and loaded into second_class, ``calls`` more."""
    model, inputs, labels = mlp_problem(torch.float32, seed=1)
    optimizer = first_class(model.parameters(), **config)
    for call in range(calls):
        optimizer.step(mlp_closure(model, optimizer, inputs, labels, call))
    saved = saved_and_loaded(optimizer.state_dict())
    resumed = second_class(model.parameters(), **config)
    resumed.load_state_dict(saved)
    for call in range(calls, 2 * calls):
        resumed.step(mlp_closure(model, resumed, inputs, labels, call))
    return model, resumed


@pytest.mark.parametrize("config", [{"lr": 0.5}, {"line_search_fn": "strong_wolfe", "history_size": 4}],
                         ids=["fixed-step", "strong_wolfe"])
def test_lbfgs_state_dict_moves_between_gdlab_and_torch(config):
    reference, reference_optimizer = lbfgs_run_with_a_stop(torch.optim.LBFGS, torch.optim.LBFGS, config)
    for first, second in ((LBFGS, torch.optim.LBFGS), (torch.optim.LBFGS, LBFGS), (LBFGS, LBFGS)):
        model, optimizer = lbfgs_run_with_a_stop(first, second, config)
        assert_same_parameters(model, reference, f"{first.__module__} -> {second.__module__}:")
        assert_same(optimizer.state_dict(), reference_optimizer.state_dict())


def test_lbfgs_state_dict_reload_is_needed_to_continue_exactly():
    """The round trip above can fail: a fresh optimizer mid-way (no state loaded) ends elsewhere."""
    config = {"lr": 0.5}
    reference, _ = lbfgs_run_with_a_stop(torch.optim.LBFGS, torch.optim.LBFGS, config)
    model, inputs, labels = mlp_problem(torch.float32, seed=1)
    for start in (0, 3):
        optimizer = LBFGS(model.parameters(), **config)
        for call in range(start, start + 3):
            optimizer.step(mlp_closure(model, optimizer, inputs, labels, call))
    assert not all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters()))


def complex_problem(seed=0):
    torch.manual_seed(seed)
    matrix = torch.randn(5, 3, dtype=torch.complex64)
    target = torch.randn(5, 2, dtype=torch.complex64)
    start = torch.randn(3, 2, dtype=torch.complex64)
    return matrix, target, start


def test_lbfgs_optim_db_inputs_bit_exact_with_torch():
    """Every CPU input of torch's optim_db entry for LBFGS (tensor lr included), float32, float64 and
    complex64 (LBFGS supports complex parameters: flattened as pairs of reals)."""
    info = optimizer_info(torch.optim.LBFGS)
    assert info.supports_complex
    for optim_input in info.optim_inputs_func("cpu"):
        for dtype in DTYPES:
            model, inputs, labels = mlp_problem(dtype, seed=2)
            reference = copy.deepcopy(model)
            optimizer = LBFGS(model.parameters(), **optim_input.kwargs)
            reference_optimizer = torch.optim.LBFGS(reference.parameters(), **optim_input.kwargs)
            for call in range(10):
                optimizer.step(mlp_closure(model, optimizer, inputs, labels, call))
                reference_optimizer.step(mlp_closure(reference, reference_optimizer, inputs, labels, call))
                assert_same_parameters(model, reference, f"{optim_input.desc} {dtype} call {call}:")
            assert_same(optimizer.state_dict(), reference_optimizer.state_dict(), optim_input.desc)

        matrix, target, start = complex_problem()
        z, z_reference = nn.Parameter(start.clone()), nn.Parameter(start.clone())
        optimizer = LBFGS([z], **optim_input.kwargs)
        reference_optimizer = torch.optim.LBFGS([z_reference], **optim_input.kwargs)

        def closure_for(param, opt):
            def closure():
                opt.zero_grad()
                loss = (matrix @ param - target).abs().pow(2).sum()
                loss.backward()
                return loss
            return closure

        for call in range(10):
            optimizer.step(closure_for(z, optimizer))
            reference_optimizer.step(closure_for(z_reference, reference_optimizer))
            assert torch.equal(z, z_reference), f"{optim_input.desc} complex64 call {call}"
        assert not torch.equal(z, start)


def raises_as_torch(optimizer_class, reference_class, error_input, default_params, step):
    """Check one ErrorOptimizerInput on gdlab's class and on torch's: same type, message matching."""
    construction_error = common_optimizers().OptimizerErrorEnum.CONSTRUCTION_ERROR
    optim_input = error_input.optimizer_error_input
    for cls in (optimizer_class, reference_class):
        params = optim_input.params if optim_input.params is not None else default_params()
        if issubclass(error_input.error_type, Warning):
            expectation = pytest.warns(error_input.error_type, match=error_input.error_regex)
        else:
            expectation = pytest.raises(error_input.error_type, match=error_input.error_regex)
        if error_input.error_on == construction_error:
            with expectation:
                cls(params, **optim_input.kwargs)
        else:
            optimizer = cls(params, **optim_input.kwargs)
            with expectation:
                step(optimizer)


def dense_params():
    return [nn.Parameter(torch.randn(2, 3)), nn.Parameter(torch.randn(3))]


def lbfgs_step_on_sum(optimizer):
    params = optimizer.param_groups[0]["params"]

    def closure():
        optimizer.zero_grad()
        loss = sum(param.sum() for param in params)
        loss.backward()
        return loss

    optimizer.step(closure)


def test_lbfgs_optim_db_error_inputs_raise_as_torch():
    error_inputs = optimizer_info(torch.optim.LBFGS).optim_error_inputs_func("cpu", torch.float32)
    assert error_inputs
    for error_input in error_inputs:
        raises_as_torch(LBFGS, torch.optim.LBFGS, error_input, dense_params, lbfgs_step_on_sum)


def test_lbfgs_refuses_what_torch_refuses():
    params = dense_params()
    message = "LBFGS doesn't support per-parameter options"
    for cls in (LBFGS, torch.optim.LBFGS):
        with pytest.raises(ValueError, match=message):
            cls([{"params": params[:1]}, {"params": params[1:]}])
        with pytest.raises(ValueError, match="Invalid learning rate: -0.1"):
            cls(params, lr=-0.1)
        with pytest.raises(TypeError):
            cls(params).step(None)
        with pytest.raises(RuntimeError, match="only 'strong_wolfe' is supported"):
            lbfgs_step_on_sum(cls(params, line_search_fn="backtracking"))
        optimizer = cls(params[:1])
        optimizer.add_param_group({"params": params[1:]})
        with pytest.raises(AssertionError, match="Expected exactly one param_group"):
            lbfgs_step_on_sum(optimizer)


def test_lbfgs_stops_at_once_on_a_zero_gradient_and_returns_the_first_loss():
    x = nn.Parameter(torch.zeros(3))
    optimizer = LBFGS([x])
    losses = []

    def closure():
        optimizer.zero_grad()
        loss = (x**2).sum()
        loss.backward()
        losses.append(loss)
        return loss

    assert optimizer.step(closure) is losses[0]
    assert len(losses) == 1 and optimizer.state[x] == {"func_evals": 1, "n_iter": 0}


def test_lbfgs_declaration():
    rule = lbfgs.RULE
    assert (rule.name, rule.optimizer, rule.reference) == ("lbfgs", LBFGS, torch.optim.LBFGS)
    assert rule.init is None and rule.update is None and not rule.stackable
    assert rule.hyperparameter("line_search_fn").choices == (None, "strong_wolfe")
    signature_defaults = {name: parameter.default for name, parameter
                          in inspect.signature(torch.optim.LBFGS).parameters.items() if name != "params"}
    assert rule.defaults() == signature_defaults
    assert rule.defaults() == {name: parameter.default for name, parameter
                               in inspect.signature(LBFGS).parameters.items() if name != "params"}
    for hparams in rule.verify_grid:
        rule.reference(dense_params(), **rule.reference_kwargs, **hparams)


# ---------------------------------------------------------------- SparseAdam


class EmbeddingPairs(nn.Module):
    """Scores word-context pairs by the dot product of two sparse-gradient embeddings."""

    def __init__(self, dtype):
        super().__init__()
        self.words = nn.Embedding(30, 6, sparse=True).to(dtype)
        self.contexts = nn.Embedding(30, 6, sparse=True).to(dtype)

    def forward(self, words, contexts):
        return (self.words(words) * self.contexts(contexts)).sum(-1)


def embedding_problem(dtype, seed=0):
    torch.manual_seed(seed)
    model = EmbeddingPairs(dtype)
    words = torch.randint(0, 30, (40, 12))  # indices repeat within a batch: uncoalesced gradients
    contexts = torch.randint(0, 30, (40, 12))
    labels = torch.randint(0, 2, (40, 12)).to(dtype)
    return model, (words, contexts, labels)


def embedding_loss(model, batches, step):
    words, contexts, labels = (batch[step % 40] for batch in batches)
    return F.binary_cross_entropy_with_logits(model(words, contexts), labels)


SPARSEADAM_FLAGS = [{"maximize": False}, {"maximize": True}]


def sparseadam_groups(model, spare):
    return [
        {"params": [model.words.weight], "lr": 0.03, "betas": (0.8, 0.99), "eps": 1e-6},
        {"params": [model.contexts.weight, spare]},
    ]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("flags", SPARSEADAM_FLAGS, ids=lambda flags: f"maximize={flags['maximize']}")
def test_sparseadam_embeddings_bit_exact_with_torch(flags, dtype):
    model, batches = embedding_problem(dtype)
    reference = copy.deepcopy(model)
    spare, reference_spare = (nn.Parameter(torch.ones(5, dtype=dtype)) for _ in range(2))
    untouched_row = model.words.weight[29].clone()
    optimizer = SparseAdam(sparseadam_groups(model, spare), lr=0.01, **flags)
    reference_optimizer = torch.optim.SparseAdam(sparseadam_groups(reference, reference_spare), lr=0.01, **flags)
    schedulers = [torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
                  for opt in (optimizer, reference_optimizer)]
    batches = (batches[0].clamp(max=28), *batches[1:])  # word 29 never occurs: its row must not move
    for step in range(40):
        losses = []
        for net, opt in ((model, optimizer), (reference, reference_optimizer)):
            def closure(net=net, opt=opt):
                opt.zero_grad()
                loss = embedding_loss(net, batches, step)
                loss.backward()
                return loss
            if step % 2:  # every other step through a closure
                losses.append(opt.step(closure))
            else:
                closure()
                opt.step()
        if losses:
            assert torch.equal(*losses)
        for scheduler in schedulers:
            scheduler.step()
        assert_same_parameters(model, reference, f"{flags} {dtype} step {step}:")
    assert_same(optimizer.state_dict(), reference_optimizer.state_dict())
    assert torch.equal(model.words.weight[29], untouched_row)
    assert torch.equal(spare, torch.ones(5, dtype=dtype)) and spare not in optimizer.state
    assert [group["lr"] for group in optimizer.param_groups] == [0.03 / 16, 0.01 / 16]
    assert optimizer.state[model.words.weight]["step"] == 40


def test_sparseadam_closure_returns_the_loss_as_torch():
    model, batches = embedding_problem(torch.float64)
    reference = copy.deepcopy(model)
    optimizer = SparseAdam(model.parameters())
    reference_optimizer = torch.optim.SparseAdam(reference.parameters())
    for step in range(5):
        losses = []
        for net, opt in ((model, optimizer), (reference, reference_optimizer)):
            def closure(net=net, opt=opt):
                opt.zero_grad()
                loss = embedding_loss(net, batches, step)
                loss.backward()
                return loss
            losses.append(opt.step(closure))
        assert torch.equal(*losses)
    assert_same_parameters(model, reference)


def test_sparseadam_skips_a_gradient_that_stores_nothing_and_counts_the_step():
    for cls in (SparseAdam, torch.optim.SparseAdam):
        embedding = nn.Embedding(4, 3, sparse=True)
        before = embedding.weight.detach().clone()
        optimizer = cls(embedding.parameters())
        embedding(torch.tensor([], dtype=torch.long)).sum().backward()
        assert embedding.weight.grad._nnz() == 0
        optimizer.step()
        assert torch.equal(embedding.weight, before)
        assert optimizer.state[embedding.weight]["step"] == 1


def sparseadam_run_with_a_stop(first_class, second_class, dtype, edit=lambda state: state, steps=15):
    model, batches = embedding_problem(dtype, seed=3)
    spare = nn.Parameter(torch.ones(5, dtype=dtype))
    optimizer = first_class(sparseadam_groups(model, spare), lr=0.01, maximize=True)
    for step in range(steps):
        optimizer.zero_grad()
        embedding_loss(model, batches, step).backward()
        optimizer.step()
    saved = edit(saved_and_loaded(optimizer.state_dict()))
    resumed = second_class(sparseadam_groups(model, spare), lr=0.01, maximize=True)
    resumed.load_state_dict(saved)
    for step in range(steps, 2 * steps):
        resumed.zero_grad()
        embedding_loss(model, batches, step).backward()
        resumed.step()
    return model, resumed


@pytest.mark.parametrize("dtype", DTYPES)
def test_sparseadam_state_dict_moves_between_gdlab_and_torch(dtype):
    reference, reference_optimizer = sparseadam_run_with_a_stop(torch.optim.SparseAdam, torch.optim.SparseAdam, dtype)
    for first, second in ((SparseAdam, torch.optim.SparseAdam), (torch.optim.SparseAdam, SparseAdam)):
        model, optimizer = sparseadam_run_with_a_stop(first, second, dtype)
        assert_same_parameters(model, reference, f"{first.__module__} -> {second.__module__}:")
        assert_same(optimizer.state_dict(), reference_optimizer.state_dict())


def older(state_dict):
    """A state dict as an older torch wrote it: no maximize in the groups, step a float."""
    for group in state_dict["param_groups"]:
        group.pop("maximize", None)
    for state in state_dict["state"].values():
        state["step"] = float(state["step"])
    return state_dict


def test_sparseadam_loads_an_older_state_dict_as_torch():
    reference, reference_optimizer = sparseadam_run_with_a_stop(
        torch.optim.SparseAdam, torch.optim.SparseAdam, torch.float32, edit=older
    )
    model, optimizer = sparseadam_run_with_a_stop(SparseAdam, SparseAdam, torch.float32, edit=older)
    assert "maximize" not in optimizer.param_groups[0]
    assert isinstance(optimizer.state[model.words.weight]["step"], float)
    assert_same_parameters(model, reference)
    assert_same(optimizer.state_dict(), reference_optimizer.state_dict())
    # Without maximize the loaded groups descend: the run differs from one that kept maximize.
    kept, _ = sparseadam_run_with_a_stop(SparseAdam, SparseAdam, torch.float32)
    assert not torch.equal(kept.words.weight, model.words.weight)


def test_sparseadam_refuses_dense_gradients_with_torch_error():
    for cls in (SparseAdam, torch.optim.SparseAdam):
        param = nn.Parameter(torch.ones(3))
        param.grad = torch.ones(3)
        with pytest.raises(RuntimeError, match="SparseAdam does not support dense gradients, please consider Adam"):
            cls([param]).step()


def mlp_with_sparse_gradients(dtype, seed):
    """A dense MLP whose gradients are made sparse after backward, as torch's optim tests do for SparseAdam."""
    torch.manual_seed(seed)
    model = MLP([5, 7, 2], activation="relu").to(dtype)
    inputs, targets = torch.randn(30, 5, dtype=dtype), torch.randn(30, 2, dtype=dtype)

    def backward(net, optimizer, step):
        optimizer.zero_grad()
        batch = slice(step * 10 % 30, step * 10 % 30 + 10)
        F.mse_loss(net(inputs[batch]), targets[batch]).backward()
        for param in net.parameters():
            param.grad = param.grad.to_sparse()

    return model, backward


@pytest.mark.parametrize("dtype", DTYPES)
def test_sparseadam_optim_db_inputs_bit_exact_with_torch(dtype):
    info = optimizer_info(torch.optim.SparseAdam)
    assert info.only_supports_sparse_grads and not info.supports_complex
    for optim_input in info.optim_inputs_func("cpu"):
        model, backward = mlp_with_sparse_gradients(dtype, seed=4)
        reference = copy.deepcopy(model)
        optimizer = SparseAdam(model.parameters(), **optim_input.kwargs)
        reference_optimizer = torch.optim.SparseAdam(reference.parameters(), **optim_input.kwargs)
        for step in range(12):
            for net, opt in ((model, optimizer), (reference, reference_optimizer)):
                backward(net, opt, step)
                opt.step()
            assert_same_parameters(model, reference, f"{optim_input.desc} {dtype} step {step}:")
        assert_same(optimizer.state_dict(), reference_optimizer.state_dict(), optim_input.desc)


def sparse_step(optimizer):
    for group in optimizer.param_groups:
        for param in group["params"]:
            param.grad = torch.ones_like(param).to_sparse()
    optimizer.step()


def test_sparseadam_optim_db_error_inputs_raise_as_torch():
    error_inputs = optimizer_info(torch.optim.SparseAdam).optim_error_inputs_func("cpu", torch.float32)
    assert any("SparseAdam" in error_input.error_regex for error_input in error_inputs)
    for error_input in error_inputs:
        raises_as_torch(SparseAdam, torch.optim.SparseAdam, error_input, dense_params, sparse_step)


def test_sparseadam_refuses_what_torch_refuses():
    params = dense_params()
    cases = [({"lr": 0.0}, "Invalid learning rate: 0.0"), ({"eps": 0.0}, "Invalid epsilon value: 0.0"),
             ({"betas": (0.9, 1.0)}, "Invalid beta parameter at index 1: 1.0"),
             ({"lr": torch.tensor([0.1, 0.2])}, "Tensor lr must be 1-element")]
    for cls in (SparseAdam, torch.optim.SparseAdam):
        for kwargs, message in cases:
            with pytest.raises(ValueError, match=message):
                cls(params, **kwargs)


def random_sparse_gradient(param, generator):
    """Some rows of ``param`` (repeated, so uncoalesced), random values."""
    rows = torch.randint(0, param.shape[0], (5,), generator=generator)
    values = torch.randn((5, *param.shape[1:]), generator=generator, dtype=param.dtype)
    return torch.sparse_coo_tensor(rows[None], values, param.shape, check_invariants=True)


def test_sparseadam_init_update_equal_the_class():
    rule = sparseadam.RULE
    hparams = {**rule.defaults(), "lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-6, "maximize": True}
    torch.manual_seed(5)
    starts = [torch.randn(8, 3, dtype=torch.float64), torch.randn(6, dtype=torch.float64)]
    params = [start.clone() for start in starts]
    class_params = [nn.Parameter(start.clone()) for start in starts]
    optimizer = SparseAdam(class_params, **hparams)
    state = rule.init(params, hparams)
    generator = torch.Generator().manual_seed(6)
    for _ in range(20):
        grads = [random_sparse_gradient(param, generator) for param in params]
        rule.update(params, grads, state, **hparams)
        for param, grad in zip(class_params, grads):
            param.grad = grad
        optimizer.step()
    for index, (param, class_param) in enumerate(zip(params, class_params)):
        assert torch.equal(param, class_param)
        class_state = optimizer.state[class_param]
        assert_same({key: getattr(state, key)[index] for key in type(state)._fields}, class_state)
    assert not torch.equal(params[0], starts[0])


def test_sparseadam_declaration():
    rule = sparseadam.RULE
    assert (rule.name, rule.optimizer, rule.reference) == ("sparseadam", SparseAdam, torch.optim.SparseAdam)
    assert not rule.stackable
    assert type(rule.init([torch.zeros(2)], rule.defaults()))._fields == ("step", "exp_avg", "exp_avg_sq")
    for cls in (torch.optim.SparseAdam, SparseAdam):
        assert rule.defaults() == {name: parameter.default for name, parameter
                                   in inspect.signature(cls).parameters.items() if name != "params"}
    for hparams in rule.verify_grid:
        rule.reference(dense_params(), **rule.reference_kwargs, **hparams)
