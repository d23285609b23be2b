"""Issue 8, item 2: the check runs in the dtype the user's code computes in, and says which and why.

The course works in float64: its notebooks call
``torch.set_default_dtype(torch.double)`` (tests/check_corpus/course_float64.py)
or convert with ``.double()`` / ``.to(torch.float64)``
(tests/check_corpus/course_double_inside.py, its dtype in a module constant
so that only running it tells). In float32 such code stops with a dtype
error; a dtype error must never reach the user as a traceback.
"""

from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from gdlab.check import CannotCheck, check, load_function
from gdlab.check.command import check as check_command

CORPUS = Path(__file__).parent / "check_corpus"
SGD_MOMENTUM_DECAY = {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.01}

app = typer.Typer()
app.command(name="check")(check_command)


@app.callback()
def main() -> None:
    """A stand-in for the gdlab command group."""


def test_a_module_that_sets_float64_is_checked_in_float64_and_torch_default_is_put_back():
    before = torch.get_default_dtype()
    train = load_function(str(CORPUS / "course_float64.py") + ":train_manual_update")
    assert torch.get_default_dtype() == before  # importing the course file does not change the test process
    report = check(train, "sgd", SGD_MOMENTUM_DECAY)
    assert report.passed, report.render()
    assert report.dtype == torch.float64
    assert report.dtype_reason == "auto: your module sets torch.set_default_dtype(torch.float64)"
    assert "float64 (auto: your module sets torch.set_default_dtype(torch.float64)); 2 epochs" in report.render()
    assert report.tolerance == 8 * torch.finfo(torch.float64).eps
    assert torch.get_default_dtype() == before


def test_a_loop_that_converts_its_batches_to_float64_is_run_again_in_float64():
    report = check(load_function(str(CORPUS / "course_double_inside.py") + ":train"), "sgd", {"lr": 0.05})
    assert report.passed, report.render()
    assert report.dtype == torch.float64
    assert report.dtype_reason.startswith(
        "auto: in float32 your code raised RuntimeError: mat1 and mat2 must have the same dtype"
    )
    assert "course_double_inside.py, line 12" in report.dtype_reason


def test_a_float64_loop_checked_in_float32_on_request_is_cannot_check_naming_the_dtype():
    train = load_function(str(CORPUS / "course_double_inside.py") + ":train")
    with pytest.raises(CannotCheck) as raised:
        check(train, "sgd", {"lr": 0.05}, dtype="float32")
    message = str(raised.value)
    assert message.startswith("train does not compute in float32, the dtype asked for: it raised RuntimeError")
    assert "--dtype float64, or --dtype auto" in message


def test_the_command_never_shows_a_dtype_traceback():
    for dtype in ("float32", "auto"):
        result = CliRunner().invoke(
            app, ["check", str(CORPUS / "course_double_inside.py") + ":train", "--dtype", dtype]
        )
        assert "Traceback" not in result.output
        assert result.exit_code == (2 if dtype == "float32" else 0), result.output


def test_code_that_uses_double_is_checked_in_float64_from_the_start():
    def train(n_epochs, model, loss_fn, train_loader, lr=0.05):
        for _ in range(n_epochs):
            for x, y in train_loader:
                model.zero_grad()
                loss_fn(model(x.double()), y).backward()
                with torch.no_grad():
                    for p in model.parameters():
                        p -= lr * p.grad

    report = check(train)
    assert report.passed, report.render()
    assert report.dtype_reason == "auto: your code uses .double()"


def test_a_notebook_that_set_float64_is_checked_in_float64():
    def sgd_step(model, lr=0.05):
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * p.grad

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # what a notebook's first cell does
    try:
        report = check(sgd_step)
    finally:
        torch.set_default_dtype(previous)
    assert report.dtype == torch.float64
    assert report.dtype_reason == "auto: torch's default dtype is float64 (set by torch.set_default_dtype)"


def test_code_with_no_sign_of_float64_is_checked_in_float32():
    report = check(load_function(str(Path(__file__).parent / "check_examples" / "sgd_correct.py") + ":train_sgd"),
                   "sgd", SGD_MOMENTUM_DECAY)
    assert report.dtype == torch.float32
    assert report.dtype_reason == "auto: nothing in your code asks for float64"


def test_the_state_the_code_makes_follows_the_dtype_of_the_check():
    # torch.zeros(p.shape) takes the default dtype: the check sets it, as the course's notebook does.
    def train(n_epochs, model, loss_fn, train_loader, lr=0.01, momentum=0.9):
        buffers = [torch.zeros(p.shape) for p in model.parameters()]
        for _ in range(n_epochs):
            for x, y in train_loader:
                model.zero_grad()
                loss_fn(model(x), y).backward()
                with torch.no_grad():
                    for b, p in zip(buffers, model.parameters()):
                        b.mul_(momentum).add_(p.grad)
                        p -= lr * b

    report = check(train, "sgd", {"momentum": 0.9}, dtype="float64")
    assert report.passed, report.render()
