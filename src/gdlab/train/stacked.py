r"""Many configurations trained at once, as one stacked model: ``fit_stacked``.

K models of one architecture, each with its own hyperparameters for one
update rule, train on the SAME batches in the same order. Their parameters are
stacked along a new first dimension (see :mod:`gdlab.train.stacked_models`),
one forward pass gives every member's scores, and one backward pass of

.. math:: L = \sum_k L_k(\theta_k)

gives every member its own gradient, since :math:`\partial L / \partial
\theta_k = \partial L_k / \partial \theta_k` (no parameter is shared). The
loss must average over the samples of its batch (mean reduction), as
``fit``'s does: then one call of it on all members' scores gives every
member's score gradient (in closed form for cross-entropy). The update is the
rule's declared ``update`` (:mod:`gdlab.optim.rules`), called once for all members with each
numeric hyperparameter as a tensor of K values (or a float when all members
agree, which takes the rule's float path).

What each member gets is what :func:`gdlab.train.fit` gives for that model and
rule alone, up to rounding: a :class:`History` with the same fields and
meaning. A member whose loss turns NaN or infinite is marked diverged at that
iteration, its parameters are written back as they were then, and it is
dropped from the stack; the others go on.

Members that do not fit in memory together train in chunks, one after the
other; every chunk re-iterates the loaders from the first epoch, so the
training loader must give each epoch's batches again in the same order. A
loader with ``set_epoch(e)`` (``gdlab.data.TensorLoader``) is set to each
epoch before it is iterated, which makes that so; for other loaders the
order is checked when there is more than one chunk, and a different order is
an error.
"""

import itertools
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gdlab.errors import GdlabError
from gdlab.optim import registry
from gdlab.optim.declaration import REQUIRED, RuleDeclaration
from gdlab.train.history import STATUS_DIVERGED, History
from gdlab.train.loop import LossFn
from gdlab.train.stacked_models import check_same_architecture, stack_parameters, stacked_model, write_member

# Fraction of the free memory that stacked members may plan to use: the
# estimate below is rough, and other processes and the data need room too.
MEMORY_SAFETY_FRACTION = 0.5

# Parameter-sized temporaries an update rule allocates while it runs (the
# penalized gradient, a denominator, a scaled term).
RULE_TEMPORARIES = 3

IterationCallback = Callable[[int, dict[int, float]], None]

# A hyperparameter as the stack hands it to the rule: a float (or flag) all members
# share, a tensor of one value per member, or a pair of these (betas).
Keywords = dict[str, object]

Rule = str | RuleDeclaration


def declaration_of(rule: Rule) -> RuleDeclaration:
    """The declaration of ``rule`` (a registered name, or a user's own declaration), checked stackable."""
    declaration = rule if isinstance(rule, RuleDeclaration) else _registered(rule)
    if not declaration.stackable or declaration.init is None or declaration.update is None:
        raise GdlabError(
            f"fit_stacked: rule {declaration.name!r} does not declare a stackable update (init/update taking "
            f"one hyperparameter value per member); train its configurations one by one with gdlab.train.fit"
        )
    return declaration


def _registered(name: str) -> RuleDeclaration:
    try:
        return registry.get(name)
    except GdlabError as error:
        raise GdlabError(f"fit_stacked: {error}") from None


