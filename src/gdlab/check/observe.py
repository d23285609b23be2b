"""Watching a training loop step by step from inside its ``train_loader``.

A training function runs its own loop, so gdlab cannot stop it between
steps. It does not need to: in ``for x, y in train_loader: ...`` the loop
asks for batch k+1 only after it has finished its step on batch k, whatever
it does in between (zeroing gradients before or after, replacing tensors
with ``p.data = ...``). So the loader snapshots the model's parameters each
time a batch is asked for, each time an epoch runs out, and once more when
the function returns. Snapshots read ``model.named_parameters()`` afresh
every time and clone them, because ``p.data = p.data - lr * g`` puts a new
tensor behind the parameter and a reference kept from before would still
show the old values.

Step k is then ``(before, after)`` = the snapshots when batch k was handed
out and when the next request (or the return) came. If the parameters change
*between* steps (after one epoch's last batch and before the next epoch's
first, or before the first batch), that shows as ``after`` of one step
differing from ``before`` of the next.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import TensorDataset


class StepLimitReached(BaseException):
    """Raised inside the user's loop to stop a function that keeps drawing batches.

    A BaseException, like KeyboardInterrupt, so that an ``except Exception``
    in the user's code cannot swallow it and loop on.
    """


@dataclass(eq=False)
class ObservedStep:
    """One step of the user's loop: where it is, its batch, and the parameters around it."""

    number: int
    epoch: int
    iteration: int
    x: torch.Tensor
    y: torch.Tensor
    before: dict[str, torch.Tensor]
    after: dict[str, torch.Tensor] | None = None
    forward_calls: int = 0


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the model's current parameters, looked up by name now."""
    return {name: parameter.detach().clone() for name, parameter in model.named_parameters()}


@dataclass(eq=False)
class ObservedLoader:
    """A stand-in for ``DataLoader(TensorDataset(x, y), batch_size, shuffle=True)`` that records each step.

    Each pass (``iter(loader)``) is one epoch in a fresh order drawn from
    ``seed``; ``len(loader)`` is the number of batches per pass and
    ``loader.dataset`` / ``loader.batch_size`` are there as on a DataLoader.
    The user gets copies of the batches, so whatever it does to them in
    place cannot change what the reference trains on.
    """

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    batch_size: int
    seed: int
    max_steps: int
    steps: list[ObservedStep] = field(default_factory=list)
    epochs_started: int = 0
    _open: ObservedStep | None = None

    def __post_init__(self):
        self.dataset = TensorDataset(self.x, self.y)
        self._generator = torch.Generator().manual_seed(self.seed)
        self.model.register_forward_pre_hook(self._count_forward)

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)  # the last batch may be smaller

    def __iter__(self):
        self.epochs_started += 1
        order = torch.randperm(len(self.y), generator=self._generator)
        return self._serve(self.epochs_started, order)

    def _serve(self, epoch: int, order: torch.Tensor):
        for iteration, indices in enumerate(order.split(self.batch_size), start=1):
            self.close_step()
            if len(self.steps) >= self.max_steps:
                raise StepLimitReached(f"stopped after {self.max_steps} steps")
            x, y = self.x[indices], self.y[indices]
            self._open = ObservedStep(len(self.steps) + 1, epoch, iteration, x, y, snapshot(self.model))
            self.steps.append(self._open)
            yield x.clone(), y.clone()
        self.close_step()

    def close_step(self) -> None:
        """Record the parameters after the open step, if one is open; the function calls this on return."""
        if self._open is not None:
            self._open.after = snapshot(self.model)
            self._open = None

    def _count_forward(self, module, inputs) -> None:
        if self._open is not None:
            self._open.forward_calls += 1


@dataclass(eq=False)
class PlainLoader:
    """A loader that only serves batches in order (for a validation loader): nothing is recorded."""

    x: torch.Tensor
    y: torch.Tensor
    batch_size: int

    def __post_init__(self):
        self.dataset = TensorDataset(self.x, self.y)

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def __iter__(self):
        for start in range(0, len(self.y), self.batch_size):
            yield self.x[start:start + self.batch_size].clone(), self.y[start:start + self.batch_size].clone()
