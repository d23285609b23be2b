"""Process state: prepared data is kept per key, bounded, and two studies in one process each get
their own; library code never reseeds torch's global generators for good.

The studies are real study files run by `run_study`: MNIST in its official IDX files written
into two folders (`official_formats`), found through ``$GDLAB_DATA`` as a user sets it, and
the offline mnist-5k with different [data] settings.
"""

import ast
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from gdlab.study import load_study, plan_runs, run_study
from gdlab.study.execute import DATA_CACHE, DATA_CACHE_ENTRIES, DataKey, PreparedDataCache, data_for, new_model
from official_formats import random_images, write_idx_dataset

STUDY = """
name = "{name}"

[data]
dataset = "{dataset}"
val_fraction = 0.25
{data}

[model]
kind = "linear"

[train]
epochs = 1
batch_size = 32

[optimizer]
name = "sgd"
lr = 0.1
"""


def write_study(folder, name, dataset="mnist", data=""):
    path = folder / f"{name}.toml"
    path.write_text(STUDY.format(name=name, dataset=dataset, data=textwrap.dedent(data)))
    return path


def write_mnist(folder, n_train, classes, seed):
    write_idx_dataset(folder, random_images(n_train, 40, (28, 28), classes=classes, seed=seed))
    return folder


def run(path, out):
    return run_study(load_study(path), out_dir=out, backend="sequential", console=Console(quiet=True))


@pytest.fixture(autouse=True)
def empty_cache():
    DATA_CACHE.clear()
    yield
    DATA_CACHE.clear()


def test_the_same_study_file_with_another_gdlab_data_gets_that_folders_data(tmp_path, monkeypatch):
    first = write_mnist(tmp_path / "first", n_train=80, classes=10, seed=1)
    second = write_mnist(tmp_path / "second", n_train=120, classes=10, seed=2)
    study = write_study(tmp_path, "same-file")

    monkeypatch.setenv("GDLAB_DATA", str(first))
    one = run(study, tmp_path / "one")["data"]
    monkeypatch.setenv("GDLAB_DATA", str(second))
    two = run(study, tmp_path / "two")["data"]

    assert (one["source"], two["source"]) == (str(first), str(second))
    assert (one["train_examples"] + one["val_examples"], two["train_examples"] + two["val_examples"]) == (80, 120)
    assert len(DATA_CACHE) == 2


def test_a_file_rewritten_in_place_between_two_studies_is_read_again(tmp_path, monkeypatch):
    folder = write_mnist(tmp_path / "mnist", n_train=80, classes=10, seed=1)
    monkeypatch.setenv("GDLAB_DATA", str(folder))
    study = write_study(tmp_path, "rewritten")
    before = run(study, tmp_path / "before")["data"]
    write_mnist(folder, n_train=100, classes=10, seed=3)
    after = run(study, tmp_path / "after")["data"]
    assert (before["train_examples"] + before["val_examples"], after["train_examples"] + after["val_examples"]) == (
        80, 100)


def test_two_studies_with_different_data_settings_each_get_their_own(tmp_path):
    digits = write_study(tmp_path, "zeros-and-ones", "mnist-5k", 'classes = [0, 1]\ntrain_examples = 300')
    others = write_study(tmp_path, "three-to-five", "mnist-5k", 'classes = ["3", "4", "5"]\nsplit_seed = 7')
    first = run(digits, tmp_path / "first")
    second = run(others, tmp_path / "second")
    assert first["data"]["classes"] == ["0", "1"] and first["data"]["train_examples"] == 300
    assert second["data"]["classes"] == ["3", "4", "5"] and second["data"]["train_examples"] > 300
    # mnist-5k holds 500 images of each digit, 100 of them in its test split.
    assert (first["data"]["test_examples"], second["data"]["test_examples"]) == (200, 300)
    # And each study's data is what it asked for, not the other's: its labels are 0..k-1 of its classes.
    (first_plan,), (second_plan,) = plan_runs(load_study(digits)), plan_runs(load_study(others))
    assert data_for(first_plan).train_y.unique().tolist() == [0, 1]
    assert data_for(second_plan).train_y.unique().tolist() == [0, 1, 2]
    assert data_for(first_plan) is not data_for(second_plan)


