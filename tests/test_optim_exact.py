"""Every gdlab optimizer is bit-for-bit torch.optim's foreach=False implementation.

Two copies of one small MLP train side by side on the same batches, each
from its own forward and backward pass, one stepped by gdlab's class and one
by torch's: any difference of one ulp would change the next gradients and
grow. Every flag combination, float32 and float64, two param groups with
different hyperparameters, an LR scheduler, and a parameter that never gets
a gradient.
"""

import copy
import functools
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gdlab.optim
from gdlab.models import MLP



STEPS = 64
DTYPES = [torch.float32, torch.float64]


def combinations(**axes):
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


SGD_FLAGS = [
    flags
    for flags in combinations(
        momentum=[0.0, 0.9], dampening=[0.0, 0.2], nesterov=[False, True],
        weight_decay=[0.0, 0.01], maximize=[False, True],
    )
    if not flags["nesterov"] or (flags["momentum"] > 0 and flags["dampening"] == 0)
]
ADAM_FLAGS = combinations(amsgrad=[False, True], weight_decay=[0.0, 0.01], maximize=[False, True])
RMSPROP_FLAGS = combinations(
    centered=[False, True], momentum=[0.0, 0.9], weight_decay=[0.0, 0.01], maximize=[False, True]
)
ADAGRAD_FLAGS = combinations(
    lr_decay=[0.0, 0.01], initial_accumulator_value=[0.0, 0.1], weight_decay=[0.0, 0.01],
    maximize=[False, True],
)


def sgd_first_group(config):
    return {"lr": config["lr"] * 0.3, "weight_decay": 0.05 if config["weight_decay"] else 0.0,
            "momentum": 0.5 if config["momentum"] else 0.0}


def adam_first_group(config):
    return {"lr": config["lr"] * 0.3, "betas": (0.8, 0.99), "eps": 1e-6,
            "weight_decay": 0.05 if config["weight_decay"] else 0.0}


def rmsprop_first_group(config):
    return {"lr": config["lr"] * 0.3, "alpha": 0.9, "eps": 1e-6,
            "momentum": 0.5 if config["momentum"] else 0.0}


def adagrad_first_group(config):
    return {"lr": config["lr"] * 0.3, "lr_decay": 0.05 if config["lr_decay"] else 0.0, "eps": 1e-8}


# name: (gdlab class, torch class, base lr, flag combinations, the first group's own hyperparameters)
RULES = {
    "SGD": (gdlab.optim.SGD, torch.optim.SGD, 0.05, SGD_FLAGS, sgd_first_group),
    "Adam": (gdlab.optim.Adam, torch.optim.Adam, 0.01, ADAM_FLAGS, adam_first_group),
    "AdamW": (gdlab.optim.AdamW, torch.optim.AdamW, 0.01, ADAM_FLAGS, adam_first_group),
    "RMSprop": (gdlab.optim.RMSprop, torch.optim.RMSprop, 0.01, RMSPROP_FLAGS, rmsprop_first_group),
    "Adagrad": (gdlab.optim.Adagrad, torch.optim.Adagrad, 0.05, ADAGRAD_FLAGS, adagrad_first_group),
}

CASES = [
    pytest.param(name, flags, dtype, id=f"{name}-{'-'.join(f'{k}={v}' for k, v in flags.items())}-{dtype}")
    for name, (_, _, _, all_flags, _) in RULES.items()
    for flags in all_flags
    for dtype in DTYPES
]


def make_run(optimizer_class, config, first_group, model, schedule):
    """An optimizer over two param groups (the first layer with its own
    hyperparameters; the rest plus a parameter without gradient) and its schedule."""
    spare = nn.Parameter(torch.ones(5, dtype=model.layers[0].weight.dtype))
    first, *rest = model.layers
    groups = [
        {"params": list(first.parameters()), **first_group},
        {"params": [p for layer in rest for p in layer.parameters()] + [spare]},
    ]
    optimizer = optimizer_class(groups, **config)
    return optimizer, schedule(optimizer), spare