def fit_stacked(
    models: list[nn.Module],
    rule: Rule,
    hparams: list[dict],
    loader: Iterable,
    epochs: int = 1,
    loss_fn: LossFn = F.cross_entropy,
    val_loader: Iterable | None = None,
    learning_rates: list[list[float]] | None = None,
    on_iteration: IterationCallback | None = None,
    max_members: int | None = None,
) -> list[History]:
    """Train ``models[k]`` with ``rule`` and ``hparams[k]`` for every k at once; one History each.

    ``models``: K models of one architecture (``supports_stacking``), each
    already initialized; their trained parameters are written back into them.
    ``rule``: the name of a registered rule whose declaration is stackable
    (``gdlab.optim.registry``: sgd, adam, adamw, rmsprop, adagrad ...), or a
    user's own :class:`~gdlab.optim.declaration.RuleDeclaration`;
    ``hparams[k]``: member k's keyword arguments of the rule's class (missing
    ones take its declared defaults). Numbers may differ between members; the
    hyperparameters the declaration marks shared (flags) must not.
    ``loss_fn(scores, labels)`` must average over the batch. ``learning_rates[e][k]``
    is member k's learning rate in epoch e (a schedule; ``gdlab.study`` reads
    them off torch's scheduler, one param group per member, so that any
    schedule, ``eta_min`` of a cosine included, is torch's exactly); without
    it every member keeps its ``hparams`` lr.
    ``on_iteration(iteration, {member: loss})`` is called after every step with
    the members that took it. ``max_members`` caps how many train together;
    fewer do when memory is short (``max_members_in_memory``).

    Each History's ``seconds`` is its chunk's wall time divided by the chunk's
    members: stacked members share every step, so the shares add up to the time taken.
    """
    check_same_architecture(models)
    settings = normalize_hparams(rule, hparams, len(models))
    _check_count("epochs", epochs, minimum=0)
    if max_members is not None:
        _check_count("max_members", max_members, minimum=1)
    rates = _check_learning_rates(learning_rates, epochs, [member["lr"] for member in settings])
    batches = _EpochBatches(loader)
    histories = [History() for _ in models]
    pending = list(range(len(models)))
    while pending:
        trained = _train_chunk(
            models, pending, rule, settings, batches, epochs, loss_fn, val_loader, rates,
            on_iteration, max_members, histories,
        )
        pending = pending[len(trained):]
    return histories


def normalize_hparams(rule: Rule, hparams: list[dict], count: int) -> list[dict]:
    """Each member's full hyperparameters (the optimizer class's defaults filled in), checked.

    Raises GdlabError for an unknown rule or key, a value the optimizer class
    refuses, a wrong number of dicts, or flags that differ between members.
    """
    declaration = declaration_of(rule)
    if not isinstance(hparams, (list, tuple)) or len(hparams) != count:
        got = len(hparams) if isinstance(hparams, (list, tuple)) else type(hparams).__name__
        raise GdlabError(f"fit_stacked: hparams must be a list of {count} dicts, one per model; got {got}")
    defaults = declaration.defaults()
    settings = []
    for index, member in enumerate(hparams):
        if not isinstance(member, dict):
            raise GdlabError(f"fit_stacked: hparams[{index}] must be a dict, got {type(member).__name__}")
        unknown = sorted(set(member) - set(defaults))
        if unknown:
            raise GdlabError(
                f"fit_stacked: hparams[{index}] has unknown key(s) {', '.join(unknown)} for rule {declaration.name!r}; "
                f"its keys are {', '.join(defaults)}"
            )
        full = {**defaults, **member}
        missing = [name for name, value in full.items() if value is REQUIRED]
        if missing:
            raise GdlabError(
                f"fit_stacked: hparams[{index}] must set {', '.join(missing)} for rule {declaration.name!r}"
            )
        try:  # the rule's own class checks the values, with torch's messages
            declaration.optimizer([torch.zeros(1, requires_grad=True)], **full)
        except (TypeError, ValueError) as error:
            raise GdlabError(f"fit_stacked: hparams[{index}] for rule {declaration.name!r}: {error}") from None
        settings.append(full)
    for flag in declaration.shared_names:
        values = [member[flag] for member in settings if flag in member]
        if values and any(value != values[0] for value in values):
            differing = next(index for index, value in enumerate(values) if value != values[0])
            raise GdlabError(
                f"fit_stacked: hparams disagree on {flag!r}: hparams[0] has {values[0]}, "
                f"hparams[{differing}] has {values[differing]}; stacked members share their flags, "
                f"so train configurations with different {flag} in separate groups"
            )
    return settings


def max_members_in_memory(
    model: nn.Module,
    rule: Rule,
    hparams: list[dict],
    batch_x: Tensor,
    safety_fraction: float = MEMORY_SAFETY_FRACTION,
    available_bytes: int | None = None,
) -> int:
    """How many members like ``model`` fit in memory at once (at least 1).

    ``safety_fraction`` of the available memory (``available_memory_bytes`` on
    ``batch_x``'s device unless ``available_bytes`` is given) divided by
    ``member_bytes``. Without a way to tell the available memory there is no limit.
    """
    settings = normalize_hparams(rule, hparams, len(hparams))
    return _members_that_fit(model, rule, settings, batch_x, safety_fraction, available_bytes)


