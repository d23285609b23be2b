"""The README's promises that a test can hold: the quick start, and worked examples that are real.

The worked examples of `gdlab check` and `gdlab.gradcheck` live in docs/, where
their own tests rerun them and compare the printed output; the README carries
them verbatim, so it cannot drift from what the commands really print.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_quick_start_is_exactly_make_demo_and_make_test():
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```console\n(.*?)```", section, re.S).group(1)
    assert block.split("\n")[:-1] == ["make demo", "make test"]


@pytest.mark.parametrize("name", ["check-example.md", "gradcheck-example.md"])
def test_worked_examples_are_the_tested_ones(name):
    example = (ROOT / "docs" / name).read_text().strip()
    assert example in README


def test_no_placeholder_is_left():
    assert "<!--" not in README
