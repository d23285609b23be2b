"""state_dict: stopping, saving, loading into a fresh optimizer and going on is
identical to never stopping; and state dicts move between gdlab and torch."""

import copy
import io

import pytest
import torch
import torch.nn.functional as F

import gdlab.optim
from gdlab.models import MLP



# Options that create every kind of state: momentum buffers, amsgrad maxima, centered averages.
RULES = {
    "SGD": (gdlab.optim.SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    "Adam": (gdlab.optim.Adam, torch.optim.Adam, {"lr": 0.01, "amsgrad": True, "weight_decay": 0.01}),
    "AdamW": (gdlab.optim.AdamW, torch.optim.AdamW, {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1}),
    "RMSprop": (gdlab.optim.RMSprop, torch.optim.RMSprop, {"lr": 0.01, "momentum": 0.9, "centered": True}),
    "Adagrad": (gdlab.optim.Adagrad, torch.optim.Adagrad, {"lr": 0.05, "lr_decay": 0.01, "initial_accumulator_value": 0.1}),
}
HALF = 30


def make_problem(dtype):
    torch.manual_seed(0)
    model = MLP([6, 10, 3], activation="relu").to(dtype)
    inputs, labels = torch.randn(90, 6, dtype=dtype), torch.randint(0, 3, (90,))
    return model, inputs, labels


def groups(model, config):
    first, second = model.layers
    return [{"params": list(first.parameters()), "lr": config["lr"] / 3}, {"params": list(second.parameters())}]


def train(model, optimizer, scheduler, inputs, labels, steps, start):
    for step in range(start, start + steps):
        batch = slice(step * 15 % 90, step * 15 % 90 + 15)
        optimizer.zero_grad()
        F.cross_entropy(model(inputs[batch]), labels[batch]).backward()
        optimizer.step()
        scheduler.step()


def saved_and_loaded(state):
    """Through bytes, as a checkpoint on disk would go (weights_only: plain tensors and numbers)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def schedule(optimizer):
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=7, gamma=0.5)


def run_with_a_stop(first_class, second_class, config, dtype):
    """Train HALF steps with first_class, save, load into a fresh second_class, train HALF more."""
    model, inputs, labels = make_problem(dtype)
    optimizer = first_class(groups(model, config), **config)
    scheduler = schedule(optimizer)
    train(model, optimizer, scheduler, inputs, labels, HALF, start=0)
    checkpoint = saved_and_loaded({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()})
    del optimizer, scheduler
    resumed = second_class(groups(model, config), **config)
    resumed.load_state_dict(checkpoint["optimizer"])
    resumed_scheduler = schedule(resumed)
    resumed_scheduler.load_state_dict(checkpoint["scheduler"])
    train(model, resumed, resumed_scheduler, inputs, labels, HALF, start=HALF)
    return model


def run_without_stop(optimizer_class, config, dtype):
    model, inputs, labels = make_problem(dtype)
    optimizer = optimizer_class(groups(model, config), **config)
    train(model, optimizer, schedule(optimizer), inputs, labels, 2 * HALF, start=0)
    return model


def assert_same_parameters(model, reference):
    for (name, param), other in zip(model.named_parameters(), reference.parameters()):
        assert torch.equal(param, other), f"{name} differs by {(param - other).abs().max().item():.3g}"


def torch_foreach_false(torch_class):
    return lambda params, **config: torch_class(params, foreach=False, **config)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", RULES)
def test_stopping_and_reloading_equals_never_stopping(name, dtype):
    gdlab_class, _, config = RULES[name]
    uninterrupted = run_without_stop(gdlab_class, config, dtype)
    resumed = run_with_a_stop(gdlab_class, gdlab_class, config, dtype)
    assert_same_parameters(resumed, uninterrupted)


@pytest.mark.parametrize("name", RULES)
def test_gdlab_state_continues_in_torch_and_torch_state_in_gdlab(name):
    gdlab_class, torch_class, config = RULES[name]
    reference = run_without_stop(torch_foreach_false(torch_class), config, torch.float32)
    assert_same_parameters(run_with_a_stop(gdlab_class, torch_foreach_false(torch_class), config, torch.float32), reference)
    assert_same_parameters(run_with_a_stop(torch_foreach_false(torch_class), gdlab_class, config, torch.float32), reference)


def test_a_stop_without_reload_would_differ():
    """The check above can fail: restarting the optimizer from scratch mid-way changes the result."""
    gdlab_class, _, config = RULES["Adam"]
    uninterrupted = run_without_stop(gdlab_class, config, torch.float64)
    model, inputs, labels = make_problem(torch.float64)
    optimizer = gdlab_class(groups(model, config), **config)
    train(model, optimizer, schedule(optimizer), inputs, labels, HALF, start=0)
    fresh = gdlab_class(groups(model, config), **config)
    train(model, fresh, schedule(fresh), inputs, labels, HALF, start=HALF)
    assert not all(torch.equal(a, b) for a, b in zip(model.parameters(), uninterrupted.parameters()))


def test_adamw_stays_decoupled_after_loading_an_adam_state():
    """As in torch: what makes AdamW decoupled is the class, not the loaded group."""
    model, _, _ = make_problem(torch.float64)
    adam_state = gdlab.optim.Adam(model.parameters(), weight_decay=0.1).state_dict()
    adamw = gdlab.optim.AdamW(copy.deepcopy(model).parameters())
    adamw.load_state_dict(adam_state)
    assert adamw.param_groups[0]["decoupled_weight_decay"] is True


# Group keys that later torch versions added and that torch fills in when a checkpoint lacks them.
NEWER_GROUP_KEYS = ("maximize", "foreach", "capturable", "differentiable", "fused", "decoupled_weight_decay")


def as_older_checkpoint(state_dict):
    """The state dict as an older torch saved it: no NEWER_GROUP_KEYS, every step a Python number."""
    old = copy.deepcopy(state_dict)
    for group in old["param_groups"]:
        for key in NEWER_GROUP_KEYS:
            group.pop(key, None)
    for state in old["state"].values():
        if "step" in state:
            state["step"] = float(state["step"])
    return old


@pytest.mark.parametrize("name", RULES)
def test_an_older_checkpoint_resumes_in_gdlab_as_in_torch(name):
    """Loading fills the missing keys with torch's defaults and makes steps tensors again
    (torch's __setstate__), so the next steps run, and equal torch's from the same checkpoint."""
    gdlab_class, torch_class, config = RULES[name]
    model, inputs, labels = make_problem(torch.float64)
    optimizer = gdlab_class(groups(model, config), **config)
    train(model, optimizer, schedule(optimizer), inputs, labels, HALF // 3, start=0)
    checkpoint = saved_and_loaded(as_older_checkpoint(optimizer.state_dict()))
    results = []
    for optimizer_class in (gdlab_class, torch_foreach_false(torch_class)):
        resumed_model = copy.deepcopy(model)
        resumed = optimizer_class(groups(resumed_model, config), **config)
        resumed.load_state_dict(copy.deepcopy(checkpoint))
        for group in resumed.param_groups:
            assert {"maximize", "foreach"} <= set(group)
        for state in resumed.state.values():
            assert "step" not in state or isinstance(state["step"], torch.Tensor)
        train(resumed_model, resumed, schedule(resumed), inputs, labels, HALF // 3, start=HALF // 3)
        results.append(resumed_model)
    assert_same_parameters(*results)


@pytest.mark.parametrize("name", RULES)
def test_a_copied_optimizer_goes_on_like_the_original(name):
    """deepcopy (and pickling) go through __getstate__/__setstate__, as in torch."""
    gdlab_class, _, config = RULES[name]
    model, inputs, labels = make_problem(torch.float64)
    optimizer = gdlab_class(groups(model, config), **config)
    train(model, optimizer, schedule(optimizer), inputs, labels, 5, start=0)
    copied_model, copied = copy.deepcopy((model, optimizer))
    train(model, optimizer, schedule(optimizer), inputs, labels, 5, start=5)
    train(copied_model, copied, schedule(copied), inputs, labels, 5, start=5)
    assert_same_parameters(copied_model, model)
