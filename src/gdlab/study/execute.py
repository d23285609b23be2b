"""Training the runs of a study: one at a time, a scratch/torch pair from one start, or stacked.

A *job* is the unit a backend hands out: a single run, a pair that must
share its initialization and batch order (``implementation = "both"``), or
runs that differ only in the rule's numbers, trained as one stacked model.
``run_job`` is a plain function of picklable inputs so that the sequential,
vectorized and Ray backends all call it.

Two pieces of process state, both explicit:

- Randomness. A run's model is initialized from its seed inside a copy of
  torch's CPU generator (`seeded`, over ``torch.random.fork_rng``), and a whole
  job draws from its own copies too, seeded by its first run: a job gives the
  same results whatever ran before it in the process, and leaves the caller's
  generators as it found them.
- Prepared data. `data_for` keeps the last ``DATA_CACHE_ENTRIES`` prepared data
  sets, each under a `DataKey` holding everything that makes it, the files it is
  read from (their paths, sizes and modification times) included: two studies in
  one process share tensors only when they would prepare the very same ones.
"""

import contextlib
import copy
import math
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from gdlab.data.sources import locate
from gdlab.errors import GdlabError
from gdlab.study.problem import (
    PreparedData,
    autocast_dtype,
    build_model,
    build_optimizer,
    build_scheduler,
    eval_loader,
    epoch_learning_rates,
    prepare_data,
    resolve_device,
    train_loader,
)
from gdlab.study.search import RunPlan
from gdlab.study.spec import DataSpec
from gdlab.train import History, evaluate, fast_fit_problem, fit, fit_fast, fit_stacked, get_loss
from gdlab.train.stacked import MemberLoaders


# on_epoch(run_ids, epochs_done, epochs): the runs ``run_ids`` (one run, or runs stacked into one
# model) finished epoch ``epochs_done`` of ``epochs``; for progress display, in this process only.
OnEpoch = Callable[[tuple[str, ...], int, int], None]


@dataclass(frozen=True)
class Job:
    kind: str  # "single" | "pair" | "stacked"
    plans: tuple[RunPlan, ...]


@dataclass
class RunOutcome:
    plan: RunPlan
    history: History
    train_metrics: dict | None  # {"loss", "accuracy"} of the final model on the training split; None if diverged
    val_metrics: dict | None
    state_dict: dict
    max_loss_difference: float | None = None


# on_done(outcomes): a job finished with these outcomes; every backend calls it as each job ends.
OnDone = Callable[[list[RunOutcome]], None]


# Prepared data sets kept at once. Each lives on the training device: CIFAR-10 in float32 is
# about 0.7 GB, so a few, enough for a study whose [data] settings form a small grid axis.
DATA_CACHE_ENTRIES = 4

FileStamp = tuple[str, int, int]  # (absolute path, size in bytes, modification time in ns)


@dataclass(frozen=True)
class DataKey:
    """Everything that makes a study's prepared data.

    ``files`` stands for ``root``: the files the dataset is read from, as the
    look-up order (``root``, ``$GDLAB_DATA``, the cache, the system folder) finds
    them now, with their sizes and modification times, so that another folder or
    a file rewritten in place is other data.
    """

    dataset: str
    files: tuple[FileStamp, ...]
    classes: tuple[str | int, ...]
    val_fraction: float
    split_seed: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_examples: int
    dtype: str
    device: str

    @classmethod
    def of(cls, data: DataSpec, device: torch.device, dtype: torch.dtype) -> "DataKey | None":
        """The key of ``data`` prepared on ``device`` in ``dtype``; None while its files are not
        found (`prepare_data` then says where it looked, or downloads them)."""
        try:
            location = locate(data.dataset, data.root)
            files = tuple(stamp for path in location.files for stamp in _file_stamps(path))
        except (GdlabError, OSError):
            return None
        return cls(
            dataset=data.dataset, files=files, classes=tuple(data.classes), val_fraction=data.val_fraction,
            split_seed=data.split_seed, mean=tuple(data.mean), std=tuple(data.std),
            train_examples=data.train_examples, dtype=str(dtype).removeprefix("torch."), device=str(device),
        )


