"""The README example in docs/gradcheck-example.md prints exactly the output shown under it."""

import contextlib
import io
import re
from pathlib import Path

import pytest
import torch

DOC = Path(__file__).resolve().parent.parent / "docs" / "gradcheck-example.md"
EXAMPLES = re.findall(r"```python\n(.*?)```\n\n```text\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_document_has_examples():
    assert len(EXAMPLES) == 2


@pytest.mark.parametrize("code, shown", EXAMPLES, ids=["check_mlp_backward", "compare"])
def test_each_example_prints_what_the_document_shows(code, shown):
    printed = io.StringIO()
    default_dtype = torch.get_default_dtype()  # the example sets float64, as the course's notebook does
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(code, str(DOC), "exec"), {})
    finally:
        torch.set_default_dtype(default_dtype)
    lines = [line.rstrip() for line in printed.getvalue().splitlines()]
    assert lines == [line.rstrip() for line in shown.splitlines()]


def test_the_first_listing_alone_is_ok_as_the_document_says():
    code, _ = EXAMPLES[0]
    update = code[code.index("        learning_rate = 1e-9"):code.index("def summed_squared_error")]
    assert update.count("\n") == 6  # the four lines of the update and the two blank lines after them
    namespace = {}
    default_dtype = torch.get_default_dtype()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(code.replace(update, "\n"), str(DOC), "exec"), namespace)
        from gdlab.gradcheck import check_mlp_backward

        report = check_mlp_backward(
            namespace["backpropagation"], namespace["x"], namespace["y"], model=namespace["MyNet"](),
            loss=namespace["summed_squared_error"],
        )
    finally:
        torch.set_default_dtype(default_dtype)
    assert report.ok and report.verdict == "ok"
    assert "Without those\nfour lines (the report's first listing alone) the verdict is `OK`." in DOC.read_text()