def member_bytes(model: nn.Module, rule: Rule, settings: list[dict], batch_x: Tensor) -> int:
    """Estimated memory of one stacked member training on batches like ``batch_x``.

    Parameter-sized tensors: the parameters, their gradients, the rule's state
    (the most any member of ``settings`` needs, since stacked state is shared
    in shape) and ``RULE_TEMPORARIES``; plus, per sample of the batch, every
    layer's output and its gradient.
    """
    params = list(model.parameters())
    itemsize = params[0].element_size()
    parameter_count = sum(param.numel() for param in params)
    declaration = declaration_of(rule)
    state = max(_state_tensors(declaration, member) for member in settings)
    per_sample = _activation_elements_per_sample(model, batch_x[:1])
    return itemsize * (parameter_count * (2 + state + RULE_TEMPORARIES) + 2 * per_sample * len(batch_x))


def _state_tensors(declaration: RuleDeclaration, member: dict) -> int:
    """Parameter-sized state tensors the rule keeps for one member with these hyperparameters,
    counted on a one-step run over a tiny parameter (some state, SGD's momentum buffer, is made
    by the first step)."""
    param = torch.zeros(2, 3)
    state = declaration.init([param], member)
    declaration.update([param], [torch.ones(2, 3)], state, **member)
    return sum(
        1 for values in state for value in values if isinstance(value, Tensor) and value.shape == param.shape
    )