def test_the_cache_is_keyed_by_what_makes_the_data_and_keeps_the_most_recent(tmp_path):
    sizes = [100 * (index + 1) for index in range(DATA_CACHE_ENTRIES + 1)]
    study = write_study(tmp_path, "sizes", "mnist-5k", f"train_examples = {sizes}")
    plans = plan_runs(load_study(study))
    assert [plan.settings.data.train_examples for plan in plans] == sizes

    kept = [data_for(plan) for plan in plans]
    assert [len(data.train_y) for data in kept] == sizes
    assert len(DATA_CACHE) == DATA_CACHE_ENTRIES
    assert [key.train_examples for key in DATA_CACHE.keys()] == sizes[1:]  # the first, least recent, went
    assert data_for(plans[-1]) is kept[-1]  # kept: the same tensors again
    assert data_for(plans[0]) is not kept[0]  # prepared anew, and equal
    assert torch.equal(data_for(plans[0]).train_x, kept[0].train_x)

    key = DATA_CACHE.keys()[-1]
    assert isinstance(key, DataKey) and key.dataset == "mnist-5k" and key.dtype == "float32"
    assert key.device == "cpu" and key.files and key.files[0][0].endswith("mnist_5k.csv.gz")


def test_a_cache_needs_room_for_one_entry():
    with pytest.raises(ValueError, match="at least 1 entry, got entries=0"):
        PreparedDataCache(entries=0)


def test_a_runs_initialization_follows_its_seed_and_leaves_the_global_generator_alone(tmp_path):
    study = write_study(tmp_path, "seeds", "mnist-5k", "train_examples = 100")
    (plan,) = plan_runs(load_study(study))
    data = data_for(plan)
    torch.manual_seed(1234)
    expected_next = torch.rand(3)
    torch.manual_seed(1234)
    first = new_model(plan, data)
    assert torch.equal(torch.rand(3), expected_next)  # as if no model had been made
    torch.manual_seed(99)
    second = new_model(plan, data)
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not np.allclose(first.state_dict()["layers.0.weight"].numpy(), 0)


# Calls that set a process-wide generator and leave it set.
GLOBAL_RESEEDS = {"torch.manual_seed", "torch.random.manual_seed", "torch.cuda.manual_seed",
                  "torch.cuda.manual_seed_all", "np.random.seed", "numpy.random.seed", "random.seed"}


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Subscript):
        return f"{dotted(node.value)}[]"
    return "?"


def reseeds(tree: ast.AST) -> list[tuple[int, str, bool]]:
    """(line, call, inside a ``with torch.random.fork_rng(...)``) for every call that seeds a
    generator of torch's, numpy's or Python's global state."""
    found = []

    def visit(node: ast.AST, forked: bool) -> None:
        if isinstance(node, ast.With) and any(
            isinstance(item.context_expr, ast.Call) and dotted(item.context_expr.func).endswith("fork_rng")
            for item in node.items
        ):
            forked = True
        if isinstance(node, ast.Call):
            name = dotted(node.func)
            if name in GLOBAL_RESEEDS or name in ("torch.default_generator.manual_seed",
                                                  "torch.cuda.default_generators[].manual_seed"):
                found.append((node.lineno, name, forked))
        for child in ast.iter_child_nodes(node):
            visit(child, forked)

    visit(tree, False)
    return found


def test_library_code_reseeds_global_generators_only_inside_fork_rng():
    source = Path(__file__).resolve().parents[1] / "src" / "gdlab"
    seen, loose = [], []
    for path in sorted(source.rglob("*.py")):
        for line, name, forked in reseeds(ast.parse(path.read_text(), str(path))):
            seen.append(name)
            if name in GLOBAL_RESEEDS or not forked:
                loose.append(f"{path.relative_to(source)}:{line} {name}")
    assert not loose, "reseeds process-wide state; seed a torch.Generator, or the generator inside " \
                      "torch.random.fork_rng (see gdlab.study.execute.seeded):\n" + "\n".join(loose)
    assert "torch.default_generator.manual_seed" in seen  # the scan does see the scoped ones


def test_the_scan_sees_a_reseed_outside_fork_rng():
    code = "import torch\ntorch.manual_seed(0)\nwith torch.random.fork_rng(devices=[]):\n" \
           "    torch.default_generator.manual_seed(1)\ntorch.default_generator.manual_seed(2)\n"
    assert reseeds(ast.parse(code)) == [
        (2, "torch.manual_seed", False),
        (4, "torch.default_generator.manual_seed", True),
        (5, "torch.default_generator.manual_seed", False),
    ]
