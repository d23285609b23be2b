"""Issue 8, item 1: the user's parameters are read by name, in any order, and what cannot be read is explained.

The functions are in tests/check_corpus/, written as the course's templates
write them (hyperparameters before the model, a validation loader, a device,
an optimizer argument), and in tests/check_examples/. Which role or
hyperparameter a name is follows from the usual spellings people use; the
tests name them one by one so that a spelling dropped from the tables fails.
"""

import re
from pathlib import Path

import pytest
import torch

from gdlab.check import CannotCheck, check, load_function
from gdlab.check.binding import OPTIMIZER, TRAINING, UPDATE, bind
from gdlab.check.rules import get_rule

CORPUS = Path(__file__).parent / "check_corpus"
SGD_MOMENTUM_DECAY = {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.01}


def corpus(target: str):
    return load_function(str(CORPUS / target))


def function_with(parameters: str, body: str = "pass"):
    namespace: dict = {}
    exec(f"def train({parameters}):\n    {body}\n", namespace)
    return namespace["train"]


# --- the course's templates, checked as written ----------------------------------------------------


def test_an_optimizer_argument_receives_torch_own_optimizer_and_the_loop_is_checked():
    report = check(corpus("course_float64.py:train"), "sgd", {"lr": 0.01})
    assert report.passed, report.render()
    assert report.call == "train(2, torch.optim.SGD(model.parameters(), ...), model, loss_fn, train_loader)"
    assert any("optimizer was given torch.optim.SGD itself" in note for note in report.notes)
    # The hyperparameters reach the code through that optimizer: none is taken for a constant.
    assert not any("has no parameter for" in note for note in report.notes)


def test_learning_rate_before_the_loader_is_read_as_the_learning_rate():
    # gdlab used to bind the first four arguments by position and take learning_rate for the loader.
    report = check(corpus("course_float64.py:train_manual_update"), "sgd", SGD_MOMENTUM_DECAY)
    assert report.passed, report.render()
    assert report.bound == ("learning_rate as lr",)
    assert report.call == (
        "train_manual_update(2, model, loss_fn, learning_rate=0.01, momentum=0.9, weight_decay=0.01, "
        "train_loader=train_loader)"
    )


def test_hyperparameters_first_with_validation_loader_and_device_pass():
    report = check(corpus("course_float64.py:train_model"), "sgd", SGD_MOMENTUM_DECAY)
    assert report.passed, report.render()
    assert report.bound == ("criterion as loss_fn", "num_epochs as n_epochs")
    assert "val_loader=val_loader, device=device, num_epochs=2" in report.call


def test_a_function_that_trains_one_epoch_per_call_is_called_once_per_epoch():
    report = check(corpus("course_float64.py:train_one_epoch"), "sgd", {"lr": 0.05})
    assert report.passed, report.render()
    assert report.steps_taken == 20
    assert report.call.endswith("once per epoch (2 calls: it takes no number of epochs)")


# --- spellings -------------------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["epochs", "n_epochs", "num_epochs", "nb_epochs", "epoch_count", "max_epochs"])
def test_spellings_of_the_number_of_epochs(spelling):
    binding = bind(function_with(f"{spelling}, model, loss_fn, train_loader"), get_rule("sgd"))
    assert binding.role("n_epochs").name == spelling and binding.entry == TRAINING


@pytest.mark.parametrize(
    "spelling, role",
    [("model", "model"), ("net", "model"), ("network", "model"), ("loss_fn", "loss_fn"), ("criterion", "loss_fn"),
     ("loss_function", "loss_fn"), ("loss", "loss_fn"), ("train_loader", "train_loader"), ("loader", "train_loader"),
     ("dataloader", "train_loader"), ("train_dl", "train_loader"), ("train_iter", "train_loader"),
     ("val_loader", "val_loader"), ("valid_loader", "val_loader"), ("test_loader", "val_loader"),
     ("device", "device"), ("optimizer", "optimizer"), ("opt", "optimizer")],
)
def test_spellings_of_the_roles_of_a_training_function(spelling, role):
    others = {"model": "net", "train_loader": "loader"}
    parameters = ["n_epochs", spelling] + [others[name] for name in others if name != role]
    binding = bind(function_with(", ".join(parameters)), get_rule("sgd"))
    assert binding.role(role).name == spelling


