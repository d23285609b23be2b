"""One epoch's figures of stacked members, written into their Histories as ``fit`` writes its own."""

import torch
from torch import Tensor

from gdlab.train.history import History


class EpochRecord:
    """One epoch's figures of the members that started it, written into their Histories as ``fit`` does."""

    def __init__(self, members: list[int]):
        self.members = list(members)
        self.losses: dict[int, list[float]] = {member: [] for member in members}
        # Correct counts stay on the device until the epoch ends: one transfer per epoch.
        self.correct: list[tuple[tuple[int, ...], Tensor]] = []
        self.sizes: list[int] = []

    def add(self, members: list[int], loss_values: list[float], correct: Tensor, size: int) -> None:
        self.sizes.append(size)
        self.correct.append((tuple(members), correct))
        for member, loss in zip(members, loss_values):
            self.losses[member].append(loss)

    def write(self, histories: list[History]) -> None:
        counts = iter(torch.cat([row for _, row in self.correct]).tolist())
        correct: dict[int, list[int]] = {member: [] for member in self.members}
        for members, _ in self.correct:
            for member in members:
                correct[member].append(next(counts))
        for member in self.members:
            history, losses = histories[member], self.losses[member]
            sizes = self.sizes[: len(losses)]
            history.iteration_loss.extend(losses)
            history.iteration_accuracy.extend(c / n for c, n in zip(correct[member], sizes))
            history.epoch_iterations.append(len(losses))
            if history.diverged:
                continue
            seen = sum(sizes)
            history.epoch_train_loss.append(sum(loss * n for loss, n in zip(losses, sizes)) / seen)
            history.epoch_train_accuracy.append(sum(correct[member]) / seen)
