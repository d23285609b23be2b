"""A dataset as gdlab hands it out: uint8 NCHW image tensors and int64 labels, train and test."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from gdlab.data.arrays import RawSplits
from gdlab.data.cifar import read_cifar10
from gdlab.data.idx import read_idx_dataset
from gdlab.data.mnist_5k import read_mnist_5k
from gdlab.data.registry import DatasetInfo, dataset_info
from gdlab.data.sources import Location, locate
from gdlab.errors import GdlabError


@dataclass(eq=False)
class Split:
    """Images ``x`` (a tensor, N first; uint8 ``(N, C, H, W)`` as `load` returns it) and int64 labels ``y`` ``(N,)``."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self):
        if not isinstance(self.x, torch.Tensor) or not isinstance(self.y, torch.Tensor):
            raise GdlabError(
                f"Split needs tensors x and y, got {type(self.x).__name__} and {type(self.y).__name__}"
            )
        if self.x.ndim < 1 or self.y.ndim != 1 or self.y.dtype != torch.int64:
            raise GdlabError(
                f"Split needs x with a leading sample dimension and y an int64 vector; got x of shape "
                f"{tuple(self.x.shape)}, y of shape {tuple(self.y.shape)} and dtype {self.y.dtype}"
            )
        if len(self.x) != len(self.y):
            raise GdlabError(f"Split has {len(self.x)} images but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """A loaded dataset: ``train`` and ``test`` splits, class names, and where its files were found."""

    name: str
    train: Split
    test: Split
    classes: list[str]
    source: str


def _read(info: DatasetInfo, location: Location) -> RawSplits:
    if info.layout == "idx":
        return read_idx_dataset(*location.files)
    if info.layout == "cifar-python":
        return read_cifar10(location.source)
    return read_mnist_5k(location.source)


def _checked_split(x: np.ndarray, y: np.ndarray, info: DatasetInfo, classes: list[str], what: str) -> Split:
    if tuple(x.shape[1:]) != info.image_shape:
        raise GdlabError(
            f"{what}: expected {info.name} images of shape {info.image_shape}, found {tuple(x.shape[1:])}"
        )
    if len(y) and (y.min() < 0 or y.max() >= len(classes)):
        raise GdlabError(
            f"{what}: labels must lie in 0..{len(classes) - 1} ({len(classes)} classes), found {y.min()}..{y.max()}"
        )
    return Split(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)))


def load(name: str, root: str | os.PathLike | None = None, download: bool = False) -> ImageDataset:
    """Load ``name`` ("mnist-5k", "mnist", "fashion-mnist" or "cifar10") from its official files.

    Files are looked for in ``root``, ``$GDLAB_DATA``, the user cache and the
    system folder, in that order (see `gdlab.data.sources`); with
    ``download=True`` the official files are fetched, MD5-checked, when none
    are found. Images come back as uint8 ``(N, C, H, W)``, labels as int64.

    mnist-5k has no official test split; gdlab's fixed, stratified 4,000 /
    1,000 split is described in `gdlab.data.mnist_5k`.
    """
    info = dataset_info(name)
    location = locate(name, root, download_missing=download)
    raw = _read(info, location)
    classes = list(raw.classes) if raw.classes is not None else list(info.classes)
    where = str(location.source)
    return ImageDataset(
        name=info.name,
        train=_checked_split(raw.train_x, raw.train_y, info, classes, f"{where} (train)"),
        test=_checked_split(raw.test_x, raw.test_y, info, classes, f"{where} (test)"),
        classes=classes,
        source=where,
    )
