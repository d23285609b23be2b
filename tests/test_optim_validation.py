"""Invalid hyperparameters are refused where torch refuses them (ValueError), with a
message naming the argument and the value; in param groups too."""

import inspect
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
def test_a_tensor_learning_rate_of_one_value_is_taken_and_of_more_is_refused_like_torch(name):
    """torch takes a 1-element tensor lr (its schedulers then update it in place); a tensor
    of several values is refused with torch's ValueError, in later param groups too."""
    gdlab_class, torch_class = PAIRS[name]
    for lr in (torch.tensor(0.1), torch.tensor([0.1]), torch.tensor([[0.1]])):
        assert gdlab_class(params(), lr=lr).param_groups[0]["lr"] is lr
    for optimizer_class in (torch_class, gdlab_class):
        with pytest.raises(ValueError, match="Tensor lr must be 1-element"):
            optimizer_class(params(), lr=torch.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match="gdlab.optim.functional"):
        gdlab_class(params(), lr=torch.tensor([0.1, 0.2]))
    optimizer = gdlab_class(params(), lr=0.1)
    with pytest.raises(ValueError, match="Tensor lr must be 1-element"):
        optimizer.add_param_group({"params": params(), "lr": torch.tensor([0.1, 0.2])})
    with pytest.raises(ValueError, match="Invalid learning rate"):
        gdlab_class(params(), lr=torch.tensor(-0.1))


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_betas_are_both_numbers_or_both_tensors_as_in_torch(name):
    gdlab_class, torch_class = PAIRS[name]
    for betas in ((0.9, torch.tensor(0.99)), (torch.tensor(0.9), 0.99)):
        for optimizer_class in (torch_class, gdlab_class):
            with pytest.raises(ValueError, match="betas must be either both floats or both Tensors"):
                optimizer_class(params(), betas=betas)
    optimizer = gdlab_class(params(), betas=(torch.tensor([0.8]), torch.tensor([[0.9]])))
    beta1, beta2 = optimizer.defaults["betas"]
    assert beta1.dim() == 0 and beta2.dim() == 0  # stored as torch stores them (_to_scalar)
    with pytest.raises(ValueError, match=r"Tensor betas\[1\] must be 1-element"):
        gdlab_class(params(), betas=(torch.tensor(0.8), torch.full((2,), 0.9)))


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_tensor_hyperparameters_with_foreach_are_refused_with_torchs_message(name):
    """gdlab ignores foreach, but refuses what torch refuses, so code behaves the same on both."""
    gdlab_class, torch_class = PAIRS[name]
    cases = [
        ({"lr": torch.tensor(0.001), "foreach": True}, "lr as a Tensor is not supported"),
        ({"betas": (torch.tensor(0.9), torch.tensor(0.99)), "foreach": True}, r"betas\[0\] as a Tensor"),
    ]
    for arguments, message in cases:
        for optimizer_class in (torch_class, gdlab_class):
            with pytest.raises(ValueError, match=message):
                optimizer_class(params(), **arguments)


# torch's implementation switches each class takes (torch's signature), and the ones gdlab refuses as True.
SWITCHES = {
    "SGD": ("foreach", "differentiable", "fused"),
    "Adam": ("foreach", "capturable", "differentiable", "fused"),
    "AdamW": ("foreach", "capturable", "differentiable", "fused"),
    "RMSprop": ("foreach", "capturable", "differentiable"),
    "Adagrad": ("foreach", "differentiable", "fused"),
}


@pytest.mark.parametrize("name", PAIRS)
def test_signature_is_torchs_exactly(name):
    """Same parameter names, order, kinds (positional or keyword-only) and defaults as torch's class."""
    gdlab_class, torch_class = PAIRS[name]

    def shape(cls):
        return [(p.name, p.kind, p.default) for p in inspect.signature(cls.__init__).parameters.values()]

    assert shape(gdlab_class) == shape(torch_class)
    assert gdlab_class(params()).defaults == torch_class(params()).defaults


@pytest.mark.parametrize("name", PAIRS)
def test_implementation_switches_are_stored_foreach_ignored_the_others_refused_when_true(name):
    gdlab_class, _ = PAIRS[name]
    switches = SWITCHES[name]
    optimizer = gdlab_class(params(), foreach=True)
    assert optimizer.param_groups[0]["foreach"] is True
    for switch in switches:
        assert switch in optimizer.defaults
        if switch == "foreach":
            continue
        with pytest.raises(ValueError, match=f"{switch}=True is not supported: gdlab runs torch's single-tensor rule"):
            gdlab_class(params(), **{switch: True})
        with pytest.raises(ValueError, match=switch):
            optimizer.add_param_group({"params": params(), switch: True})
        gdlab_class(params(), **{switch: False})  # False is what gdlab does


@pytest.mark.parametrize("name", PAIRS)
def test_foreach_true_runs_the_same_rule(name):
    gdlab_class, _ = PAIRS[name]
    results = []
    for foreach in (None, False, True):
        param = nn.Parameter(torch.linspace(-1, 1, 6).reshape(2, 3))
        optimizer = gdlab_class([param], lr=0.1, foreach=foreach)
        for _ in range(3):
            param.grad = param.detach() ** 2 - 0.3
            optimizer.step()
        results.append(param.detach().clone())
    assert torch.equal(results[0], results[1]) and torch.equal(results[0], results[2])


def test_non_numbers_and_non_flags_are_refused_with_their_value():
    with pytest.raises(TypeError, match="lr must be a real number, got '0.1'"):
        gdlab.optim.SGD(params(), lr="0.1")
    with pytest.raises(TypeError, match="maximize must be True or False, got 'yes'"):
        gdlab.optim.Adam(params(), maximize="yes")
    with pytest.raises(ValueError, match="betas must be a pair"):
        gdlab.optim.Adam(params(), betas=0.9)


def test_sgd_has_torchs_default_learning_rate():
    assert gdlab.optim.SGD(params()).defaults["lr"] == torch.optim.SGD(params()).defaults["lr"] == 1e-3


@pytest.mark.parametrize("name", ["Adam", "AdamW", "RMSprop"])
def test_sparse_gradients_are_refused_where_torch_refuses_them(name):
    """SGD and Adagrad take sparse gradients (tested against torch in test_optim_db.py); the others,
    like torch's, refuse them at the step with a RuntimeError that says so."""
    gdlab_class, torch_class = PAIRS[name]
    for optimizer_class in (torch_class, gdlab_class):
        param = nn.Parameter(torch.zeros(4, 2))
        param.grad = torch.zeros(4, 2).to_sparse()
        with pytest.raises(RuntimeError, match="does not support sparse gradients"):
            optimizer_class([param]).step()


@pytest.mark.parametrize("name", ["SGD", "Adagrad"])
def test_sparse_gradient_with_weight_decay_fails_as_in_torch(name):
    gdlab_class, torch_class = PAIRS[name]
    errors = []
    for optimizer_class in (torch_class, gdlab_class):
        param = nn.Parameter(torch.ones(4, 2))
        param.grad = torch.ones(4, 2).to_sparse()
        with pytest.raises(RuntimeError) as raised:
            optimizer_class([param], lr=0.1, weight_decay=0.1).step()
        errors.append(str(raised.value))
    assert errors[0] == errors[1]


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
