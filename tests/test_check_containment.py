"""`gdlab check` contains the code it runs: an endless loop is stopped after the time limit, sys.exit()
and a KeyboardInterrupt the code raises itself are reported with the user's line (verdict cannot_check,
exit 2), and a real Ctrl-C still stops gdlab (exit 130, KeyboardInterrupt from Python).

The user files are written the way students write them; each test writes its own into tmp_path.
"""

import json
import linecache
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from gdlab.check import CannotCheck, check
from gdlab.check.command import check as check_command
from gdlab.errors import GdlabError

# The inner `while` never advances i: every step loops forever on the first parameter.
LOOPS_FOREVER = '''\
import torch


def train(n_epochs, model, loss_fn, train_loader, lr=0.01):
    for epoch in range(n_epochs):
        for images, labels in train_loader:
            loss = loss_fn(model(images), labels)
            loss.backward()
            with torch.no_grad():
                params = list(model.parameters())
                i = 0
                while i < len(params):
                    params[i] -= lr * params[i].grad
                    params[i].grad.zero_()
'''

# Written for flattened images; gdlab's loader gives (N, 1, 28, 28) batches, so the guard fires.
EXITS = '''\
import sys

import torch


def train(n_epochs, model, loss_fn, train_loader, lr=0.01, momentum=0.9):
    velocity = [torch.zeros_like(p) for p in model.parameters()]
    for epoch in range(n_epochs):
        for images, labels in train_loader:
            if images.dim() != 2:
                print("expected flattened images, got shape", tuple(images.shape))
                sys.exit(3)
            loss = loss_fn(model(images), labels)
            model.zero_grad()
            loss.backward()
            with torch.no_grad():
                for p, v in zip(model.parameters(), velocity):
                    v.mul_(momentum).add_(p.grad)
                    p -= lr * v
'''

# KeyboardInterrupt as a way out of both loops "for a quick look" at the first steps.
RAISES_INTERRUPT = '''\
import torch


def train(n_epochs, model, loss_fn, train_loader, lr=0.01, max_steps=5):
    step = 0
    for epoch in range(n_epochs):
        for images, labels in train_loader:
            loss = loss_fn(model(images), labels)
            model.zero_grad()
            loss.backward()
            with torch.no_grad():
                for p in model.parameters():
                    p -= lr * p.grad
            step += 1
            if step == max_steps:
                raise KeyboardInterrupt
'''

# Waits at import for a download run elsewhere, which never comes.
WAITS_AT_IMPORT = '''\
import os
import time

import torch

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "mnist.npz")
while not os.path.exists(DATA):  # start download_data.py in another terminal first
    time.sleep(0.1)


def train(n_epochs, model, loss_fn, train_loader, lr=0.01):
    for epoch in range(n_epochs):
        for images, labels in train_loader:
            loss = loss_fn(model(images), labels)
            model.zero_grad()
            loss.backward()
            with torch.no_grad():
                for p in model.parameters():
                    p -= lr * p.grad
'''

# Fits each batch "until it is learned" (never, at this lr), and is written to be stopped with Ctrl-C.
STOPPED_WITH_CTRL_C = '''\
import torch


def train(n_epochs, model, loss_fn, train_loader, lr=0.01):
    with open("train.log", "a") as log:
        log.write("training started\\n")
    try:
        for epoch in range(n_epochs):
            for images, labels in train_loader:
                loss = loss_fn(model(images), labels)
                while loss.item() > 1e-6:
                    model.zero_grad()
                    loss.backward()
                    with torch.no_grad():
                        for p in model.parameters():
                            p -= lr * p.grad
                    loss = loss_fn(model(images), labels)
    except KeyboardInterrupt:
        print("interrupted: keeping the model trained so far")
'''

SGD_CORRECT = str(Path(__file__).parent / "check_examples" / "sgd_correct.py")


def write(folder: Path, name: str, source: str) -> str:
    (folder / name).write_text(source)
    return str(folder / name)


def line_numbers(source: str, *fragments: str) -> set[int]:
    return {number for number, line in enumerate(source.splitlines(), 1) if any(f in line for f in fragments)}


def stopped_line(message: str, file: str) -> int:
    """N of "at FILE, line N," in a message."""
    after = message.split(f"{file}, line ", 1)[1]
    return int(after.split(",", 1)[0])


def signal_state():
    return signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGALRM), signal.getitimer(signal.ITIMER_REAL)


# pytest-timeout's default method keeps a SIGALRM timer running, which the check leaves alone (its
# watchdog thread serves instead); with the thread method the check's own alarm is the one tested.
OWN_ALARM = pytest.mark.timeout(300, method="thread")