@pytest.mark.parametrize(
    "rule, spelling, hyperparameter",
    [("sgd", "lr", "lr"), ("sgd", "learning_rate", "lr"), ("sgd", "eta", "lr"), ("sgd", "step_size", "lr"),
     ("sgd", "alpha", "lr"), ("sgd", "momentum", "momentum"), ("sgd", "mu", "momentum"), ("sgd", "beta", "momentum"),
     ("sgd", "c_mom", "momentum"), ("sgd", "weight_decay", "weight_decay"), ("sgd", "wd", "weight_decay"),
     ("sgd", "l2", "weight_decay"), ("sgd", "lambda_", "weight_decay"), ("sgd", "lambd", "weight_decay"),
     ("sgd", "w_decay", "weight_decay"), ("sgd", "nesterov", "nesterov"), ("sgd", "dampening", "dampening"),
     ("rmsprop", "alpha", "alpha"), ("rmsprop", "gamma", "alpha"), ("rmsprop", "epsilon", "eps"),
     ("adam", "epsilon", "eps"), ("adagrad", "lr_decay", "lr_decay")],
)
def test_spellings_of_hyperparameters(rule, spelling, hyperparameter):
    binding = bind(function_with(f"n_epochs, model, loss_fn, train_loader, {spelling}=0.1"), get_rule(rule))
    assert [slot.hyperparameter for slot in binding.slots if slot.name == spelling] == [hyperparameter]


def test_adam_betas_as_a_pair_or_as_two_numbers():
    rule = get_rule("adam")
    pair = bind(function_with("n_epochs, model, loss_fn, train_loader, betas=(0.9, 0.999)"), rule)
    two = bind(function_with("n_epochs, model, loss_fn, train_loader, beta1=0.8, beta2=0.99"), rule)
    assert pair.own_defaults()["betas"] == (0.9, 0.999)
    assert two.own_defaults()["betas"] == (0.8, 0.99)
    assert two.arguments({"n_epochs": 2, "model": 0, "loss_fn": 0, "train_loader": 0}, {"betas": (0.7, 0.9)}) == (
        [2, 0, 0, 0], {"beta1": 0.7, "beta2": 0.9}
    )


def test_a_hyperparameter_spelled_twice_goes_to_the_first_and_the_other_keeps_its_default():
    binding = bind(function_with("n_epochs, model, loss_fn, train_loader, lr=0.1, learning_rate=0.2"), get_rule("sgd"))
    assert [(slot.name, slot.hyperparameter) for slot in binding.slots[4:]] == [("lr", "lr"), ("learning_rate", None)]


# --- what the name does not say: --bind --------------------------------------------------------------


def fit(epochs_to_run, net, objective_fn, batches, step):
    for _ in range(epochs_to_run):
        for x, y in batches:
            net.zero_grad()
            objective_fn(net(x), y).backward()
            with torch.no_grad():
                for p in net.parameters():
                    p -= step * p.grad


def test_bind_names_a_role_or_a_hyperparameter_for_any_parameter():
    with pytest.raises(CannotCheck, match=r"its parameter 'epochs_to_run' has no default"):
        check(fit, "sgd", {"lr": 0.05})
    report = check(fit, "sgd", {"lr": 0.05},
                   binds={"epochs_to_run": "n_epochs", "objective_fn": "loss_fn", "step": "lr"})
    assert report.passed, report.render()
    assert report.call == "fit(2, net, objective_fn, batches, step=0.05)"


def test_what_cannot_be_bound_is_explained_with_every_parameter():
    with pytest.raises(CannotCheck) as raised:
        check(fit, "sgd", {"lr": 0.05}, binds={"objective_fn": "loss_fn"})
    message = str(raised.value)
    assert message.startswith("fit(epochs_to_run, net, objective_fn, batches, step) cannot be called as a training "
                              "function: its parameter 'epochs_to_run' has no default")
    for name, taken in [("epochs_to_run", "nothing gdlab knows, and it has no default"),
                        ("net", "model: the model (by name)"), ("objective_fn", "loss_fn: the loss function (--bind)"),
                        ("batches", "train_loader: the training loader (by name)"),
                        ("step", "nothing gdlab knows, and it has no default")]:
        assert re.search(rf"\n\s+{name}\s+{re.escape(taken)}", message), message
    assert "--bind NAME=ROLE" in message and "roles of a training function: n_epochs, model" in message


def test_which_entry_point_a_function_is_follows_from_its_roles():
    sgd = get_rule("sgd")
    assert bind(function_with("model, loader, lr"), sgd).entry == TRAINING
    assert bind(function_with("loss, params, grad_vel, lr, beta"), sgd).entry == UPDATE
    assert bind(function_with("params, states, hyperparams"), sgd).entry == UPDATE
    assert bind(corpus("my_rules.py:MyAdam"), get_rule("adam")).entry == OPTIMIZER
    update = bind(function_with("loss, params, grad_vel, lr, beta"), sgd)
    assert [(slot.role, slot.hyperparameter) for slot in update.slots] == [
        ("loss", None), ("params", None), ("state", None), (None, "lr"), (None, "momentum")
    ]


def test_a_class_that_is_not_an_optimizer_is_refused():
    class Trainer:
        def __init__(self, model, lr):
            pass

    with pytest.raises(CannotCheck, match=r"Trainer is a class but not a torch\.optim\.Optimizer subclass"):
        check(Trainer)
