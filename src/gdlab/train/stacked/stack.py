"""The members training together: stacked parameters, the rule's state, hyperparameters; one step for all."""

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from gdlab.backprop.backward import Lanes
from gdlab.errors import GdlabError
from gdlab.optim.declaration import RuleDeclaration
from gdlab.train.loop import LossFn
from gdlab.train.stacked.hparams import stacked_keywords, stacked_value
from gdlab.train.stacked.models import stack_parameters, stacked_model
from gdlab.train.stacked.score_gradients import losses_and_score_gradients, score_gradients


class Stack:
    """Members training together: stacked parameters, the rule's state, hyperparameters.

    The rule is reached only through its declaration: ``init`` builds the state
    for all members, ``update`` steps them with each hyperparameter as
    ``stacked_keywords`` hands it over (a float where all members agree, else
    one value per member).
    """

    def __init__(
        self, models: list[nn.Module], members: list[int], rule: RuleDeclaration, settings: list[dict],
        lane_of: list[int] | None = None,
    ):
        self.all_members = list(members)
        self.members = list(members)  # slot order; shrinks as members diverge
        # Member -> the lane whose batches it trains on; members come lane by lane (MemberLoaders).
        self.lane_of = lane_of
        self.params = stack_parameters([models[member] for member in members])
        self.model = stacked_model(models[members[0]])
        self.rule = rule
        self.keywords = stacked_keywords([settings[member] for member in members], like=self.params[0])
        self.state = rule.init(self.params, self.keywords)

    def set_learning_rates(self, rates: list[float]) -> None:
        """Each member's learning rate, in slot order."""
        self.keywords["lr"] = stacked_value(rates, like=self.params[0])

    def forward(self, batches: list[tuple[Tensor, Tensor]], loss_fn: LossFn) -> tuple[list[float], Tensor]:
        """Every member's loss on its lane's batch (``batches[lane]``: one (x, y) per lane) and its
        count of correct predictions (on the device); what ``step`` needs is kept for it."""
        x, y, per_member = self._inputs(batches)
        with torch.no_grad():
            scores, saved = self.model.forward(self.params, x)
            losses, gradients = losses_and_score_gradients(loss_fn, scores, y, per_member)
            correct = (scores.argmax(dim=-1) == y).sum(dim=1)
        self._forward = (scores, saved, y, per_member, loss_fn, gradients)
        return losses.tolist(), correct

    def _inputs(self, batches: list[tuple[Tensor, Tensor]]) -> tuple[Tensor | Lanes, Tensor, bool]:
        """The model's input (one batch, or the lanes of the members left) and the labels:
        shared (N, ...) for one lane, each member's own (K, N, ...) for several."""
        if len(batches) == 1:
            return batches[0][0], batches[0][1], False
        sizes = [len(batch[1]) for batch in batches]
        if len(set(sizes)) > 1:
            raise GdlabError(
                f"fit_stacked: the members' loaders gave batches of {sorted(set(sizes))} samples in one step; "
                f"members on different loaders (MemberLoaders) train batched together and need batches of "
                f"one size in every step: the same data and batch size, in any order"
            )
        lanes = [self.lane_of[member] for member in self.members]
        present = sorted(set(lanes))
        counts = [lanes.count(lane) for lane in present]
        x = Lanes([batches[lane][0] for lane in present], counts)
        y = torch.cat([batches[lane][1].expand(count, *batches[lane][1].shape)
                       for lane, count in zip(present, counts)])
        return x, y, True

    def step(self, skipped_slots: list[int]) -> None:
        """One update of every member from its own loss on the last ``forward``'s batch;
        skipped slots (members that diverged on it) feed no gradient to anyone."""
        scores, saved, y, per_member, loss_fn, gradients_of_scores = self._forward
        self._forward = None
        kept = [slot for slot in range(len(self.members)) if slot not in skipped_slots]
        if gradients_of_scores is None:
            gradients_of_scores = score_gradients(loss_fn, scores, y, kept, per_member)
        elif skipped_slots:
            gradients_of_scores[skipped_slots] = 0
        gradients = self.model.gradients(self.params, saved, gradients_of_scores)
        with torch.no_grad():
            self.rule.update(self.params, gradients, self.state, **self.keywords)

    def drop(self, slots: list[int]) -> None:
        """Remove members from the stack: their parameters, state and hyperparameters."""
        kept = [slot for slot in range(len(self.members)) if slot not in slots]
        index = torch.tensor(kept, dtype=torch.long, device=self.params[0].device)

        def select(value):
            # 0-dim state is one value that all members share: it stays as it is.
            if isinstance(value, Tensor) and value.dim() > 0:
                return value.index_select(0, index)
            if isinstance(value, tuple):
                return tuple(select(entry) for entry in value)
            return value

        self.params = [param.index_select(0, index) for param in self.params]
        # The declared state type: one field per state_dict key, each a list over the parameters.
        self.state = type(self.state)(*([select(value) for value in values] for values in self.state))
        self.keywords = {key: select(value) for key, value in self.keywords.items()}
        self.members = [self.members[slot] for slot in kept]

    @torch.no_grad()
    def evaluate(self, loader: Iterable, loss_fn: LossFn) -> list[dict]:
        """``gdlab.train.evaluate`` for every member: mean loss per sample and accuracy."""
        loss_sums = [0.0] * len(self.members)
        correct = torch.zeros(len(self.members), dtype=torch.long, device=self.params[0].device)
        count = 0
        for x, y in loader:
            scores = self.model.scores(self.params, x)
            batch_losses = losses_and_score_gradients(loss_fn, scores, y)[0].tolist()
            for slot, loss in enumerate(batch_losses):
                loss_sums[slot] += loss * len(y)
            correct += (scores.argmax(dim=-1) == y).sum(dim=1)
            count += len(y)
        if count == 0:
            return [{"loss": math.nan, "accuracy": math.nan} for _ in self.members]
        return [
            {"loss": loss_sum / count, "accuracy": member_correct / count}
            for loss_sum, member_correct in zip(loss_sums, correct.tolist())
        ]
