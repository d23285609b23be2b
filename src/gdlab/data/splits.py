"""Train/validation splits and class subsets, as index operations on whole tensors."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch

from gdlab.data.dataset import Split
from gdlab.errors import GdlabError


def split_train_val(split: Split, val_fraction: float, seed: int) -> tuple[Split, Split]:
    """Split ``split`` into training and validation parts, exactly as the course notebooks did.

    With N samples, ``n_train = int(N * (1 - val_fraction))`` and
    ``n_val = N - n_train``; the order is
    ``perm = torch.randperm(N, generator=torch.Generator().manual_seed(seed))``;
    training gets ``perm[:n_train]`` and validation ``perm[n_train:]``, in
    that (shuffled) order. This is what
    ``torch.utils.data.random_split(ds, [n_train, n_val], generator=torch.Generator().manual_seed(seed))``
    selects, so a CIFAR-10 split with ``val_fraction=0.1, seed=123`` holds the
    same images, in the same order, as the course's.

    ``val_fraction`` must lie in [0, 1). ``0`` gives an empty validation
    split (all samples train, still in shuffled order), for a final run on
    everything once hyperparameters are chosen.
    """
    if (
        isinstance(val_fraction, bool)
        or not isinstance(val_fraction, numbers.Real)
        or not math.isfinite(val_fraction)
        or not 0 <= val_fraction < 1
    ):
        raise GdlabError(
            f"val_fraction must be a number in [0, 1), got {val_fraction!r}; "
            "use e.g. 0.1 to keep 10% of the training data for validation"
        )
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise GdlabError(f"split seed must be an integer, got {seed!r}")
    total = len(split)
    n_train = int(total * (1 - val_fraction))
    if n_train == 0:
        raise GdlabError(
            f"val_fraction={val_fraction!r} leaves no training samples out of {total}; use a smaller val_fraction"
        )
    order = torch.randperm(total, generator=torch.Generator().manual_seed(int(seed)))
    return _take(split, order[:n_train]), _take(split, order[n_train:])


def _take(split: Split, indices: torch.Tensor) -> Split:
    indices = indices.to(split.x.device)
    return Split(split.x.index_select(0, indices), split.y.index_select(0, indices.to(split.y.device)))


def _class_index(item: int | str, class_names: Sequence[str]) -> int:
    if isinstance(item, str):
        if item in class_names:
            return list(class_names).index(item)
        raise GdlabError(f"unknown class name {item!r}; the classes are {list(class_names)}")
    if isinstance(item, numbers.Integral) and not isinstance(item, bool):
        if 0 <= item < len(class_names):
            return int(item)
        raise GdlabError(f"class index {item!r} out of range; valid indices are 0..{len(class_names) - 1}")
    raise GdlabError(f"a class must be a name or an index, got {item!r} ({type(item).__name__})")


def select_classes(
    split: Split, classes: Sequence[int | str], class_names: Sequence[str]
) -> tuple[Split, list[str]]:
    """Keep only the samples of ``classes`` (names or indices), relabelled ``0..k-1`` in the order given.

    ``select_classes(s, ["airplane", "bird"], cifar_names)`` keeps CIFAR-10's
    classes 0 and 2 and relabels them 0 and 1, the course's "cifar2". Samples
    keep their relative order. An empty ``classes`` keeps every class with its
    labels unchanged (the study file's ``classes = []``). Returns the subset
    and the kept class names, in their new label order.
    """
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence):
        raise GdlabError(f"classes must be a list of class names or indices, got {classes!r}")
    if len(classes) == 0:
        return split, list(class_names)
    kept = [_class_index(item, class_names) for item in classes]
    if len(set(kept)) != len(kept):
        raise GdlabError(f"classes {list(classes)!r} name the same class twice")
    kept_tensor = torch.tensor(kept, dtype=torch.int64, device=split.y.device)
    new_label = torch.full((len(class_names),), -1, dtype=torch.int64, device=split.y.device)
    new_label[kept_tensor] = torch.arange(len(kept), device=split.y.device)
    mask = torch.isin(split.y, kept_tensor)
    indices = mask.nonzero().squeeze(1)
    subset = Split(split.x.index_select(0, indices.to(split.x.device)), new_label[split.y.index_select(0, indices)])
    return subset, [class_names[index] for index in kept]
