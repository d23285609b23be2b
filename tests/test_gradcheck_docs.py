"""The README example in docs/gradcheck-example.md prints exactly the output shown under it."""

import contextlib
import io
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "gradcheck-example.md"
EXAMPLES = re.findall(r"```python\n(.*?)```\n\n```text\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_document_has_examples():
    assert len(EXAMPLES) == 2


@pytest.mark.parametrize("code, shown", EXAMPLES, ids=["check_mlp_backward", "compare"])
def test_each_example_prints_what_the_document_shows(code, shown):
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, str(DOC), "exec"), {})
    lines = [line.rstrip() for line in printed.getvalue().splitlines()]
    assert lines == [line.rstrip() for line in shown.splitlines()]
