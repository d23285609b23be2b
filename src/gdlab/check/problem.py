"""The small real problem every check trains on: 320 MNIST digits and a 784-16-8-10 MLP.

Real digits rather than noise, so that gradients have the structure (large
and tiny entries, sign changes) a student's code meets in the course; small,
so that the whole check, the diagnosis included, takes a few seconds on a
laptop. The digits are the first 32 of each class in mnist-5k's training
split (no randomness), normalized by their own mean and standard deviation.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

from gdlab.data import channel_stats, load, normalize
from gdlab.models import MLP

PER_CLASS = 32
BATCH_SIZE = 32
MODEL_SIZES = (784, 16, 8, 10)


@dataclass(frozen=True, eq=False)
class Problem:
    """A model fresh from its seeded initialization, normalized images ``x``, labels ``y``, a loss."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    loss_fn: nn.Module
    batch_size: int

    @property
    def batches_per_epoch(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def describe(self) -> str:
        sizes = "-".join(str(size) for size in MODEL_SIZES)
        return (
            f"{len(self.y)} MNIST digits (mnist-5k), batches of {self.batch_size}, MLP {sizes}, "
            f"{str(self.x.dtype).removeprefix('torch.')}"
        )


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The chosen uint8 images (in file order) and their labels; read once per process."""
    train = load("mnist-5k").train
    chosen = torch.cat([torch.nonzero(train.y == label).flatten()[:PER_CLASS] for label in range(10)])
    chosen = chosen.sort().values
    return train.x[chosen], train.y[chosen]


def make_problem(dtype: torch.dtype = torch.float32, seed: int = 0) -> Problem:
    """The check's problem in ``dtype``; ``seed`` fixes the initialization (the global RNG is left alone)."""
    images, labels = _digits()
    mean, std = channel_stats(images)
    # Made in float32 whatever the default dtype is, so that both dtypes start from the same draw.
    default = torch.get_default_dtype()
    with torch.random.fork_rng(devices=[]):
        torch.set_default_dtype(torch.float32)
        try:
            torch.default_generator.manual_seed(seed)  # the CPU's only: fork_rng puts back no other
            model = MLP(list(MODEL_SIZES))
        finally:
            torch.set_default_dtype(default)
    x = normalize(images, mean, std, dtype=dtype)
    return Problem(model.to(dtype), x, labels.clone(), nn.CrossEntropyLoss(), BATCH_SIZE)