# --- Python ----------------------------------------------------------------------------------------


@OWN_ALARM
def test_endless_loop_is_stopped_with_its_line_and_signals_are_put_back(tmp_path):
    target = write(tmp_path, "hw2_sgd.py", LOOPS_FOREVER) + ":train"
    before = signal_state()
    assert before[2] == (0.0, 0.0)
    started = time.monotonic()
    with pytest.raises(CannotCheck) as raised:
        check(target, timeout=1)
    message = str(raised.value)
    assert message.startswith("your code did not return within 1 s while gdlab was running train")
    assert stopped_line(message, "hw2_sgd.py") in line_numbers(LOOPS_FOREVER, "while i <", "params[i]")
    assert "--timeout SECONDS" in message
    # 1 s of the user's loop, plus gdlab loading its problem: far from the default limit of 120 s.
    assert time.monotonic() - started < 30
    assert signal_state() == before


def test_endless_loop_is_stopped_off_the_main_thread_too(tmp_path):
    target = write(tmp_path, "hw2_sgd.py", LOOPS_FOREVER) + ":train"
    outcome = {}

    def in_a_worker():
        try:
            check(target, timeout=1)
        except CannotCheck as error:
            outcome["message"] = str(error)

    worker = threading.Thread(target=in_a_worker)
    worker.start()
    worker.join(60)
    assert not worker.is_alive()
    assert outcome["message"].startswith("your code did not return within 1 s")
    assert stopped_line(outcome["message"], "hw2_sgd.py") in line_numbers(LOOPS_FOREVER, "while i <", "params[i]")


def test_a_loop_at_import_is_under_the_same_limit_and_another_timer_is_left_alone(tmp_path):
    target = write(tmp_path, "course_sgd.py", WAITS_AT_IMPORT) + ":train"
    pytest_timeout_handler = signal.getsignal(signal.SIGALRM)
    assert signal.getitimer(signal.ITIMER_REAL)[0] > 0
    with pytest.raises(CannotCheck) as raised:
        check(target, timeout=1)
    assert signal.getsignal(signal.SIGALRM) is pytest_timeout_handler
    assert signal.getitimer(signal.ITIMER_REAL)[0] > 0
    message = str(raised.value)
    assert message.startswith(f"your code did not return within 1 s while gdlab was importing {tmp_path}")
    assert stopped_line(message, "course_sgd.py") in line_numbers(WAITS_AT_IMPORT, "while not", "time.sleep")
    assert 'if __name__ == "__main__":' in message


def test_sys_exit_is_reported_with_its_line(tmp_path):
    target = write(tmp_path, "momentum.py", EXITS) + ":train"
    with pytest.raises(CannotCheck) as raised:
        check(target, hparams={"lr": 0.01, "momentum": 0.9}, timeout=30)
    message = str(raised.value)
    assert message.startswith("your code raised SystemExit(3) while gdlab was running train")
    assert f"at momentum.py, line {min(line_numbers(EXITS, 'sys.exit(3)'))}, in train:\n    sys.exit(3)" in message


def test_keyboard_interrupt_raised_in_a_notebook_cell_is_reported(monkeypatch):
    # As IPython runs a cell: compiled under a name of its own, its source kept in linecache.
    cell = "<ipython-input-7-3f2a>"
    monkeypatch.setitem(linecache.cache, cell, (len(RAISES_INTERRUPT), None, RAISES_INTERRUPT.splitlines(True), cell))
    namespace = {}
    exec(compile(RAISES_INTERRUPT, cell, "exec"), namespace)
    with pytest.raises(CannotCheck) as raised:
        check(namespace["train"], timeout=30)
    message = str(raised.value)
    assert message.startswith("your code raised KeyboardInterrupt itself (no Ctrl-C was pressed)")
    line = min(line_numbers(RAISES_INTERRUPT, "raise KeyboardInterrupt"))
    assert f"at {cell}, line {line}, in train:\n    raise KeyboardInterrupt" in message