def _file_stamps(path: Path) -> list[FileStamp]:
    """(path, size, mtime) of the file, or of every file in the folder (CIFAR's extracted batches)."""
    paths = sorted(child for child in path.iterdir() if child.is_file()) if path.is_dir() else [path]
    stamps = []
    for file in paths:
        status = os.stat(file)
        stamps.append((str(file.resolve()), status.st_size, status.st_mtime_ns))
    return stamps


class PreparedDataCache:
    """Prepared data by `DataKey`, the ``entries`` most recently used kept."""

    def __init__(self, entries: int = DATA_CACHE_ENTRIES):
        if entries < 1:
            raise ValueError(f"a data cache holds at least 1 entry, got entries={entries}")
        self.entries = entries
        self._kept: OrderedDict[DataKey, PreparedData] = OrderedDict()

    def __len__(self) -> int:
        return len(self._kept)

    def keys(self) -> list[DataKey]:
        """The keys held, least recently used first."""
        return list(self._kept)

    def clear(self) -> None:
        self._kept.clear()

    def get(self, data: DataSpec, device: torch.device, dtype: torch.dtype) -> PreparedData:
        key = DataKey.of(data, device, dtype)
        if key is None:
            return prepare_data(data, device, dtype)
        if key in self._kept:
            self._kept.move_to_end(key)
            return self._kept[key]
        prepared = prepare_data(data, device, dtype)
        self._kept[key] = prepared
        while len(self._kept) > self.entries:
            self._kept.popitem(last=False)
        return prepared


DATA_CACHE = PreparedDataCache()


def data_for(plan: RunPlan) -> PreparedData:
    """The run's prepared data: made once per `DataKey` and kept in ``DATA_CACHE``."""
    train = plan.settings.train
    return DATA_CACHE.get(plan.settings.data, resolve_device(train.device), getattr(torch, train.dtype))


@contextlib.contextmanager
def seeded(seed: int, device: torch.device = torch.device("cpu")):
    """torch's generators for the CPU and ``device`` set to ``seed`` inside, and put back as they
    were afterwards: draws inside depend on the seed alone, draws outside never on what ran inside."""
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        for index in cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


def new_model(plan: RunPlan, data: PreparedData) -> torch.nn.Module:
    """The run's model, initialized from its seed (on the CPU, then moved): the same seed gives
    the same start, and the caller's random state is left as it was."""
    with seeded(plan.seed):
        model = build_model(plan.settings.model, data.input_shape, data.num_classes)
    model = model.to(device=data.train_x.device, dtype=data.train_x.dtype)
    if plan.settings.train.memory_format == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    return model


def finish_run(plan: RunPlan, model: torch.nn.Module, history: History, data: PreparedData) -> RunOutcome:
    """Final figures of a trained model; a diverged run gets none rather than fake ones."""
    if history.diverged:
        train_metrics = val_metrics = None
    else:
        train = plan.settings.train
        train_metrics = evaluate(
            model, eval_loader(data.train_x, data.train_y, train), get_loss(train.loss), autocast_dtype(train)
        )
        val_metrics = {"loss": history.epoch_val_loss[-1], "accuracy": history.epoch_val_accuracy[-1]}
    state_dict = {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()}
    return RunOutcome(plan, history, train_metrics, val_metrics, state_dict)


def train_run(
    plan: RunPlan, data: PreparedData, model: torch.nn.Module | None = None, on_epoch: OnEpoch | None = None
) -> RunOutcome:
    settings = plan.settings
    model = model if model is not None else new_model(plan, data)
    optimizer = build_optimizer(settings.optimizer, model.parameters(), plan.implementation)
    trainer = fit
    if settings.train.engine == "fast":
        problem = fast_fit_problem(model, optimizer)
        if problem is not None:
            raise GdlabError(f"[train] engine = 'fast': {problem}; or set engine = 'autograd'")
        trainer = fit_fast  # both halves of a pair take it: one gradient path, so the pair stays equal
    # Mixed precision is fit's (autocast); the study refuses it with engine = 'fast'.
    precision = {} if settings.train.precision == "full" else {"autocast": autocast_dtype(settings.train)}
    history = trainer(
        model,
        optimizer,
        train_loader(data, settings.train, plan.seed),
        epochs=settings.train.epochs,
        loss_fn=get_loss(settings.train.loss),
        val_loader=eval_loader(data.val_x, data.val_y, settings.train),
        scheduler=build_scheduler(settings.train, optimizer),
        on_epoch=None if on_epoch is None else lambda epoch, _: on_epoch((plan.id,), epoch + 1, settings.train.epochs),
        **precision,
    )
    return finish_run(plan, model, history, data)