def train_side_by_side(name, flags, dtype, schedule, steps=STEPS):
    gdlab_class, torch_class, lr, _, first_group = RULES[name]
    config = {"lr": lr, **flags}
    torch.manual_seed(0)
    model = MLP([8, 12, 12, 3], activation="tanh").to(dtype)
    reference_model = copy.deepcopy(model)
    inputs = torch.randn(96, 8, dtype=dtype)
    labels = torch.randint(0, 3, (96,))
    optimizer, scheduler, spare = make_run(gdlab_class, config, first_group(config), model, schedule)
    reference_optimizer, reference_scheduler, reference_spare = make_run(
        functools.partial(torch_class, foreach=False), config, first_group(config), reference_model, schedule
    )
    for step in range(steps):
        batch = slice(step * 16 % 96, step * 16 % 96 + 16)
        for net, opt, sched in ((model, optimizer, scheduler), (reference_model, reference_optimizer, reference_scheduler)):
            opt.zero_grad()
            F.cross_entropy(net(inputs[batch]), labels[batch]).backward()
            opt.step()
            sched.step()
        for (param_name, param), reference in zip(model.named_parameters(), reference_model.parameters()):
            assert torch.equal(param, reference), (
                f"{name} {flags} {dtype}: {param_name} differs after step {step + 1} "
                f"by up to {(param - reference).abs().max().item():.3g}"
            )
    assert torch.equal(spare, torch.ones_like(spare)) and torch.equal(reference_spare, spare)
    return optimizer, reference_optimizer


def step_lr(optimizer):
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.5)


@pytest.mark.parametrize("name, flags, dtype", CASES)
def test_bit_exact_with_torch_for_every_flag_combination(name, flags, dtype):
    optimizer, reference_optimizer = train_side_by_side(name, flags, dtype, step_lr)
    # The groups really differ, and the schedule really moved the learning rates.
    lrs = [group["lr"] for group in optimizer.param_groups]
    assert lrs[0] != lrs[1]
    assert lrs == [group["lr"] for group in reference_optimizer.param_groups]
    assert lrs[1] == RULES[name][2] * 0.5 ** (STEPS // 10)


def assert_same_state(state_dict, reference_state_dict):
    """gdlab keeps the state torch keeps, under the same names, bit for bit."""
    state, reference_state = state_dict["state"], reference_state_dict["state"]
    assert state.keys() == reference_state.keys()
    for index in reference_state:
        assert list(state[index]) == list(reference_state[index])
        for key, value in reference_state[index].items():
            assert state[index][key].dtype == value.dtype, (index, key)
            assert torch.equal(state[index][key], value), (index, key)
    for group, reference_group in zip(state_dict["param_groups"], reference_state_dict["param_groups"]):
        # The same group keys, torch's implementation switches included; the values are
        # equal but for foreach, which only the reference was given (foreach=False).
        assert group.keys() == reference_group.keys()
        for key, value in group.items():
            if key != "foreach":
                assert reference_group[key] == value, key
        assert group["foreach"] is None and reference_group["foreach"] is False


@pytest.mark.parametrize("name", RULES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_state_matches_torch_state_names_layout_and_values(name, dtype):
    flags = RULES[name][3][-1]  # the last combination: momentum, amsgrad, centered... on
    optimizer, reference_optimizer = train_side_by_side(name, flags, dtype, step_lr, steps=20)
    assert_same_state(optimizer.state_dict(), reference_optimizer.state_dict())


SCHEDULES = {
    "StepLR": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.3),
    "MultiStepLR": lambda opt: torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[5, 20, 40], gamma=0.5),
    "ExponentialLR": lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.97),
    "CosineAnnealingLR": lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=STEPS),
    "LambdaLR": lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1 / (1 + step)),
    # OneCycleLR also cycles momentum (SGD, RMSprop) or beta1 (Adam, AdamW) where there is one.
    "OneCycleLR": lambda opt: torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=0.05, total_steps=STEPS + 1,
        cycle_momentum="momentum" in opt.defaults or "betas" in opt.defaults,
    ),
}


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("name", RULES)
def test_torch_lr_schedulers_drive_gdlab_optimizers_exactly(name, schedule):
    flags = RULES[name][3][-1]
    optimizer, _ = train_side_by_side(name, flags, torch.float64, SCHEDULES[schedule])
    assert [group["lr"] for group in optimizer.param_groups] != [group["initial_lr"] for group in optimizer.param_groups]


@pytest.mark.parametrize("name", RULES)
def test_step_with_closure_returns_its_loss_and_matches_torch(name):
    gdlab_class, torch_class, lr, _, _ = RULES[name]
    torch.manual_seed(1)
    model = MLP([4, 6, 2]).double()
    reference = copy.deepcopy(model)
    x, y = torch.randn(10, 4, dtype=torch.float64), torch.randint(0, 2, (10,))
    optimizer = gdlab_class(model.parameters(), lr=lr)
    reference_optimizer = torch_class(reference.parameters(), lr=lr, foreach=False)

    def closure_for(net, opt):
        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(net(x), y)
            loss.backward()
            return loss
        return closure

    for _ in range(5):
        loss = optimizer.step(closure_for(model, optimizer))
        reference_loss = reference_optimizer.step(closure_for(reference, reference_optimizer))
        assert torch.equal(loss, reference_loss)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters()))


