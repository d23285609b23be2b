"""Issue 8, items 3 and 7: update functions and Optimizer classes checked directly, one verdict format.

The code is in tests/check_corpus/ as its sources write it: Neuromatch
Academy's optimization tutorial (update functions taking the loss), d2l.ai's
optimizer chapter (``f(params, states, hyperparams)``), a course report's
``manual_sgd_step(model, ...)`` and Optimizer subclasses as tutorials on
writing one do. The expected verdicts follow from the math: Neuromatch's
momentum keeps the learning rate in its velocity (equal to torch's while
the rate is constant), its RMSprop and d2l's put eps inside the square
root, d2l's Adam fixes eps = 1e-6.
"""

import json
import linecache
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from gdlab.check import CannotCheck, check, load_function
from gdlab.check.command import check as check_command
from gdlab.optim import registry

CORPUS = Path(__file__).parent / "check_corpus"

app = typer.Typer()
app.command(name="check")(check_command)


@app.callback()
def main() -> None:
    """A stand-in for the gdlab command group."""


def corpus(target: str):
    return load_function(str(CORPUS / target))


# --- update functions ------------------------------------------------------------------------------


def test_neuromatch_gradient_update_passes():
    report = check(corpus("nma_optimization.py:gradient_update"), hparams={"lr": 0.1})
    assert report.passed, report.render()
    assert report.entry == "update function"
    assert report.call == "gradient_update(loss, params, lr=0.1) at every step"


def test_neuromatch_momentum_passes_and_is_named_the_heavy_ball_form_once_the_rate_changes():
    report = check(corpus("nma_optimization.py:momentum_update"), hparams={"lr": 0.01, "momentum": 0.9})
    assert report.passed, report.render()
    assert report.bound == ("grad_vel as state", "beta as momentum")
    # Halving the rate from step 11 on separates it from torch's, as the heavy-ball form.
    assert report.kind == "variant"
    assert report.cause.startswith("the learning rate is inside the momentum buffer, the classic heavy-ball form")
    assert report.evidence.startswith(
        "with the learning rate multiplied by 0.5 from step 11 on (as a scheduler would), your steps part from "
        "torch.optim.SGD's at step 11; this matches all 10 of your steps from step 11 on"
    )
    assert report.to_json()["verdict"] == "pass"


def test_neuromatch_rmsprop_has_eps_inside_the_square_root():
    report = check(corpus("nma_optimization.py:rmsprop_update"), hparams={"lr": 1e-3})
    assert report.against == "rmsprop" and report.hparams["alpha"] == 0.8  # the function's own default
    assert not report.passed
    assert report.first_divergence.step == 1
    assert report.cause.startswith("eps is inside the square root")
    assert report.kind == "variant"


def test_an_update_function_that_forgets_zero_grad_accumulates_gradients():
    report = check(corpus("nma_optimization.py:momentum_update_without_zero_grad"),
                   hparams={"lr": 0.01, "momentum": 0.9})
    assert report.first_divergence.step == 2
    assert report.cause.startswith("gradients are never zeroed")
    assert report.kind == "bug"


@pytest.mark.parametrize("name", ["sgd", "sgd_momentum"])
def test_d2l_sgd_and_momentum_pass(name):
    report = check(corpus(f"d2l_optimizers.py:{name}"), hparams={"lr": 0.05, "momentum": 0.9}
                   if name == "sgd_momentum" else {"lr": 0.05})
    assert report.passed, report.render()
    assert report.call == f"{name}(params, states, hyperparams) at every step"
    assert "gdlab computed fresh gradients (p.grad) before every call, as the loop around it would" in report.notes


def test_d2l_minibatch_sgd_divides_the_summed_losss_gradient_by_the_batch_size_and_passes():
    report = check(corpus("d2l_linear_regression.py:sgd"), hparams={"lr": 0.03})
    assert report.against == "sgd" and report.passed, report.render()
    assert report.call == "sgd(params, lr=0.03, batch_size=batch_size) at every step"
    assert ("batch_size was given the batch size (32), and the gradients were those of the loss summed over "
            "the batch, as d2l's l.sum().backward() makes them") in report.notes


def test_d2l_minibatch_sgd_without_its_division_is_batch_size_times_too_long():
    report = check(corpus("d2l_linear_regression.py:sgd_without_the_division"), against="sgd", hparams={"lr": 0.03})
    assert not report.passed and report.kind == "bug"
    assert "32, the batch size" in report.cause
    assert "gradients of the loss summed over the batch" in report.hint
    assert "is the division by batch_size missing?" in report.hint


