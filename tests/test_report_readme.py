"""The README's quick-start output is what `make demo` prints today: the quick start is run here.

Only the seconds each run took may differ; every figure, the table and the
selection must be the README's, so a change that moves them shows up here.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def without_seconds(line: str) -> str:
    return re.sub(r"  \d+\.\ds  ", "  <seconds>  ", line.rstrip())


def test_the_quick_start_block_is_what_gdlab_run_prints(tmp_path):
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```text\n(.*?)```", section, re.S).group(1).splitlines()
    # The README's folder name, taken literally: the printed path is then the README's.
    # As `make demo` runs it: torch's default thread count (the test session pins one thread, and
    # the figures depend on it: with one thread another configuration wins the tie).
    environment = {key: value for key, value in os.environ.items() if key not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    result = subprocess.run(
        [sys.executable, "-m", "gdlab.cli", "run", "--out", "runs/quickstart-<timestamp>"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, env={**environment, "COLUMNS": "80"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    printed = [without_seconds(line) for line in result.stdout.splitlines()]
    assert printed[-len(block):] == [without_seconds(line) for line in block]
    selected = next(line for line in block if line.startswith("selected on validation: ")).split(" (")[0]
    assert selected in (tmp_path / "runs" / "quickstart-<timestamp>" / "report.html").read_text()
