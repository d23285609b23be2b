"""Train and test arrays as a format reader returns them, before they become tensors."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class RawSplits(NamedTuple):
    """Images as uint8 ``(N, C, H, W)`` arrays, labels as int64 ``(N,)`` arrays.

    ``classes`` is the list of class names when the files carry one (CIFAR's
    ``batches.meta``), otherwise None and the registry's names apply.
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: tuple[str, ...] | None = None