def test_d2l_rmsprop_reads_gamma_as_alpha_and_has_eps_inside_the_square_root_fixed_at_1e_6():
    report = check(corpus("d2l_optimizers.py:rmsprop"), hparams={"lr": 0.01, "alpha": 0.9})
    assert "hyperparams was read with 'gamma' as alpha" in report.notes
    assert report.cause.startswith("eps is inside the square root")
    assert "your code has no parameter for eps and uses eps=1e-06" in report.cause
    assert report.evidence == "this matches all 20 of your steps from step 1 on"


def test_d2l_adam_keeps_its_step_count_in_the_dict_and_its_moments_in_pairs():
    report = check(corpus("d2l_optimizers.py:adam"), hparams={"lr": 0.01})
    assert "states was given as a tuple of 2 zero tensors per parameter, kept from step to step" in report.notes
    assert "hyperparams was read with 't' as the step count" in report.notes
    assert report.cause.startswith("your steps match torch.optim.Adam with eps=1e-06")
    # Given the constant it fixes, it is torch's Adam.
    assert check(corpus("d2l_optimizers.py:adam"), hparams={"lr": 0.01, "eps": 1e-6}).passed


@pytest.mark.skipif("adadelta" not in registry.names(), reason="no Adadelta declared yet")
def test_d2l_adadelta_is_torch_adadelta_with_eps_1e_5():
    report = check(corpus("d2l_optimizers.py:adadelta"), hparams={"rho": 0.9})
    assert report.against == "adadelta"
    assert report.cause.startswith("your steps match torch.optim.Adadelta with eps=1e-05")


def test_a_course_step_over_model_parameters_with_none_buffers_passes():
    report = check(corpus("course_report_step.py:manual_sgd_step"),
                   hparams={"lr": 0.01, "momentum": 0.9, "weight_decay": 0.01})
    assert report.passed, report.render()
    assert report.call == "manual_sgd_step(model, learning_rate=0.01, momentum=0.9, weight_decay=0.01, " \
                          "momentum_buffer=momentum_buffer) at every step"
    # Its code tests `velocity is None`, so the buffers start as None.
    assert "momentum_buffer was given as None for each parameter, kept from step to step" in report.notes


def test_an_update_function_that_returns_new_parameters_has_them_written_back():
    def sgd_step(params, grads, lr):
        return [p - lr * g for p, g in zip(params, grads)]

    report = check(sgd_step, hparams={"lr": 0.05})
    assert report.passed, report.render()
    assert "sgd_step returned new parameters; gdlab wrote them back into the model" in report.notes


def test_an_update_function_that_raises_is_cannot_check_with_its_line():
    def sgd_step(params, lr):
        for p in params:
            p.data -= lr * p.gradient

    with pytest.raises(CannotCheck, match=r"(?s)sgd_step raised an exception while gdlab called it.*"
                                          r"AttributeError: 'Parameter' object has no attribute 'gradient'"):
        check(sgd_step, hparams={"lr": 0.05})


# --- Optimizer classes -----------------------------------------------------------------------------


def test_an_optimizer_subclass_is_checked_directly():
    report = check(corpus("my_rules.py:MyAdam"), hparams={"lr": 0.01, "weight_decay": 0.01})
    assert report.passed, report.render()
    assert (report.entry, report.against, report.chosen_because) == ("Optimizer class", "adam", "from the name MyAdam")
    assert report.call == "MyAdam(model.parameters(), lr=0.01, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.01)"


def test_an_optimizer_that_keeps_weight_decay_outside_its_buffer_is_that_variant():
    report = check(corpus("my_rules.py:SGDWithMomentum"), hparams={"lr": 0.01, "momentum": 0.9, "weight_decay": 0.01})
    assert report.first_divergence.step == 2
    assert report.cause.startswith("weight decay is kept outside the momentum buffer")
    assert report.kind == "variant"


def test_an_optimizer_that_reads_its_learning_rate_once_is_found_when_the_rate_changes():
    class CachedLrSGD(torch.optim.Optimizer):
        def __init__(self, params, lr=0.01):
            super().__init__(params, {"lr": lr})
            self.lr = lr

        @torch.no_grad()
        def step(self):
            for group in self.param_groups:
                for p in group["params"]:
                    p -= self.lr * p.grad

    report = check(CachedLrSGD, "sgd", {"lr": 0.05})
    assert report.passed
    assert report.cause.startswith("the learning rate is read once")
    assert report.kind == "bug"