def available_memory_bytes(device: torch.device) -> int | None:
    """Free memory where ``device``'s tensors live: the GPU's free memory for CUDA,
    MemAvailable of /proc/meminfo for the CPU; None where neither can be read."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as meminfo:
                for line in meminfo:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
    return None


# One chunk: members trained together from the first epoch to the last.


def _train_chunk(
    models, pending, rule, settings, batches, epochs, loss_fn, val_loader, rates, on_iteration, max_members,
    histories,
) -> list[int]:
    started = time.perf_counter()
    stack = None
    iteration = 0
    for epoch in range(epochs):
        epoch_batches = batches.of_epoch(epoch)
        first = next(epoch_batches, None)
        if first is None:
            raise GdlabError(f"fit_stacked: the training loader gave no batches in epoch {epoch}")
        if stack is None:
            size = _chunk_size(models[pending[0]], rule, [settings[index] for index in pending], max_members, first[0])
            stack = _Stack(models, pending[:size], declaration_of(rule), settings)
            batches.expect_repeats(size < len(pending))
        stack.set_learning_rates([rates[epoch][member] for member in stack.members])
        for member in stack.members:
            histories[member].epoch_learning_rate.append(rates[epoch][member])
        record = _EpochRecord(stack.members)
        for x, y in itertools.chain([first], epoch_batches):
            batches.mark(y)
            loss_values, correct = stack.forward(x, y, loss_fn)
            record.add(stack.members, loss_values, correct, len(y))
            diverged = [slot for slot, value in enumerate(loss_values) if not math.isfinite(value)]
            for slot in diverged:
                # As fit leaves a diverged run: stopped before the step, parameters as they gave the loss.
                member = stack.members[slot]
                histories[member].status = STATUS_DIVERGED
                histories[member].diverged_at_iteration = iteration
                write_member(models[member], stack.params, slot)
            if len(diverged) < len(loss_values):
                stack.step(diverged)
                if on_iteration is not None:
                    on_iteration(iteration, {
                        member: value for slot, (member, value) in enumerate(zip(stack.members, loss_values))
                        if slot not in diverged
                    })
            if diverged:
                stack.drop(diverged)
            iteration += 1
            if not stack.members:
                break
        else:
            batches.end_epoch(epoch)
        record.write(histories)
        if not stack.members:
            break
        if val_loader is not None:
            for member, metrics in zip(stack.members, stack.evaluate(val_loader, loss_fn)):
                histories[member].epoch_val_loss.append(metrics["loss"])
                histories[member].epoch_val_accuracy.append(metrics["accuracy"])
    if stack is None:  # epochs == 0: nothing trained, nothing to stack
        return list(pending)
    for slot, member in enumerate(stack.members):
        write_member(models[member], stack.params, slot)
    seconds = (time.perf_counter() - started) / len(stack.all_members)
    for member in stack.all_members:
        histories[member].seconds = seconds
    return stack.all_members


def _chunk_size(model: nn.Module, rule: Rule, pending_settings: list[dict], max_members, batch_x: Tensor) -> int:
    """How many of the pending members train together: all, unless ``max_members`` or memory say fewer."""
    size = min(len(pending_settings), max_members or sys.maxsize)
    if size > 1:
        size = min(size, _members_that_fit(model, rule, pending_settings[:size], batch_x))
    return size


class _Stack:
    """Members training together: stacked parameters, the rule's state, hyperparameters.

    A numeric hyperparameter on which all members agree is handed to the rule as
    a float (its float path, as the optimizer classes take); one that differs,
    as a tensor of one value per member.
    """

    def __init__(self, models: list[nn.Module], members: list[int], rule: RuleDeclaration, settings: list[dict]):
        self.all_members = list(members)
        self.members = list(members)  # slot order; shrinks as members diverge
        self.params = stack_parameters([models[member] for member in members])
        self.model = stacked_model(models[members[0]])
        self.rule = rule
        member_settings = [settings[member] for member in members]
        self.keywords = self._keywords(member_settings)
        self.state = rule.init(self.params, self.keywords)

    def _hyperparameter(self, values: list) -> float | bool | Tensor:
        if all(value == values[0] for value in values):
            return values[0]
        return torch.tensor(values, dtype=self.params[0].dtype, device=self.params[0].device)

    def _keywords(self, settings: list[dict]) -> Keywords:
        keywords = {}
        for key, first in settings[0].items():
            if isinstance(first, (tuple, list)):  # a pair such as betas: each entry on its own
                keywords[key] = tuple(
                    self._hyperparameter([member[key][entry] for member in settings]) for entry in range(len(first))
                )
            else:
                keywords[key] = self._hyperparameter([member[key] for member in settings])
        return keywords

    def set_learning_rates(self, rates: list[float]) -> None:
        """Each member's learning rate, in slot order."""
        self.keywords["lr"] = self._hyperparameter(rates)

    def forward(self, x: Tensor, y: Tensor, loss_fn: LossFn) -> tuple[list[float], Tensor]:
        """Every member's loss on (x, y) and its count of correct predictions (on the device);
        what ``step`` needs is kept for it."""
        with torch.no_grad():
            scores, saved = self.model.forward(self.params, x)
            losses, score_gradients = _losses_and_score_gradients(loss_fn, scores, y)
            correct = (scores.argmax(dim=-1) == y).sum(dim=1)
        self._forward = (scores, saved, y, loss_fn, score_gradients)
        return losses.tolist(), correct

    def step(self, skipped_slots: list[int]) -> None:
        """One update of every member from its own loss on the last ``forward``'s batch;
        skipped slots (members that diverged on it) feed no gradient to anyone."""
        scores, saved, y, loss_fn, score_gradients = self._forward
        self._forward = None
        kept = [slot for slot in range(len(self.members)) if slot not in skipped_slots]
        if score_gradients is None:
            score_gradients = _score_gradients(loss_fn, scores, y, kept)
        elif skipped_slots:
            score_gradients[skipped_slots] = 0
        gradients = self.model.gradients(self.params, saved, score_gradients)
        with torch.no_grad():
            self.rule.update(self.params, gradients, self.state, **self.keywords)

    def drop(self, slots: list[int]) -> None:
        """Remove members from the stack: their parameters, state and hyperparameters."""
        kept = [slot for slot in range(len(self.members)) if slot not in slots]
        index = torch.tensor(kept, dtype=torch.long, device=self.params[0].device)

        def select(value):
            # Step counters are 0-dim and shared by all members: they stay as they are.
            if isinstance(value, Tensor) and value.dim() > 0:
                return value.index_select(0, index)
            if isinstance(value, tuple):
                return tuple(select(entry) for entry in value)
            return value

        self.params = [param.index_select(0, index) for param in self.params]
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
            batch_losses = _losses_and_score_gradients(loss_fn, scores, y)[0].tolist()
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


def _losses_and_score_gradients(loss_fn: LossFn, scores: Tensor, y: Tensor) -> tuple[Tensor, Tensor | None]:
    """Every member's loss ``loss_fn(scores_k, y)``, shape (K,); and dL_k/dscores_k now when it
    comes at no extra cost (cross-entropy), else None: ``_score_gradients`` computes it."""
    if loss_fn is F.cross_entropy and scores.dim() == 3 and y.dim() == 1 and not y.is_floating_point():
        return _cross_entropy_and_score_gradients(scores, y)
    return torch.stack([loss_fn(member_scores, y) for member_scores in scores]), None