@pytest.mark.parametrize("name", RULES)
def test_parameters_without_gradient_are_skipped_and_get_no_state(name):
    gdlab_class, _, lr, all_flags, _ = RULES[name]
    used, unused = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(3))
    optimizer = gdlab_class([used, unused], lr=lr, **all_flags[-1])
    for _ in range(3):
        used.grad = torch.full_like(used, 0.5)
        optimizer.step()
    assert torch.equal(unused, torch.ones(3))
    assert not torch.equal(used, torch.ones(3))
    # Adagrad, like torch's, creates every state at construction and leaves it untouched.
    if name == "Adagrad":
        assert optimizer.state[unused]["step"].item() == 0
    else:
        assert unused not in optimizer.state


def test_decoupled_weight_decay_per_group_as_in_torch_adam():
    """torch's Adam takes decoupled_weight_decay per group (AdamW for that group); so does gdlab's."""
    torch.manual_seed(2)
    model = MLP([6, 8, 3]).double()
    reference = copy.deepcopy(model)
    x, y = torch.randn(20, 6, dtype=torch.float64), torch.randint(0, 3, (20,))

    def groups(net):
        first, second = net.layers
        return [{"params": list(first.parameters()), "decoupled_weight_decay": True},
                {"params": list(second.parameters())}]

    optimizer = gdlab.optim.Adam(groups(model), lr=0.01, weight_decay=0.1)
    reference_optimizer = torch.optim.Adam(groups(reference), lr=0.01, weight_decay=0.1, foreach=False)
    plain_adam = copy.deepcopy(model)
    plain_optimizer = gdlab.optim.Adam(plain_adam.parameters(), lr=0.01, weight_decay=0.1)
    for net, opt in ((model, optimizer), (reference, reference_optimizer), (plain_adam, plain_optimizer)):
        for _ in range(STEPS):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters()))
    assert not torch.equal(model.layers[0].weight, plain_adam.layers[0].weight)


# Tensor hyperparameters, as torch takes them: a 1-element lr of any shape (squeezed by
# torch's _to_scalar at each step) and, for Adam and AdamW, betas (squeezed at construction).
TENSOR_HYPERPARAMETERS = {
    "SGD": {"lr": torch.tensor([0.05]), "momentum": 0.9},
    "Adam": {"lr": torch.tensor([0.01]), "betas": (torch.tensor([[[0.8]]]), torch.tensor([[0.99]])), "amsgrad": True},
    "AdamW": {"lr": torch.tensor(0.01), "betas": (torch.tensor(0.8), torch.tensor([0.99])), "weight_decay": 0.1},
    "RMSprop": {"lr": torch.tensor([[0.01]]), "centered": True, "momentum": 0.5},
    "Adagrad": {"lr": torch.tensor(0.05), "lr_decay": 0.3},
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", RULES)
def test_tensor_hyperparameters_with_a_scheduler_are_bit_exact(name, dtype):
    """The scheduler writes the (float32) tensor lr in place; torch then computes its step size
    in float32 arithmetic, and so does gdlab. Float hyperparameters of the same values give
    another result: the comparison tells the two paths apart."""
    gdlab_class, torch_class = RULES[name][:2]
    torch.manual_seed(3)
    model = MLP([5, 7, 3], activation="tanh").to(dtype)
    nets = [copy.deepcopy(model) for _ in range(3)]
    x, y = torch.randn(24, 5, dtype=dtype), torch.randint(0, 3, (24,))
    as_floats = {
        key: (tuple(beta.item() for beta in value) if key == "betas" else value.item())
        if key in ("lr", "betas") else value
        for key, value in TENSOR_HYPERPARAMETERS[name].items()
    }
    optimizers = [
        gdlab_class(nets[0].parameters(), **copy.deepcopy(TENSOR_HYPERPARAMETERS[name])),
        torch_class(nets[1].parameters(), foreach=False, **copy.deepcopy(TENSOR_HYPERPARAMETERS[name])),
        gdlab_class(nets[2].parameters(), **as_floats),
    ]
    schedulers = [torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9) for opt in optimizers]
    for _ in range(20):
        for net, opt, sched in zip(nets, optimizers, schedulers):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
            sched.step()
    assert isinstance(optimizers[0].param_groups[0]["lr"], torch.Tensor)
    assert_same_state(optimizers[0].state_dict(), optimizers[1].state_dict())
    for param, reference in zip(nets[0].parameters(), nets[1].parameters()):
        assert torch.equal(param, reference)
    if dtype == torch.float64 and name != "SGD":  # SGD's step size is lr itself, exact either way
        assert not all(torch.equal(a, b) for a, b in zip(nets[0].parameters(), nets[2].parameters()))