# --- a notebook cell: an object, no file -----------------------------------------------------------


CELL = '''import torch

def sgd_step(model, lr=0.05):
    with torch.no_grad():
        for p in model.parameters():
            p -= lr * p.grad
'''


@pytest.mark.parametrize("source_known", [True, False])
def test_a_function_defined_in_a_notebook_cell_is_checked(source_known):
    # IPython compiles a cell under a made-up file name and keeps its text in linecache.
    filename = "/tmp/ipykernel_4242/1712345678.py"
    if source_known:
        linecache.cache[filename] = (len(CELL), None, CELL.splitlines(True), filename)
    namespace: dict = {}
    try:
        exec(compile(CELL, filename, "exec"), namespace)
        report = check(namespace["sgd_step"])
    finally:
        linecache.cache.pop(filename, None)
    assert report.passed, report.render()
    assert report.function == "sgd_step"
    assert report.hparams["lr"] == 0.05


# --- the command line ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target, args, status, verdict, kind, entry",
    [
        ("nma_optimization.py:momentum_update", ["--lr", "0.01", "--momentum", "0.9"], 0, "pass", "variant",
         "update function"),
        ("d2l_optimizers.py:adagrad", ["--lr", "0.1"], 1, "fail", "variant", "update function"),
        ("my_rules.py:MyAdam", ["--lr", "0.01"], 0, "pass", "none", "Optimizer class"),
        ("my_rules.py:SGDWithMomentum", ["--lr", "0.01", "--weight-decay", "0.01"], 1, "fail", "variant",
         "Optimizer class"),
    ],
)
def test_every_entry_point_from_the_command_line(target, args, status, verdict, kind, entry):
    result = CliRunner().invoke(app, ["check", str(CORPUS / target), *args, "--json"])
    assert result.exit_code == status, result.output
    report = json.loads(result.output)
    assert (report["verdict"], report["kind"], report["entry"]) == (verdict, kind, entry)


# cs231n's optim.py: one parameter at a time, numpy arrays, a config dict per parameter

CS231N_ONE_AT_A_TIME = (
    "gdlab called {name} once per parameter at every step, with one config dict per parameter kept from step "
    "to step, as cs231n's Solver does; w was the parameter"
)
# Code that calls numpy itself (np.zeros_like(w), np.sqrt) gets numpy arrays; sgd's `w -= lr * dw` works on tensors.
AS_NUMPY_ARRAYS = " (numpy arrays: views of the parameter and its gradient)"


@pytest.mark.parametrize("name, against, hparams", [
    ("sgd", "sgd", {"lr": 1e-2}),
    ("rmsprop", "rmsprop", {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8}),
    ("adam", "adam", {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8}),
])
def test_cs231n_update_rules_pass_with_their_own_config_defaults(name, against, hparams):
    report = check(corpus(f"cs231n_optim.py:{name}"))
    assert report.passed, report.render()
    assert report.against == against
    # The defaults the code writes with config.setdefault are its own, as a parameter's default is.
    assert {key: report.hparams[key] for key in hparams} == hparams
    assert report.call == f"{name}(w, dw, config) at every step"
    assert CS231N_ONE_AT_A_TIME.format(name=name) + (AS_NUMPY_ARRAYS if name != "sgd" else "") in report.notes


def test_cs231n_momentum_keeps_the_learning_rate_in_its_velocity_a_known_variant():
    report = check(corpus("cs231n_optim.py:sgd_momentum"))
    assert report.passed and report.hparams["momentum"] == 0.9
    assert report.kind == "variant"
    assert report.cause.startswith("the learning rate is inside the momentum buffer, the classic heavy-ball form")


def test_cs231n_adam_without_bias_correction_is_named_at_step_1():
    report = check(corpus("cs231n_optim.py:adam_without_bias_correction"), against="adam")
    assert not report.passed and report.kind == "bug"
    assert report.first_divergence.step == 1
    assert report.cause.startswith("bias correction is missing")


def test_given_hyperparameters_win_over_the_codes_config_defaults():
    report = check(corpus("cs231n_optim.py:sgd"), hparams={"lr": 0.05})
    assert report.passed and report.hparams["lr"] == 0.05
