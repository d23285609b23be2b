"""Train/validation split (equal to torch's random_split) and class subsets."""

import math
import re

import pytest
import torch
from torch.utils.data import TensorDataset, random_split

from gdlab.data import Split, select_classes, split_train_val
from gdlab.errors import GdlabError

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _split(n, classes=10, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 4, 4), dtype=torch.uint8, generator=generator)
    y = torch.randint(0, classes, (n,), generator=generator)
    return Split(x, y)


@pytest.mark.parametrize(("n", "val_fraction", "seed"), [(50000, 0.1, 123), (1000, 0.1, 0), (997, 0.25, 7), (10, 0.5, 3), (101, 0.0, 5)])
def test_split_selects_exactly_what_random_split_selects(n, val_fraction, seed):
    split = Split(torch.arange(n), torch.arange(n))  # x = y = the original index
    train, val = split_train_val(split, val_fraction, seed)
    n_train = int(n * (1 - val_fraction))
    reference_train, reference_val = random_split(
        TensorDataset(torch.arange(n)), [n_train, n - n_train], generator=torch.Generator().manual_seed(seed)
    )
    assert train.y.tolist() == list(reference_train.indices)
    assert val.y.tolist() == list(reference_val.indices)
    assert torch.equal(train.x, train.y) and torch.equal(val.x, val.y)


def test_course_sizes_for_cifar10():
    # the course: 50,000 -> 45,000 train / 5,000 validation with int(50000 * 0.9)
    train, val = split_train_val(Split(torch.zeros(50000, 1), torch.zeros(50000, dtype=torch.int64)), 0.1, 123)
    assert (len(train), len(val)) == (45000, 5000)


def test_split_moves_images_with_their_labels():
    split = _split(200)
    train, val = split_train_val(split, 0.2, 1)
    both_x, both_y = torch.cat([train.x, val.x]), torch.cat([train.y, val.y])
    order = torch.randperm(200, generator=torch.Generator().manual_seed(1))
    assert torch.equal(both_x, split.x[order]) and torch.equal(both_y, split.y[order])


def test_zero_val_fraction_gives_empty_validation():
    train, val = split_train_val(_split(30), 0.0, 0)
    assert len(train) == 30 and len(val) == 0 and val.x.shape == (0, 3, 4, 4)


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5, math.nan, math.inf, "0.1", None, True])
def test_bad_val_fraction_names_the_value(bad):
    with pytest.raises(GdlabError, match=rf"val_fraction must be a number in \[0, 1\), got {re.escape(repr(bad))};"):
        split_train_val(_split(10), bad, 0)


def test_val_fraction_leaving_no_training_data():
    with pytest.raises(GdlabError, match=r"val_fraction=0.9 leaves no training samples out of 1"):
        split_train_val(_split(1), 0.9, 0)


def test_bad_seed():
    with pytest.raises(GdlabError, match=r"split seed must be an integer, got 1.5"):
        split_train_val(_split(10), 0.1, 1.5)


def test_select_classes_by_name_remaps_in_the_order_given():
    split = Split(torch.arange(8), torch.tensor([0, 2, 1, 2, 0, 9, 2, 0]))
    subset, names = select_classes(split, ["bird", "airplane"], CIFAR_NAMES)
    assert names == ["bird", "airplane"]
    assert subset.x.tolist() == [0, 1, 3, 4, 6, 7]  # original order kept
    assert subset.y.tolist() == [1, 0, 0, 1, 0, 1]  # bird -> 0, airplane -> 1


def test_select_classes_by_index_and_mixed():
    split = _split(300)
    by_index, names_index = select_classes(split, [0, 2], CIFAR_NAMES)
    by_name, names_name = select_classes(split, ["airplane", 2], CIFAR_NAMES)
    assert names_index == names_name == ["airplane", "bird"]
    assert torch.equal(by_index.x, by_name.x) and torch.equal(by_index.y, by_name.y)
    keep = (split.y == 0) | (split.y == 2)
    assert torch.equal(by_index.x, split.x[keep])
    assert torch.equal(by_index.y, (split.y[keep] == 2).long())


def test_course_cifar2_equals_split_then_select():
    """The course: random_split(0.9, seed 123), then keep labels 0 and 2 mapped to 0 and 1, in order."""
    data = _split(2000, seed=4)
    n_train = int(len(data) * 0.9)
    course_train, course_val = random_split(
        TensorDataset(data.x, data.y), [n_train, len(data) - n_train], generator=torch.Generator().manual_seed(123)
    )
    label_map = {0: 0, 2: 1}
    course_cifar2_train = [(img, label_map[int(label)]) for img, label in course_train if int(label) in [0, 2]]
    course_cifar2_val = [(img, label_map[int(label)]) for img, label in course_val if int(label) in [0, 2]]

    train, val = split_train_val(data, 0.1, 123)
    cifar2_train, names = select_classes(train, ["airplane", "bird"], CIFAR_NAMES)
    cifar2_val, _ = select_classes(val, [0, 2], CIFAR_NAMES)
    assert names == ["airplane", "bird"]
    for ours, course in ((cifar2_train, course_cifar2_train), (cifar2_val, course_cifar2_val)):
        assert len(ours) == len(course)
        assert torch.equal(ours.x, torch.stack([img for img, _ in course]))
        assert ours.y.tolist() == [label for _, label in course]


def test_empty_classes_keeps_everything():
    split = _split(20)
    subset, names = select_classes(split, [], CIFAR_NAMES)
    assert subset is split and names == CIFAR_NAMES


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        (["plane"], r"unknown class name 'plane'; the classes are \['airplane'"),
        ([10], r"class index 10 out of range; valid indices are 0..9"),
        ([-1], r"class index -1 out of range"),
        ([0, "airplane"], r"name the same class twice"),
        ([1.5], r"a class must be a name or an index, got 1.5"),
        ([True], r"a class must be a name or an index, got True"),
        ("airplane", r"classes must be a list of class names or indices, got 'airplane'"),
    ],
)
def test_select_classes_errors(classes, message):
    with pytest.raises(GdlabError, match=message):
        select_classes(_split(10), classes, CIFAR_NAMES)


def test_split_validation():
    with pytest.raises(GdlabError, match=r"Split has 3 images but 2 labels"):
        Split(torch.zeros(3, 1), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(GdlabError, match=r"y an int64 vector.*dtype torch.int32"):
        Split(torch.zeros(3, 1), torch.zeros(3, dtype=torch.int32))
    with pytest.raises(GdlabError, match=r"Split needs tensors x and y, got list and Tensor"):
        Split([1, 2], torch.zeros(2, dtype=torch.int64))