def test_a_real_ctrl_c_stops_the_check_even_when_the_code_catches_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = write(tmp_path, "fit_each_batch.py", STOPPED_WITH_CTRL_C) + ":train"

    returned = threading.Event()

    def press_ctrl_c_while_training_runs():
        # As a user does: press, and press again if nothing happens. One press is enough (the
        # user's code catches it and returns; gdlab must stop, not go on); a second press, 5 s
        # later, only keeps a press lost in a loaded machine's scheduling from hanging the test.
        deadline = time.monotonic() + 60
        while not (tmp_path / "train.log").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        while not returned.is_set() and time.monotonic() < deadline:
            os.kill(os.getpid(), signal.SIGINT)
            returned.wait(5)

    def ctrl_c(number, frame):
        # Python's own Ctrl-C, except for a press that lands after the check returned.
        if not returned.is_set():
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, ctrl_c)
    presser = threading.Thread(target=press_ctrl_c_while_training_runs)
    presser.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            try:
                check(target, timeout=60)
            finally:
                returned.set()
    finally:
        returned.set()
        presser.join()
        signal.signal(signal.SIGINT, previous)
    assert (tmp_path / "train.log").exists()


@pytest.mark.parametrize("timeout", [0, -1.0, math.nan, math.inf, "2", True])
def test_a_timeout_that_is_not_a_positive_number_is_refused_naming_it(timeout):
    with pytest.raises(GdlabError, match=f"timeout must be a number of seconds > 0.*got {timeout!r}"):
        check(SGD_CORRECT + ":train_sgd", timeout=timeout)


@OWN_ALARM
def test_a_correct_function_still_passes_under_a_limit():
    before = signal_state()
    report = check(SGD_CORRECT + ":train_sgd", hparams={"lr": 0.01}, timeout=30)
    assert report.passed
    assert signal_state() == before


# --- the command -----------------------------------------------------------------------------------


def gdlab(*args: str, cwd: Path) -> subprocess.Popen:
    # A terminal's foreground process has Ctrl-C at its default; a shell's background job inherits it
    # ignored, and so would this process: put it back as a terminal would.
    return subprocess.Popen(
        [sys.executable, "-m", "gdlab.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=cwd, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


@pytest.mark.parametrize("name, source, options, starts, line", [
    ("hw2_sgd.py", LOOPS_FOREVER, ["--timeout", "1"], "your code did not return within 1 s", "while i <"),
    ("momentum.py", EXITS, [], "your code raised SystemExit(3)", "sys.exit(3)"),
])
def test_command_reports_them_as_cannot_check_with_exit_2(tmp_path, name, source, options, starts, line):
    process = gdlab("check", write(tmp_path, name, source) + ":train", "--json", *options, cwd=tmp_path)
    output, errors = process.communicate(timeout=120)
    assert process.returncode == 2, output + errors
    verdict = json.loads(output)
    assert verdict["verdict"] == "cannot_check" and verdict["exit_code"] == 2
    assert verdict["cause"].startswith(starts)
    assert stopped_line(verdict["cause"], name) in line_numbers(source, line, "params[i]")


def test_command_exits_130_at_once_on_a_real_ctrl_c(tmp_path):
    process = gdlab("check", write(tmp_path, "fit_each_batch.py", STOPPED_WITH_CTRL_C) + ":train", "--json",
                    cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "train.log").exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.2)
        pressed = time.monotonic()
        process.send_signal(signal.SIGINT)
        output, errors = process.communicate(timeout=60)
    finally:
        process.kill()
    # The default limit is 120 s: stopping within seconds is the Ctrl-C's doing, not the limit's.
    assert time.monotonic() - pressed < 15
    assert process.returncode == 130, output + errors
    assert output == "" and "interrupted (Ctrl-C)" in errors


app = typer.Typer()
app.command(name="check")(check_command)


@app.callback()
def main() -> None:
    """A stand-in for the gdlab command group."""


def test_command_reports_a_keyboard_interrupt_of_the_code_as_cannot_check(tmp_path):
    # In this process (typer's runner): had the KeyboardInterrupt been taken for a Ctrl-C, the exit would be 130.
    result = CliRunner().invoke(app, ["check", write(tmp_path, "quick_look.py", RAISES_INTERRUPT) + ":train", "--json"])
    assert result.exit_code == 2, result.output
    verdict = json.loads(result.stdout)
    assert verdict["verdict"] == "cannot_check" and verdict["exit_code"] == 2
    assert verdict["cause"].startswith("your code raised KeyboardInterrupt itself")
    assert stopped_line(verdict["cause"], "quick_look.py") in line_numbers(RAISES_INTERRUPT, "raise KeyboardInterrupt")


def test_command_help_states_the_limit_and_the_exit_codes():
    result = CliRunner().invoke(app, ["check", "--help"], env={"COLUMNS": "200"})
    text = " ".join(result.output.split())
    assert "--timeout SECONDS" in text and "[default: 120" in text
    assert "0 pass, 1 fail, 2 cannot check, 130 stopped by Ctrl-C" in text
    assert "os._exit()" in text