def _cross_entropy_and_score_gradients(scores: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    r"""``F.cross_entropy`` of every member and its gradient, in closed form, in one pass.

    With :math:`p_{kn} = \mathrm{softmax}(s_{kn})` for member k and sample n of N:
    :math:`L_k = -\frac1N \sum_n \log p_{kn}[y_n]` and
    :math:`\partial L_k / \partial s_{kn} = (p_{kn} - \mathrm{onehot}(y_n)) / N`.
    Equal to F.cross_entropy and its autograd gradient up to rounding (integer
    class labels 0..C-1; no ignore_index, weights or label smoothing).
    """
    members, samples = scores.shape[:2]
    log_probabilities = torch.log_softmax(scores, dim=-1)
    label_index = labels.view(1, samples, 1).expand(members, samples, 1)
    losses = log_probabilities.gather(-1, label_index).mean(dim=(1, 2)).neg_()
    minus_one = torch.full((1, 1, 1), -1.0, dtype=scores.dtype, device=scores.device)
    gradients = log_probabilities.exp_().scatter_add_(-1, label_index, minus_one.expand(members, samples, 1))
    return losses, gradients.div_(samples)


def _score_gradients(loss_fn: LossFn, scores: Tensor, y: Tensor, kept_slots: list[int]) -> Tensor:
    """dL_k/dscores_k for the kept members k (zero for the others), from one call of ``loss_fn``.

    For a loss that averages over the samples of its batch, the mean over the
    M kept members' M*N rows is the mean of their losses, so
    ``M * loss_fn(their rows, labels repeated)`` = sum_k L_k, whose gradient
    with respect to member k's scores is dL_k/dscores_k: a few small
    operations per iteration instead of M times as many.
    """
    scores = scores.detach().requires_grad_()
    kept = scores if len(kept_slots) == len(scores) else scores[kept_slots]
    labels = y.repeat(len(kept), *([1] * (y.dim() - 1)))
    with torch.enable_grad():
        (len(kept) * loss_fn(kept.flatten(0, 1), labels)).backward()
    return scores.grad


class _EpochRecord:
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


class _EpochBatches:
    """The training loader, epoch by epoch, for every chunk alike.

    A loader with ``set_epoch`` is set to epoch ``start + e`` before epoch e
    (``start``: its ``epoch`` when training began), so every chunk sees the
    batches ``fit`` would see. When members train in more than one chunk, the
    order of each epoch's labels is fingerprinted, and a chunk that saw another
    order than the first is an error rather than a silently different study.
    """

    def __init__(self, loader: Iterable):
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


def _members_that_fit(
    model: nn.Module,
    rule: Rule,
    settings: list[dict],
    batch_x: Tensor,
    safety_fraction: float = MEMORY_SAFETY_FRACTION,
    available_bytes: int | None = None,
) -> int:
    available = available_memory_bytes(batch_x.device) if available_bytes is None else available_bytes
    if available is None:
        return sys.maxsize
    return max(1, int(available * safety_fraction) // member_bytes(model, rule, settings, batch_x))


def _activation_elements_per_sample(model: nn.Module, one_sample: Tensor) -> int:
    """Elements of every leaf module's output for one sample (counted once per call)."""
    counts: list[int] = []
    leaves = [module for module in model.modules() if not list(module.children())]
    handles = [leaf.register_forward_hook(lambda module, args, output: counts.append(output.numel())) for leaf in leaves]
    try:
        with torch.no_grad():
            model(one_sample)
    finally:
        for handle in handles:
            handle.remove()
    return sum(counts)


def _check_count(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise GdlabError(f"fit_stacked: {name} must be an integer >= {minimum}, got {value!r}")


def _check_learning_rates(learning_rates: list[list[float]] | None, epochs: int, base: list[float]) -> list[list[float]]:
    """Every member's learning rate in every epoch: the given ones, checked, or its own lr throughout."""
    if learning_rates is None:
        return [list(base) for _ in range(epochs)]
    rates = [list(epoch_rates) for epoch_rates in learning_rates]
    if len(rates) < epochs:
        raise GdlabError(
            f"fit_stacked: learning_rates has {len(rates)} epochs of rates for {epochs} epochs; give one list per epoch"
        )
    for epoch, epoch_rates in enumerate(rates[:epochs]):
        if len(epoch_rates) != len(base):
            raise GdlabError(
                f"fit_stacked: learning_rates[{epoch}] has {len(epoch_rates)} rates for {len(base)} models; "
                f"give one per model"
            )
        for member, rate in enumerate(epoch_rates):
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < math.inf:
                raise GdlabError(
                    f"fit_stacked: learning_rates[{epoch}][{member}] = {rate!r} must be a finite number >= 0"
                )
    return [[float(rate) for rate in epoch_rates] for epoch_rates in rates]
