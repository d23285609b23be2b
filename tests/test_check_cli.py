"""`gdlab check` as a command: exit 0 pass, 1 fail (step and cause printed), 2 cannot check.

The command function is registered on a local Typer app here, as the
package's CLI registers it, and run with typer's CliRunner.
"""

import json
import re
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
        ([target("cannot_check.py:train_on_arrays")], "cannot be called as an update function"),
        ([target("cannot_check.py:train_with_typo")], "NameError: name 'grad' is not defined at cannot_check.py"),
        ([target("raises_on_import.py:train_manual")], "importing raises_on_import.py failed: FileNotFoundError"),
        ([target("sgd_correct.py:train_sgd"), "--rename", "weight_decay"], "must read YOUR_NAME=GDLAB_NAME"),
        ([target("other_rules_correct.py:train_adam"), "--against", "adam", "--momentum", "0.9"],
         "--momentum does not apply to --against adam"),
        ([target("sgd_correct.py:train_sgd"), "--against", "adamz"], "unknown rule 'adamz'"),
        ([target("sgd_correct.py:train_sgd"), "--bind", "lr=learning_speed"], "'learning_speed' is not a hyperparameter"),
        ([target("sgd_correct.py:train_sgd"), "--hp", "eps"], "must read NAME=VALUE"),
        ([target("sgd_correct.py:train_sgd"), "--dtype", "float16"], "--dtype 'float16' is not supported"),
        ([target("../check_corpus/course_double_inside.py:train"), "--dtype", "float32"],
         "does not compute in float32, the dtype asked for: it raised RuntimeError: mat1 and mat2 must have the "
         "same dtype"),
        ([target("sgd_correct.py:train_sgd"), "--lr", "-1"], "Invalid learning rate: -1.0"),
    ],
)
def test_what_cannot_be_checked_exits_2_with_why(args, message):
    code, output = run(*args)
    assert code == 2, output
    assert output.startswith("CANNOT CHECK")
    assert message in output
    assert "Traceback" not in output


DOCUMENT = Path(__file__).parent.parent / "docs" / "check-example.md"
CORPUS = Path(__file__).parent / "check_corpus"


def _documented_commands():
    """Each ``$ gdlab check ...`` of the worked example: its arguments, its console block, its exit status."""
    blocks = re.findall(r"```console\n(.*?)```", DOCUMENT.read_text(), re.S)
    for block in blocks:
        for command in re.findall(r"^\$ gdlab check (.*)$", block, re.M):
            status = re.search(re.escape(command) + r".*?\$ echo \$\?\n(\d+)", block, re.S)
            yield pytest.param(command.split(), block, int(status.group(1)), id=command.split(":")[0])


@pytest.mark.parametrize("args, block, status", list(_documented_commands()))
def test_the_worked_example_in_the_docs_shows_the_real_output(args, block, status, monkeypatch):
    file = args[0].split(":")[0]
    monkeypatch.chdir(EXAMPLES if (EXAMPLES / file).is_file() else CORPUS)
    result = CliRunner().invoke(app, ["check", *args], env={"COLUMNS": "100"})
    assert result.exit_code == status, result.output
    printed = [line.rstrip() for line in result.output.splitlines() if line.strip()]
    assert printed and all(line in block for line in printed), printed


def test_the_documented_commands_cover_every_entry_point_and_the_json_output():
    commands = [" ".join(args) for args, _, _ in (param.values for param in _documented_commands())]
    assert len(commands) >= 6
    assert any("momentum_update" in command for command in commands)  # an update function
    assert any("MyAdam" in command for command in commands)  # an Optimizer class
    assert any("--json" in command for command in commands)


def test_the_code_shown_in_the_docs_is_the_code_checked():
    for file, body in re.findall(r"```python\n# (\w+\.py)\n(.*?)```", DOCUMENT.read_text(), re.S):
        source = (EXAMPLES / file if (EXAMPLES / file).is_file() else CORPUS / file).read_text()
        assert body.strip() in source, file


def test_the_help_lists_every_registered_rule_and_importing_the_command_does_not_import_torch():
    from gdlab.check.command import RULE_NAMES
    from gdlab.optim import registry

    assert RULE_NAMES == registry.names()
    probe = "import sys, gdlab.check.command; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "False"


def test_the_course_bug_is_found_without_renames_now_that_names_are_read():
    code, output = run(target("course_momentum_never_applied.py:train_manual_w_decay_mom"), *SGD_MOMENTUM_DECAY)
    assert code == 1, output
    assert "read w_decay as weight_decay, c_mom as momentum" in output
    assert "likely cause momentum is never applied" in output


def test_hp_and_the_named_options_are_the_same_hyperparameters():
    named = run(target("other_rules_correct.py:train_adam"), "--against", "adam", "--lr", "0.01", "--betas", "0.8",
                "0.99", "--eps", "1e-6")
    generic = run(target("other_rules_correct.py:train_adam"), "--against", "adam", "--hp", "lr=0.01", "--hp",
                  "betas=0.8,0.99", "--hp", "eps=1e-6")
    assert named[0] == generic[0] == 0, (named, generic)
    assert "betas=(0.8, 0.99), eps=1e-06" in generic[1]
    assert named[1].split("PASS")[0] == generic[1].split("PASS")[0]


@pytest.mark.parametrize(
    "args, code, verdict, kind",
    [
        ([target("sgd_correct.py:train_sgd"), *SGD_MOMENTUM_DECAY], 0, "pass", "none"),
        ([target("sgd_weight_decay_wrong_sign.py:train_sgd"), *SGD_MOMENTUM_DECAY], 1, "fail", "bug"),
        ([target("../check_corpus/my_rules.py:MyAdamOld"), "--lr", "0.01"], 1, "fail", "variant"),
        ([target("sgd_correct.py:train_sgdd")], 2, "cannot_check", "none"),
    ],
)
def test_json_gives_one_object_with_stable_keys_and_the_exit_status(args, code, verdict, kind):
    result = CliRunner().invoke(app, ["check", *args, "--json"])
    assert result.exit_code == code, result.output
    report = json.loads(result.output)
    assert {"verdict", "step", "parameter", "cause", "kind", "evidence", "exit_code"} <= set(report)
    assert (report["verdict"], report["kind"], report["exit_code"]) == (verdict, kind, code)
    if verdict == "fail":
        assert report["step"] >= 1 and report["parameter"] == "layers.0.weight"
        assert report["cause"] and report["evidence"].startswith("this matches all")
    else:
        assert report["step"] is None and report["parameter"] is None
    if verdict == "cannot_check":
        assert "has no function 'train_sgdd'" in report["cause"]
