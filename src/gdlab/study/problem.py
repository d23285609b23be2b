"""What a run trains on and with: prepared data, the model, the optimizer, the schedule.

Data is prepared (load, split train/validation with ``split_seed``, keep the
chosen classes, normalize with the given or the training split's statistics)
onto the device as float tensors; `gdlab.study.execute.data_for` keeps it for
reuse, so every run of a study slices the same tensors.
"""

import math
from dataclasses import dataclass

import torch

import gdlab.data
import gdlab.optim
from gdlab.data import TensorLoader
from gdlab.errors import GdlabError
from gdlab.models import MLP, ConvNet
from gdlab.study.spec import DataSpec, ModelSpec, OptimizerSpec, TrainSpec

EVAL_BATCH_SIZE = 1000


@dataclass(frozen=True)
class PreparedData:
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple[str, ...]
    source: str

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GdlabError(f"[train] device = {name!r} but CUDA is not available here; use device = 'auto' or 'cpu'")
    return device


def prepare_data(data: DataSpec, device: torch.device, dtype: torch.dtype) -> PreparedData:
    """The ``[data]`` section's data on ``device`` in ``dtype``, read from its files every call."""
    try:
        dataset = gdlab.data.load(data.dataset, root=data.root, download=data.download)
    except GdlabError as error:
        hint = "" if data.download else "\nIn a study file: set download = true in [data], or root = \"/path/to/data\"."
        raise GdlabError(f"{error}{hint}") from None
    train, val = gdlab.data.split_train_val(dataset.train, data.val_fraction, data.split_seed)
    test = dataset.test
    classes = list(dataset.classes)
    if data.classes:
        train, kept = gdlab.data.select_classes(train, data.classes, dataset.classes)
        val, _ = gdlab.data.select_classes(val, data.classes, dataset.classes)
        test, _ = gdlab.data.select_classes(test, data.classes, dataset.classes)
        classes = list(kept)
    if data.train_examples:
        train = type(train)(train.x[: data.train_examples], train.y[: data.train_examples])
    if len(train) == 0:
        raise GdlabError(f"[data] leaves no training examples (dataset {data.dataset!r}, classes {data.classes})")
    channels = train.x.shape[1]
    if data.mean or data.std:
        if len(data.mean) != channels or len(data.std) != channels:
            raise GdlabError(
                f"[data] mean = {data.mean} and std = {data.std} must have one value per channel "
                f"({channels} for {data.dataset!r})"
            )
        mean, std = tuple(data.mean), tuple(data.std)
    else:
        mean, std = gdlab.data.channel_stats(train.x)

    def prepare(split):
        x = gdlab.data.normalize(split.x, mean, std, dtype=dtype, device=device)
        return x, split.y.to(device)

    train_x, train_y = prepare(train)
    val_x, val_y = prepare(val)
    test_x, test_y = prepare(test)
    return PreparedData(
        train_x, train_y, val_x, val_y, test_x, test_y, tuple(classes), dataset.source
    )


def build_model(spec: ModelSpec, input_shape: tuple[int, ...], num_classes: int) -> torch.nn.Module:
    inputs = math.prod(input_shape)
    if spec.kind == "mlp":
        return MLP([inputs, *spec.hidden, num_classes], activation=spec.activation, init=spec.init)
    if spec.kind == "linear":
        return MLP([inputs, num_classes], activation=spec.activation, init=spec.init)
    channels, height, width = input_shape
    if height != width:
        raise GdlabError(f"[model] kind = 'convnet' needs square images, got {height}x{width}")
    return ConvNet(
        batchnorm=spec.batchnorm,
        num_classes=num_classes,
        in_channels=channels,
        image_size=height,
        width=spec.width,
        init=spec.init,
    )


def build_optimizer(spec: OptimizerSpec, parameters, implementation: str) -> torch.optim.Optimizer:
    """The rule under study ("scratch": gdlab's own, or the user's class), or its reference
    ("torch": torch's single-tensor implementation of the same rule, or the rule a user's class
    is paired with)."""
    return spec.rule().build(parameters, spec.hyperparameters(), implementation)


def build_scheduler(spec: TrainSpec, optimizer: torch.optim.Optimizer):
    schedules = torch.optim.lr_scheduler
    if spec.schedule == "step":
        return schedules.StepLR(optimizer, step_size=spec.step_size, gamma=spec.gamma)
    if spec.schedule == "multistep":
        return schedules.MultiStepLR(optimizer, milestones=spec.milestones, gamma=spec.gamma)
    if spec.schedule == "exponential":
        return schedules.ExponentialLR(optimizer, gamma=spec.gamma)
    if spec.schedule == "cosine":
        return schedules.CosineAnnealingLR(optimizer, T_max=spec.t_max or spec.epochs, eta_min=spec.eta_min)
    return None


def epoch_learning_rates(spec: TrainSpec, base_lrs: list[float]) -> list[list[float]] | None:
    """The learning rate of each of several runs in each epoch under the schedule, as torch's
    scheduler sets it (one param group per run): for training them stacked."""
    if spec.schedule == "none":
        return None
    # gdlab's SGD, not torch's: torch's imports torch._dynamo on first use (about 1 s), for no schedule's sake.
    probe = gdlab.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)], "lr": lr} for lr in base_lrs])
    scheduler = build_scheduler(spec, probe)
    if scheduler is None:
        return None
    rates = []
    for _ in range(spec.epochs):
        rates.append([group["lr"] for group in probe.param_groups])
        probe.step()
        scheduler.step()
    return rates


def train_loader(data: PreparedData, spec: TrainSpec, seed: int) -> TensorLoader:
    steps = []
    if spec.augment == "hflip":
        steps.append(gdlab.data.random_horizontal_flip)
    if spec.memory_format == "channels_last":
        steps.append(_channels_last)

    def transform(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for step in steps:
            x = step(x, generator)
        return x

    return TensorLoader(
        data.train_x, data.train_y, batch_size=spec.batch_size, shuffle=True, seed=seed,
        transform=transform if steps else None,
    )


def eval_loader(x: torch.Tensor, y: torch.Tensor, spec: TrainSpec | None = None) -> TensorLoader:
    """Batches of (x, y) in order, laid out as ``spec`` trains (``memory_format``)."""
    layout = _channels_last if spec is not None and spec.memory_format == "channels_last" else None
    return TensorLoader(x, y, batch_size=EVAL_BATCH_SIZE, shuffle=False, transform=layout)


def _channels_last(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    # A gathered batch comes out contiguous whatever its source's layout: lay each one out anew.
    return x.contiguous(memory_format=torch.channels_last)


def autocast_dtype(spec: TrainSpec) -> torch.dtype | None:
    """The dtype the forward pass runs in under ``precision``; None for full precision."""
    return torch.bfloat16 if spec.precision == "bf16" else None
