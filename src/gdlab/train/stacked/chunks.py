"""Members trained in chunks: how many train together, and the loader giving every chunk the same batches."""

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


class EpochBatches:
    """The training loader, epoch by epoch, for every chunk alike.

    A loader with ``set_epoch`` is set to epoch ``start + e`` before epoch e
    (``start``: its ``epoch`` when training began), so every chunk sees the
    batches ``fit`` would see. When members train in more than one chunk, the
    order of each epoch's labels is fingerprinted, and a chunk that saw another
    order than the first is an error rather than a silently different study.
    """

    def __init__(self, loader):
        self.loader = loader
        self.settable = hasattr(loader, "set_epoch")
        self.start_epoch = getattr(loader, "epoch", 0) if self.settable else 0
        self.checking = False
        self.marks: list[Tensor] = []
        self.reference: dict[int, Tensor] = {}

    def of_epoch(self, epoch: int):
        if self.settable:
            self.loader.set_epoch(self.start_epoch + epoch)
        self.marks = []
        return iter(self.loader)

    def expect_repeats(self, more_chunks: bool) -> None:
        self.checking = self.checking or more_chunks

    def mark(self, y: Tensor) -> None:
        if self.checking:
            # Position-weighted sum of the labels: any reordering of different labels changes it.
            self.marks.append(y.flatten().to(torch.float64).cumsum(0).sum())

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
