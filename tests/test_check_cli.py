"""`gdlab check` as a command: exit 0 pass, 1 fail (step and cause printed), 2 cannot check.

The command function is registered on a local Typer app here, as the
package's CLI registers it, and run with typer's CliRunner.
"""

import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from gdlab.check.command import check

EXAMPLES = Path(__file__).parent / "check_examples"
SGD_MOMENTUM_DECAY = ["--lr", "0.01", "--momentum", "0.9", "--weight-decay", "0.01"]
COURSE_RENAMES = ["--rename", "w_decay=weight_decay", "--rename", "c_mom=momentum"]

app = typer.Typer()
app.command(name="check")(check)


@app.callback()
def main() -> None:
    """A stand-in for the gdlab command group."""


def run(*args: str):
    result = CliRunner().invoke(app, ["check", *args], env={"COLUMNS": "200"})
    return result.exit_code, " ".join(result.output.split())


def target(name: str) -> str:
    return str(EXAMPLES / name)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_correct_hand_written_sgd_exits_0(dtype):
    code, output = run(target("sgd_correct.py:train_sgd"), *SGD_MOMENTUM_DECAY, "--dtype", dtype)
    assert code == 0, output
    assert "PASS all 20 steps match torch to rounding" in output
    assert f"{dtype}; 2 epochs = 20 steps" in output


def test_course_momentum_bug_exits_1_naming_step_parameter_and_cause():
    code, output = run(
        target("course_momentum_never_applied.py:train_manual_w_decay_mom"), *SGD_MOMENTUM_DECAY, *COURSE_RENAMES
    )
    assert code == 1, output
    assert "FAIL first difference at step 2 (epoch 1, iteration 2), parameter layers.0.weight" in output
    assert "likely cause momentum is never applied" in output
    assert "lr=0.01, c_mom=0.9, w_decay=0.01" in output


@pytest.mark.parametrize(
    "file, step, cause",
    [
        ("sgd_weight_decay_wrong_sign.py", 1, "weight decay has the wrong sign"),
        ("sgd_gradients_never_zeroed.py", 2, "gradients are never zeroed"),
    ],
)
def test_sgd_mistakes_exit_1_at_their_step(file, step, cause):
    code, output = run(target(f"{file}:train_sgd"), *SGD_MOMENTUM_DECAY)
    assert code == 1, output
    assert f"first difference at step {step} (epoch 1, iteration {step})" in output
    assert f"likely cause {cause}" in output


def test_adam_options_reach_the_function():
    code, output = run(
        target("other_rules_correct.py:train_adam"),
        "--against", "adam", "--lr", "0.01", "--betas", "0.8", "0.99", "--weight-decay", "0.01", "--amsgrad",
    )
    assert code == 0, output
    assert "betas=(0.8, 0.99)" in output and "amsgrad=True" in output


def test_rmsprop_and_adagrad_options_reach_the_function():
    code, output = run(
        target("other_rules_correct.py:train_rmsprop"),
        "--against", "rmsprop", "--alpha", "0.9", "--momentum", "0.5", "--centered", "--eps", "1e-6",
    )
    assert code == 0, output
    code, output = run(
        target("other_rules_correct.py:train_adagrad"),
        "--against", "adagrad", "--lr-decay", "0.1", "--initial-accumulator-value", "0.2",
    )
    assert code == 0, output


@pytest.mark.parametrize(
    "args, message",
    [
        ([target("no_such_file.py:train")], "no file"),
        ([target("sgd_correct.py:train_sgdd")], "has no function 'train_sgdd'"),
        ([target("cannot_check.py:train_without_epochs")], "does not take the training function's four arguments"),
        ([target("cannot_check.py:train_with_typo")], "NameError: name 'grad' is not defined at cannot_check.py"),
        ([target("raises_on_import.py:train_manual")], "importing raises_on_import.py failed: FileNotFoundError"),
        ([target("course_momentum_never_applied.py:train_manual_w_decay_mom"), *SGD_MOMENTUM_DECAY],
         "no parameter for momentum=0.9"),
        ([target("sgd_correct.py:train_sgd"), "--rename", "weight_decay"], "must read YOUR_NAME=GDLAB_NAME"),
        ([target("other_rules_correct.py:train_adam"), "--against", "adam", "--momentum", "0.9"],
         "--momentum does not apply to --against adam"),
        ([target("sgd_correct.py:train_sgd"), "--against", "lion"], "unknown rule 'lion'"),
        ([target("sgd_correct.py:train_sgd"), "--dtype", "float16"], "--dtype 'float16' is not supported"),
        ([target("sgd_correct.py:train_sgd"), "--lr", "-1"], "Invalid learning rate: -1.0"),
    ],
)
def test_what_cannot_be_checked_exits_2_with_why(args, message):
    code, output = run(*args)
    assert code == 2, output
    assert output.startswith("CANNOT CHECK")
    assert message in output
    assert "Traceback" not in output


@pytest.mark.parametrize("file, code", [("my_training.py", 1), ("my_training_fixed.py", 0)])
def test_the_worked_example_in_the_docs_shows_the_real_output(file, code, monkeypatch):
    monkeypatch.chdir(EXAMPLES)
    result = CliRunner().invoke(
        app,
        ["check", f"{file}:train_manual_w_decay_mom", *SGD_MOMENTUM_DECAY, *COURSE_RENAMES],
        env={"COLUMNS": "100"},
    )
    assert result.exit_code == code
    document = (Path(__file__).parent.parent / "docs" / "check-example.md").read_text()
    printed = [line.rstrip() for line in result.output.splitlines() if line.strip()]
    assert printed and all(line in document for line in printed), printed


def test_the_help_lists_every_rule_and_importing_the_command_does_not_import_torch():
    from gdlab.check.command import RULE_NAMES
    from gdlab.check.rules import RULES

    assert tuple(RULES) == RULE_NAMES
    probe = "import sys, gdlab.check.command; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "False"