def max_loss_difference(first: History, second: History) -> float:
    """Largest per-iteration training-loss difference; infinite if one stopped earlier.

    Losses that are equal, or both NaN (runs that diverged together), differ by 0.
    """
    if len(first.iteration_loss) != len(second.iteration_loss):
        return math.inf

    def gap(a: float, b: float) -> float:
        if a == b or (math.isnan(a) and math.isnan(b)):
            return 0.0
        difference = abs(a - b)
        return math.inf if math.isnan(difference) else difference

    return max(map(gap, first.iteration_loss, second.iteration_loss), default=0.0)


def run_pair(
    scratch: RunPlan, reference: RunPlan, data: PreparedData, on_epoch: OnEpoch | None = None
) -> list[RunOutcome]:
    """Scratch and torch rule from one initialization and one batch order."""
    model = new_model(scratch, data)
    twin = copy.deepcopy(model)
    outcomes = [train_run(scratch, data, model, on_epoch), train_run(reference, data, twin, on_epoch)]
    difference = max_loss_difference(outcomes[0].history, outcomes[1].history)
    for outcome in outcomes:
        outcome.max_loss_difference = difference
    return outcomes


def run_stacked(plans: list[RunPlan], data: PreparedData, on_epoch: OnEpoch | None = None) -> list[RunOutcome]:
    """Runs that differ only in the rule's numbers and their seed, trained as one stacked model:
    each run on its seed's batch order (one loader per seed, shared by that seed's runs)."""
    train = plans[0].settings.train
    by_seed = {seed: train_loader(data, train, seed) for seed in dict.fromkeys(plan.seed for plan in plans)}
    loader = next(iter(by_seed.values()))
    loaders = loader if len(by_seed) == 1 else MemberLoaders([by_seed[plan.seed] for plan in plans])
    run_ids = tuple(plan.id for plan in plans)

    def count_epochs(iteration: int, losses: dict) -> None:
        # fit_stacked reports iterations; an epoch ends every len(loader) of them.
        if (iteration + 1) % len(loader) == 0:
            on_epoch(run_ids, (iteration + 1) // len(loader), train.epochs)

    models = [new_model(plan, data) for plan in plans]
    hyperparameters = [plan.settings.optimizer.hyperparameters() for plan in plans]
    histories = fit_stacked(
        models,
        plans[0].settings.optimizer.rule().declaration,
        hyperparameters,
        loaders,
        epochs=train.epochs,
        loss_fn=get_loss(train.loss),
        val_loader=eval_loader(data.val_x, data.val_y),
        learning_rates=epoch_learning_rates(train, [settings["lr"] for settings in hyperparameters]),
        on_iteration=None if on_epoch is None else count_epochs,
    )
    return [finish_run(plan, model, history, data) for plan, model, history in zip(plans, models, histories)]


def test_metrics(plan: RunPlan, state_dict: dict) -> dict:
    """A finished run's model, rebuilt from its saved parameters, on the test set."""
    data = data_for(plan)
    model = new_model(plan, data)
    model.load_state_dict(state_dict)
    train = plan.settings.train
    return evaluate(model, eval_loader(data.test_x, data.test_y, train), get_loss(train.loss), autocast_dtype(train))


def run_job(job: Job, on_epoch: OnEpoch | None = None) -> list[RunOutcome]:
    data = data_for(job.plans[0])
    # Whatever draws from torch's global generators while the job trains (a user's rule may)
    # draws from the job's own copies, seeded by its first run: the same in any process or order.
    with seeded(job.plans[0].seed, data.train_x.device):
        if job.kind == "pair":
            return run_pair(job.plans[0], job.plans[1], data, on_epoch)
        if job.kind == "stacked":
            return run_stacked(list(job.plans), data, on_epoch)
        return [train_run(plan, data, on_epoch=on_epoch) for plan in job.plans]
