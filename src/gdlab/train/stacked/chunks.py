"""Members trained in chunks: how many train together, and the loaders giving every chunk the same batches."""

import itertools
import sys

import torch
from torch import Tensor, nn

from gdlab.errors import GdlabError
from gdlab.train.stacked.hparams import Rule
from gdlab.train.stacked.memory import members_that_fit


def chunk_size(model: nn.Module, rule: Rule, pending_settings: list[dict], max_members, batch_x: Tensor) -> int:
    """How many of the pending members train together: all, unless ``max_members`` or memory say fewer."""
    size = min(len(pending_settings), max_members or sys.maxsize)
    if size > 1:
        size = min(size, members_that_fit(model, rule, pending_settings[:size], batch_x))
    return size


class MemberLoaders:
    """One training loader per member, for members that do not all train on the same batches.

    ``loaders[k]`` is member k's loader; members handed the same loader object
    share its batches (a lane: runs of one seed), members of different lanes
    get their own. Every lane must give the same number of batches of the same
    sizes, epoch for epoch (the same data and batch size in another order).
    """

    def __init__(self, loaders: list):
        self.loaders = list(loaders)

    def lanes(self) -> tuple[list, list[int]]:
        """The distinct loaders in order of first use, and each member's lane."""
        distinct: dict[int, int] = {}
        lane_of = [distinct.setdefault(id(loader), len(distinct)) for loader in self.loaders]
        firsts = {lane: loader for loader, lane in zip(self.loaders, lane_of)}
        return [firsts[lane] for lane in range(len(distinct))], lane_of


class EpochBatches:
    """The training loaders (one per lane), epoch by epoch, for every chunk alike.

    Each step gives one batch per lane, as a list. A loader with ``set_epoch``
    is set to epoch ``start + e`` before epoch e (``start``: its ``epoch`` when
    training began), so every chunk sees the batches ``fit`` would see. When
    members train in more than one chunk, the order of each epoch's labels is
    fingerprinted, and a chunk that saw another order than the first is an
    error rather than a silently different study.
    """

    def __init__(self, loaders: list):
        self.loaders = loaders
        self.start_epochs = [getattr(loader, "epoch", 0) if hasattr(loader, "set_epoch") else 0 for loader in loaders]
        self.checking = False
        self.marks: list[Tensor] = []
        self.reference: dict[int, Tensor] = {}

    def of_epoch(self, epoch: int):
        for loader, start in zip(self.loaders, self.start_epochs):
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(start + epoch)
        self.marks = []
        return self._steps([iter(loader) for loader in self.loaders])

    @staticmethod
    def _steps(iterators: list):
        for batches in itertools.zip_longest(*iterators):
            if any(batch is None for batch in batches):
                raise GdlabError(
                    "fit_stacked: the members' training loaders gave different numbers of batches in one epoch; "
                    "loaders of different members (MemberLoaders) must split the same data into the same "
                    "batch sizes, in any order"
                )
            yield list(batches)

    def expect_repeats(self, more_chunks: bool) -> None:
        self.checking = self.checking or more_chunks

    def mark(self, batches: list) -> None:
        if self.checking:
            # Position-weighted sum of each lane's labels: any reordering of different labels changes it.
            self.marks.append(torch.stack([y.flatten().to(torch.float64).cumsum(0).sum() for _, y in batches]))

    def end_epoch(self, epoch: int) -> None:
        if not self.checking:
            return
        marks = torch.stack(self.marks)
        if epoch not in self.reference:
            self.reference[epoch] = marks
        elif marks.shape != self.reference[epoch].shape or not torch.equal(marks, self.reference[epoch]):
            raise GdlabError(
                f"fit_stacked: the training loader gave another batch order in epoch {epoch} when iterated "
                f"again for the next chunk of members; members trained in chunks must see the same batches. "
                f"Use gdlab.data.TensorLoader (its set_epoch repeats an epoch) or a loader whose order "
                f"repeats, or stack fewer members so that one chunk holds them all"
            )
