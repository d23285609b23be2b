"""`gdlab verify`: passes on gdlab's own rules and backward pass, and catches broken ones.

The broken rules and backward pass below go through the very comparison
functions the command uses (nothing of verify is replaced)."""

import functools
import io

import pytest
import torch
import typer
from rich.console import Console

from gdlab import optim
from gdlab.backprop import MLP as ScratchBackpropMLP
from gdlab.optim import functional
from gdlab.verify import (
    BACKPROP_RTOL,
    DTYPES,
    compare_backward,
    compare_rule,
    exit_code,
    results_table,
    rule_checks,
    run_verify,
    verify,
)

# Every registered rule has a row, by its class name (SGD, Adam, ..., NAdam, LBFGS, Lion ...).
RULES = [declaration.optimizer.__name__ for declaration in optim.registry.declarations()]
TORCH_SGD = functools.partial(torch.optim.SGD, foreach=False)


@pytest.fixture(scope="module")
def verified():
    output = io.StringIO()
    rows = run_verify(Console(file=output, width=120))
    return rows, output.getvalue()


def test_every_rule_and_the_backward_pass_agree_with_torch(verified):
    rows, _ = verified
    assert [row.rule for row in rows] == RULES + ["backprop.MLP"]
    for row in rows:
        assert row.passed, f"{row.rule}: {row.first_mismatch}"
    for row in rows[:-1]:
        assert row.bit_exact and row.max_difference == 0.0
    assert rows[-1].max_difference <= BACKPROP_RTOL
    assert exit_code(rows) == 0


def test_every_flag_combination_in_both_dtypes_is_run(verified):
    rows, _ = verified
    expected = {
        "SGD": 20,  # 2 momentum x 2 dampening x 2 nesterov x 2 weight decay x 2 maximize, less 12 torch refuses
        "Adam": 8, "AdamW": 8,  # amsgrad x weight decay x maximize
        "RMSprop": 16,  # centered x momentum x weight decay x maximize
        "Adagrad": 16,  # lr_decay x initial accumulator x weight decay x maximize
    }
    counts = {row.rule: row.configurations for row in rows}
    for rule, combinations in expected.items():
        assert counts[rule] == combinations * len(DTYPES)
    for declaration in optim.registry.declarations():  # and every other rule its own declared grid
        assert counts[declaration.optimizer.__name__] >= len(DTYPES)
    assert counts["backprop.MLP"] == 5 * 2  # activations x losses


def test_the_table_shows_every_rule_and_its_verdict(verified):
    _, printed = verified
    for rule in RULES + ["backprop.MLP"]:
        assert rule in printed
    assert "MISMATCH" not in printed
    assert "every scratch rule and the backward pass agree with torch" in printed


class MomentumNeverAppliedSGD(optim.SGD):
    """The course's classic mistake: momentum is accepted, and never used."""

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            params = self.params_with_grad(group)
            functional.sgd(params, [p.grad for p in params], [], lr=group["lr"], weight_decay=group["weight_decay"],
                           momentum=0.0, dampening=0.0, nesterov=False, maximize=group["maximize"])


class TextbookSGD(torch.optim.Optimizer):
    """Right math, written the usual way (p = p - lr * g): differs from torch by rounding only."""

    def __init__(self, params, lr):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    param.copy_(param - group["lr"] * param.grad)


def test_a_rule_that_ignores_momentum_fails_at_the_second_step():
    row = compare_rule("momentum never applied", MomentumNeverAppliedSGD, TORCH_SGD, [{"lr": 0.05, "momentum": 0.9}])
    assert not row.passed and not row.bit_exact
    assert row.max_difference > 0
    # The first step is the same (torch's buffer starts as the gradient); the second is not.
    assert "momentum=0.9, float32: step 2," in row.first_mismatch
    assert row.configurations == 2
    assert exit_code([row]) == 1


def test_a_rule_that_differs_only_by_rounding_is_not_bit_exact():
    row = compare_rule("textbook SGD", TextbookSGD, TORCH_SGD, [{"lr": 0.05}], dtypes=("float64",), steps=20)
    assert not row.passed
    assert 0 < row.max_difference < 1e-10


def test_a_mismatch_shows_in_the_table_and_makes_the_exit_code_1():
    broken = compare_rule("momentum never applied", MomentumNeverAppliedSGD, TORCH_SGD, [{"lr": 0.05, "momentum": 0.9}])
    sgd = next(check for check in rule_checks() if check[0] == "SGD")
    good = compare_rule("SGD", *sgd[1:3], [{"lr": 0.05, "momentum": 0.9}])
    assert good.passed
    output = io.StringIO()
    Console(file=output, width=120).print(results_table([good, broken]))
    assert "MISMATCH" in output.getvalue()
    assert exit_code([good, broken]) == 1


class BatchSumBackpropMLP(ScratchBackpropMLP):
    """Forgets the batch mean: every gradient is N times too large."""

    def backward(self, y_true, y_pred, loss="mse"):
        return [(dW * len(y_pred), db * len(y_pred)) for dW, db in super().backward(y_true, y_pred, loss=loss)]


def test_a_backward_pass_without_the_batch_mean_is_caught():
    row = compare_backward(lambda sizes, activation: BatchSumBackpropMLP(sizes, activation=activation),
                           activations=("relu",), losses=("cross_entropy",))
    assert not row.passed
    assert row.first_mismatch.startswith("activation=relu, loss=cross_entropy: layer 0 dL_dW")
    assert row.max_difference > 1


@pytest.mark.slow
def test_the_command_exits_0_and_prints_the_table(capsys):
    with pytest.raises(typer.Exit) as exited:
        verify()
    assert exited.value.exit_code == 0
    printed = capsys.readouterr().out
    assert all(rule in printed for rule in RULES)


def test_registering_the_command_does_not_import_torch():
    """The CLI imports gdlab.verify to register `gdlab verify`; `gdlab --help` must stay fast."""
    import subprocess
    import sys

    probe = "import sys, gdlab.verify; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
