"""The example notebooks (examples/*.ipynb) run top to bottom on a fresh kernel and show what they claim.

Each test executes one notebook with nbclient, as Jupyter's "Restart & Run All" would, in a
temporary folder (where the notebook writes its study files and results). Any cell that raises fails
the test (nbclient's CellExecutionError names the cell); then one result a reader looks at is read
back from the cell outputs and checked, against the study folder the notebook wrote where there is one.

The kernel is ipykernel's "python3", which jupyter_client starts with this interpreter, so the
notebooks import the gdlab under test.
"""

import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = [
    "01_scratch_vs_torch_sgd.ipynb",
    "02_mnist_scratch_vs_torch.ipynb",
    "03_check_your_code.ipynb",
    "04_ablation_with_intervals.ipynb",
]
# Each notebook runs in well under a minute on two cores; a cell past this is stuck.
CELL_TIMEOUT_SECONDS = 180

pytestmark = pytest.mark.slow  # each trains real models for several seconds


def execute(name: str, folder: Path) -> nbformat.NotebookNode:
    notebook = nbformat.read(EXAMPLES / name, as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_SECONDS,
        resources={"metadata": {"path": str(folder)}},  # the kernel's working folder
    )
    client.execute()
    return notebook


def outputs(notebook: nbformat.NotebookNode):
    for cell in notebook.cells:
        if cell.cell_type == "code":
            yield from cell.outputs


def printed(notebook: nbformat.NotebookNode) -> str:
    """What the cells wrote to stdout (print)."""
    return "".join(out.text for out in outputs(notebook) if out.output_type == "stream" and out.name == "stdout")


def shown(notebook: nbformat.NotebookNode) -> str:
    """The plain-text form of every displayed value (rich's lines, DataFrames, a cell's last value)."""
    return "".join(
        out.data.get("text/plain", "") for out in outputs(notebook)
        if out.output_type in ("display_data", "execute_result")
    )


def images(notebook: nbformat.NotebookNode) -> int:
    return sum(
        "image/png" in out.data for out in outputs(notebook) if out.output_type in ("display_data", "execute_result")
    )


def test_the_examples_folder_holds_these_notebooks_with_outputs_cleared():
    assert sorted(path.name for path in EXAMPLES.glob("*.ipynb")) == NOTEBOOKS
    for name in NOTEBOOKS:
        notebook = nbformat.read(EXAMPLES / name, as_version=4)
        nbformat.validate(notebook)
        code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert code_cells, name
        for cell in code_cells:
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: a cell was committed with outputs"


def test_scratch_vs_torch_sgd_has_the_same_loss_at_every_iteration(tmp_path):
    notebook = execute("01_scratch_vs_torch_sgd.ipynb", tmp_path)
    text = printed(notebook)

    pairs, difference = re.search(r"max loss difference over (\d+) pairs: (\S+)", text).groups()
    assert int(pairs) == 4  # weight decay x momentum, each scratch run beside its torch twin
    assert float(difference) == 0.0
    per_pair = re.findall(r"(\d+) iterations, max \|loss difference\| (\S+)", text)
    assert len(per_pair) == 4 and all(int(n) > 0 and float(d) == 0.0 for n, d in per_pair)

    summary = json.loads((tmp_path / "runs" / "01_scratch_vs_torch" / "study" / "summary.json").read_text())
    assert sorted(pair["max_loss_difference"] for pair in summary["pairs"]) == [0.0] * 4
    assert f"selected {summary['selected']['config_id']}: test accuracy" in text
    assert images(notebook) == 3  # pairs, loss, heat map


def test_mnist_scratch_vs_torch_curves_are_equal_and_momentum_helps(tmp_path):
    notebook = execute("02_mnist_scratch_vs_torch.ipynb", tmp_path)
    found = re.findall(
        r"momentum (\S+): (\d+) iterations, max \|loss difference\| (\S+), "
        r"test accuracy scratch (\S+) vs torch (\S+)",
        printed(notebook),
    )
    runs = {float(momentum): (int(n), float(d), float(a), float(b)) for momentum, n, d, a, b in found}
    assert sorted(runs) == [0.0, 0.9]
    for iterations, difference, scratch_accuracy, torch_accuracy in runs.values():
        assert iterations == 20 * 32  # 20 epochs of 4,000 digits in batches of 128
        assert difference == 0.0 and scratch_accuracy == torch_accuracy
    assert runs[0.9][2] > runs[0.0][2] > 0.5
    assert images(notebook) == 1  # the course's 2 x 2 figure


def test_check_your_code_catches_the_momentum_mistake_and_passes_the_right_code(tmp_path):
    text = printed(execute("03_check_your_code.ipynb", tmp_path))

    wrong, right = text.split("  checked", 2)[1:]
    assert "FAIL  first difference at step 2" in wrong and "momentum is never applied" in wrong
    assert "PASS  all 20 steps match torch" in right
    # The backward pass: right for the summed loss; the report's listing as run moves the weights.
    assert "Verdict: OK\n" in text
    assert "Verdict: CHANGES THE MODEL" in text and re.search(r"learning\s+rate\s+1e-09", text)


def test_ablation_shows_each_effect_with_its_interval(tmp_path):
    notebook = execute("04_ablation_with_intervals.ipynb", tmp_path)
    found = re.findall(
        r"optimizer\.(\w+) \S+ - \S+: (\S+) \(95% CI (\S+) to (\S+), p = \S+\): (excludes 0|covers 0)",
        printed(notebook),
    )
    effects = {factor: (float(effect), float(low), float(high), verdict) for factor, effect, low, high, verdict in found}
    assert sorted(effects) == ["momentum", "weight_decay"]

    summary = json.loads((tmp_path / "runs" / "04_ablation" / "study" / "summary.json").read_text())
    for record in summary["ablation"]["effects"]:
        effect, low, high, verdict = effects[record["factor"].split(".")[1]]
        assert (effect, low, high) == tuple(round(record[key], 4) for key in ("effect", "ci_low", "ci_high"))
        assert low <= effect <= high and record["n_pairs"] == 6  # 2 pairs of arms x 3 seeds
        assert verdict == ("covers 0" if low <= 0 <= high else "excludes 0")
    assert effects["momentum"][1] > 0  # momentum 0.9 beats none at lr 0.01 on every seed's pair
    assert images(notebook) == 2  # ablation intervals, training loss
