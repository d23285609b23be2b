"""What a running study shows: plain per-run lines when output is not a terminal, bars in one."""

import io
import re

from rich.console import Console
from study_files import write_study
from test_cli import gdlab

from gdlab.study import run_study
from gdlab.study.progress import StudyProgress

# The per-run line as the README shows it: "[ 1/24] 00_lr=0.01_m=0.9_s0_scratch  val 0.9140  train 0.9306  0.4s"
RUN_LINE = re.compile(r"\[\s*(\d+)/(\d+)\] (\S+)  val \d\.\d{4}  train \d\.\d{4}  \d+\.\ds")
COLOUR = re.compile(r"\x1b\[[0-9;]*m")
CURSOR_MOVE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")
BAR = r"[\s━╸╺]*━[\s━╸╺]*"  # the bar itself, however far it has filled


def shown(output: str) -> str:
    """What a person sees in the terminal: colours dropped, each redraw on lines of its own."""
    return CURSOR_MOVE.sub("\n", COLOUR.sub("", output))


def test_output_that_is_not_a_terminal_gets_one_plain_line_per_run(tmp_path):
    spec = write_study(tmp_path, epochs=3)
    result = gdlab("run", str(spec), "--out", str(tmp_path / "out"), "--backend", "sequential")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("study tiny: 2 runs (2 to train) on backend sequential")
    run_lines = [RUN_LINE.fullmatch(line) for line in lines[1:3]]
    assert all(run_lines), lines[1:3]
    assert [(match[1], match[2]) for match in run_lines] == [("1", "2"), ("2", "2")]
    assert {match[3] for match in run_lines} == {"00_lr=0.05_s0", "01_lr=0.2_s0"}
    assert "\x1b" not in result.stdout and "elapsed" not in result.stdout and "━" not in result.stdout


def test_a_terminal_gets_a_bar_over_the_runs_with_the_time_left_and_the_same_lines(tmp_path):
    spec = write_study(tmp_path, epochs=3)
    output = io.StringIO()
    console = Console(file=output, force_terminal=True, width=120)
    run_study(spec, out_dir=tmp_path / "out", backend="sequential", console=console)
    screen = shown(output.getvalue())
    assert re.search(r"runs" + BAR + r"\s+2/2\s+0:00:\d\d\s+elapsed\s+(0:00:00|-:--:--)\s+left", screen), screen
    run_lines = [match[3] for match in RUN_LINE.finditer(screen)]
    assert run_lines == ["00_lr=0.05_s0", "01_lr=0.2_s0"]


def test_the_epochs_of_a_long_run_get_their_own_bar_until_it_finishes():
    output = io.StringIO()
    console = Console(file=output, force_terminal=True, width=120)
    with StudyProgress(console, runs=3, runs_done=1) as progress:
        progress.epoch_finished(("01_lr=0.1_s0",), 1, 10)
        progress.epoch_finished(("01_lr=0.1_s0",), 4, 10)
        during = shown(output.getvalue())
        progress.run_finished("01_lr=0.1_s0", "[2/3] 01_lr=0.1_s0  val 0.9000  train 0.9100  1.0s")
        after = shown(output.getvalue())[len(during):]
        progress.epoch_finished(("02_lr=1_s0", "03_lr=2_s0"), 1, 10)
        stacked = shown(output.getvalue())[len(during) + len(after):]
    assert re.search(r"runs" + BAR + r"\s+1/3", during)
    assert re.search(r"epochs of 01_lr=0\.1_s0" + BAR + r"\s+4/10", during)
    assert "[2/3] 01_lr=0.1_s0  val 0.9000" in after
    last_frame = after[after.rindex("runs "):]
    assert re.match(r"runs" + BAR + r"\s+2/3", last_frame) and "epochs of" not in last_frame
    assert re.search(r"epochs of 02_lr=1_s0 \+1 stacked" + BAR + r"\s+1/10", stacked)


def test_short_runs_and_plain_output_get_no_epoch_bar():
    terminal, plain = io.StringIO(), io.StringIO()
    with StudyProgress(Console(file=terminal, force_terminal=True, width=120), runs=1) as progress:
        progress.epoch_finished(("00_s0",), 1, 2)
    with StudyProgress(Console(file=plain, width=120), runs=1) as progress:
        progress.epoch_finished(("00_s0",), 1, 10)
        progress.run_finished("00_s0", "[1/1] 00_s0  val 0.9000  train 0.9100  1.0s")
    assert "runs" in shown(terminal.getvalue()) and "epochs of" not in shown(terminal.getvalue())
    assert plain.getvalue() == "[1/1] 00_s0  val 0.9000  train 0.9100  1.0s\n"


def test_runs_of_three_epochs_or_more_show_their_epochs_while_they_train(tmp_path):
    spec = write_study(tmp_path, epochs=3)
    for backend, label in (("sequential", r"01_lr=0\.2_s0"), ("vectorized", r"00_lr=0\.05_s0 \+1 stacked")):
        output = io.StringIO()
        console = Console(file=output, force_terminal=True, width=120)
        run_study(spec, out_dir=tmp_path / backend, backend=backend, console=console)
        counts = re.findall(r"epochs of " + label + BAR + r"\s+(\d)/3", shown(output.getvalue()))
        assert list(dict.fromkeys(counts)) == ["1", "2", "3"], backend
