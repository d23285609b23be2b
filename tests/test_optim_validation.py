"""Invalid hyperparameters are refused where torch refuses them (ValueError), with a
message naming the argument and the value; in param groups too."""

import math
import warnings

import pytest
import torch
from torch import nn

import gdlab.optim

PAIRS = {
    "SGD": (gdlab.optim.SGD, torch.optim.SGD),
    "Adam": (gdlab.optim.Adam, torch.optim.Adam),
    "AdamW": (gdlab.optim.AdamW, torch.optim.AdamW),
    "RMSprop": (gdlab.optim.RMSprop, torch.optim.RMSprop),
    "Adagrad": (gdlab.optim.Adagrad, torch.optim.Adagrad),
}

# (optimizer, bad arguments, argument name and value the message must show)
INVALID = [
    ("SGD", {"lr": -0.1}, "lr", "-0.1"),
    ("SGD", {"lr": 0.1, "momentum": -0.5}, "momentum", "-0.5"),
    ("SGD", {"lr": 0.1, "weight_decay": -1e-4}, "weight_decay", "-0.0001"),
    ("SGD", {"lr": 0.1, "nesterov": True}, "momentum", "0"),
    ("SGD", {"lr": 0.1, "nesterov": True, "momentum": 0.9, "dampening": 0.1}, "dampening", "0.1"),
    ("Adam", {"lr": -1.0}, "lr", "-1.0"),
    ("Adam", {"eps": -1e-8}, "eps", "-1e-08"),
    ("Adam", {"betas": (1.0, 0.999)}, "betas[0]", "1.0"),
    ("Adam", {"betas": (0.9, -0.1)}, "betas[1]", "-0.1"),
    ("Adam", {"weight_decay": -0.01}, "weight_decay", "-0.01"),
    ("AdamW", {"betas": (0.9, 1.5)}, "betas[1]", "1.5"),
    ("AdamW", {"weight_decay": -0.01}, "weight_decay", "-0.01"),
    ("RMSprop", {"lr": -0.01}, "lr", "-0.01"),
    ("RMSprop", {"alpha": -0.5}, "alpha", "-0.5"),
    ("RMSprop", {"eps": -1.0}, "eps", "-1.0"),
    ("RMSprop", {"momentum": -0.9}, "momentum", "-0.9"),
    ("RMSprop", {"weight_decay": -1.0}, "weight_decay", "-1.0"),
    ("Adagrad", {"lr": -0.01}, "lr", "-0.01"),
    ("Adagrad", {"lr_decay": -0.1}, "lr_decay", "-0.1"),
    ("Adagrad", {"weight_decay": -0.1}, "weight_decay", "-0.1"),
    ("Adagrad", {"initial_accumulator_value": -1.0}, "initial_accumulator_value", "-1.0"),
    ("Adagrad", {"eps": -1e-10}, "eps", "-1e-10"),
]


def params():
    return [nn.Parameter(torch.zeros(2, 2))]


@pytest.mark.parametrize("name, arguments, argument, value", INVALID)
def test_invalid_argument_is_refused_like_torch_and_named(name, arguments, argument, value):
    gdlab_class, torch_class = PAIRS[name]
    with pytest.raises(ValueError):
        torch_class(params(), **arguments)
    with pytest.raises(ValueError) as refused:
        gdlab_class(params(), **arguments)
    message = str(refused.value)
    assert argument in message and value in message, message


@pytest.mark.parametrize("name, arguments, argument, value", INVALID)
def test_invalid_argument_in_a_param_group_is_refused_and_not_added(name, arguments, argument, value):
    gdlab_class, _ = PAIRS[name]
    base = {"lr": 0.1} if name == "SGD" else {}
    optimizer = gdlab_class(params(), **base)
    group = {"params": params(), **arguments}
    with pytest.raises(ValueError, match=argument.replace("[", r"\[").replace("]", r"\]")):
        optimizer.add_param_group(group)
    assert len(optimizer.param_groups) == 1


def test_torch_error_wording_is_kept():
    """Code that matched torch's messages still matches gdlab's."""
    with pytest.raises(ValueError, match="Invalid learning rate: -0.1"):
        gdlab.optim.SGD(params(), lr=-0.1)
    with pytest.raises(ValueError, match="Nesterov momentum requires a momentum and zero dampening"):
        gdlab.optim.SGD(params(), lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="Invalid beta parameter at index 0: 1.0"):
        gdlab.optim.Adam(params(), betas=(1.0, 0.9))


@pytest.mark.parametrize("name", PAIRS)
def test_nan_learning_rate_is_refused(name):
    with pytest.raises(ValueError, match="lr"):
        PAIRS[name][0](params(), lr=math.nan)


@pytest.mark.parametrize("name", PAIRS)
def test_tensor_learning_rate_points_to_the_functional_rules(name):
    with pytest.raises(TypeError, match="gdlab.optim.functional"):
        PAIRS[name][0](params(), lr=torch.tensor(0.1))


def test_non_numbers_and_non_flags_are_refused_with_their_value():
    with pytest.raises(TypeError, match="lr must be a real number, got '0.1'"):
        gdlab.optim.SGD(params(), lr="0.1")
    with pytest.raises(TypeError, match="maximize must be True or False, got 'yes'"):
        gdlab.optim.Adam(params(), maximize="yes")
    with pytest.raises(ValueError, match="betas must be a pair"):
        gdlab.optim.Adam(params(), betas=0.9)


def test_sgd_needs_a_learning_rate():
    with pytest.raises(TypeError, match="lr"):
        gdlab.optim.SGD(params())


def test_sparse_gradients_are_refused_with_the_way_out():
    param = nn.Parameter(torch.zeros(4, 2))
    param.grad = torch.zeros(4, 2).to_sparse()
    with pytest.raises(RuntimeError, match="sparse"):
        gdlab.optim.SGD([param], lr=0.1).step()


def test_adagrad_group_initial_value_is_not_silently_ignored():
    """torch starts every sum at the constructor's value; gdlab does too (to stay
    equal to torch) and says so when a group asks for another."""
    with pytest.warns(UserWarning, match="initial_accumulator_value=0.5"):
        optimizer = gdlab.optim.Adagrad(
            [{"params": params(), "initial_accumulator_value": 0.5}, {"params": params()}],
            initial_accumulator_value=0.1,
        )
    for group in optimizer.param_groups:
        for param in group["params"]:
            assert torch.equal(optimizer.state[param]["sum"], torch.full((2, 2), 0.1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gdlab.optim.Adagrad([{"params": params(), "initial_accumulator_value": 0.1}], initial_accumulator_value=0.1)
