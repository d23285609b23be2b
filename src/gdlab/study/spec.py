"""A study file (TOML) turned into validated settings.

The file has top-level ``name``, ``seeds``, ``description`` and the sections
``[data]``, ``[model]``, ``[train]``, ``[optimizer]``, ``[search]``,
``[ablation]``. In the four setting sections any value given as a list
becomes a grid axis (for settings that are lists themselves, such as
``hidden`` or ``betas``, a list of lists). Every value of every axis is
validated here, before anything trains, and a mistake is reported with the
file, the section, the key and the value.
"""

import inspect
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gdlab.errors import GdlabError
from gdlab.models import ACTIVATIONS

# The rules a study can name, as (gdlab class name, torch.optim class name).
RULES = {
    "sgd": "SGD",
    "adam": "Adam",
    "adamw": "AdamW",
    "rmsprop": "RMSprop",
    "adagrad": "Adagrad",
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSpec(_Section):
    dataset: Literal["mnist-5k", "mnist", "fashion-mnist", "cifar10"] = "mnist-5k"
    classes: list[str | int] = []
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    split_seed: int = 123
    # Per-channel statistics in [0, 1] units; empty = computed on the training split.
    mean: list[float] = []
    std: list[float] = []
    # 0 = all; otherwise the first N of the (randomly ordered) training split, for CPU-sized studies.
    train_examples: int = Field(0, ge=0)
    root: str | None = None
    download: bool = False

    @field_validator("std")
    @classmethod
    def _positive_std(cls, std):
        if any(value <= 0 for value in std):
            raise ValueError(f"every std must be > 0, got {std}")
        return std


class ModelSpec(_Section):
    kind: Literal["mlp", "linear", "convnet"] = "mlp"
    hidden: list[int] = [100, 100]
    activation: str = "relu"
    init: Literal["torch", "normal_fan_in"] = "torch"
    batchnorm: bool = True  # convnet only
    width: int = Field(100, ge=1)  # convnet only: channels of the hidden convolutions

    @field_validator("activation")
    @classmethod
    def _known_activation(cls, name):
        if name not in ACTIVATIONS:
            raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
        return name

    @field_validator("hidden")
    @classmethod
    def _positive_hidden(cls, hidden):
        if any(size < 1 for size in hidden):
            raise ValueError(f"hidden layer sizes must be >= 1, got {hidden}")
        return hidden


class TrainSpec(_Section):
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(128, ge=1)
    loss: Literal["cross_entropy", "nll", "mse"] = "cross_entropy"
    schedule: Literal["none", "step", "multistep", "exponential", "cosine"] = "none"
    step_size: int = Field(5, ge=1)  # step
    gamma: float = Field(0.1, gt=0.0)  # step, multistep, exponential
    milestones: list[int] = []  # multistep
    t_max: int = Field(0, ge=0)  # cosine; 0 = the number of epochs
    eta_min: float = Field(0.0, ge=0.0)  # cosine
    augment: Literal["none", "hflip"] = "none"
    device: str = "auto"
    dtype: Literal["float32", "float64"] = "float32"

    @field_validator("device")
    @classmethod
    def _known_device(cls, device):
        if device != "auto":
            try:
                torch.device(device)
            except RuntimeError as error:
                raise ValueError(f"not a torch device ({error}); use auto, cpu or cuda") from None
        return device


class OptimizerSpec(_Section):
    """The rule, which implementation trains it, and its hyperparameters.

    Hyperparameters left out take the rule's own defaults (those of
    ``gdlab.optim``'s classes, which are torch's).
    """

    name: Literal["sgd", "adam", "adamw", "rmsprop", "adagrad"] = "sgd"
    implementation: Literal["scratch", "torch", "both"] = "scratch"
    lr: float | None = None
    momentum: float | None = None
    dampening: float | None = None
    weight_decay: float | None = None
    nesterov: bool | None = None
    maximize: bool | None = None
    betas: tuple[float, float] | None = None
    eps: float | None = None
    amsgrad: bool | None = None
    alpha: float | None = None
    centered: bool | None = None
    lr_decay: float | None = None
    initial_accumulator_value: float | None = None

    def hyperparameters(self) -> dict[str, Any]:
        """Every hyperparameter of the rule, the file's values over the rule's defaults."""
        defaults = rule_defaults(self.name)
        given = {key: getattr(self, key) for key in defaults if getattr(self, key) is not None}
        return {**defaults, **given}


class SearchSpec(_Section):
    """How configurations are chosen, beyond the grid of list-valued settings.

    ``grid``: only the grid. ``list``: each entry of ``configs`` is one
    configuration (keys are optimizer hyperparameters, or ``section.key``),
    crossed with the grid. ``random``: ``trials`` draws from ``space``
    (``key = [low, high]``; log-uniform for lr and weight_decay, uniform
    otherwise), seeded by ``seed``, crossed with the grid.
    """

    kind: Literal["grid", "list", "random"] = "grid"
    configs: list[dict[str, Any]] = []
    trials: int = Field(10, ge=1)
    seed: int = 0
    space: dict[str, tuple[float, float]] = {}


class AblationSpec(_Section):
    """Factors to compare, each a two-valued grid axis named as ``section.key``.

    The effect of a factor is test accuracy at its first value minus at its
    second (True before False for switches), paired by seed.
    """

    factors: list[str] = []


SETTING_SECTIONS: dict[str, type[_Section]] = {
    "data": DataSpec,
    "model": ModelSpec,
    "train": TrainSpec,
    "optimizer": OptimizerSpec,
}
TOP_LEVEL_KEYS = ("name", "description", "seeds")
ALL_SECTIONS = (*SETTING_SECTIONS, "search", "ablation")


@dataclass(frozen=True)
class Settings:
    """Everything one configuration trains with (no axes left)."""

    data: DataSpec
    model: ModelSpec
    train: TrainSpec
    optimizer: OptimizerSpec

    def section(self, name: str) -> _Section:
        return getattr(self, name)

    def get(self, dotted_key: str) -> Any:
        section, key = dotted_key.split(".")
        return getattr(self.section(section), key)

    def replace(self, values: dict[str, Any]) -> "Settings":
        """A copy with ``{"section.key": value}`` applied, validated."""
        by_section: dict[str, dict[str, Any]] = {}
        for dotted_key, value in values.items():
            section, key = dotted_key.split(".")
            by_section.setdefault(section, {})[key] = value
        sections = {}
        for name in SETTING_SECTIONS:
            current = self.section(name)
            if name in by_section:
                merged = {**current.model_dump(exclude_unset=True), **by_section[name]}
                current = _validate_section(name, merged, where=None)
            sections[name] = current
        return Settings(**sections)


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    seeds: int
    base: Settings
    axes: dict[str, list[Any]]  # "section.key" -> values, in file order
    search: SearchSpec
    ablation: AblationSpec
    source: str = ""


def rule_defaults(rule: str) -> dict[str, Any]:
    """The hyperparameters of ``gdlab.optim``'s class for ``rule`` and their defaults."""
    import gdlab.optim

    cls = getattr(gdlab.optim, RULES[rule])
    parameters = inspect.signature(cls.__init__).parameters
    # The positional-or-keyword arguments are the contract's (DESIGN.md); keyword-only
    # extras (Adam's decoupled_weight_decay, which AdamW is) are not study settings.
    return {
        name: (None if parameter.default is inspect.Parameter.empty else parameter.default)
        for name, parameter in parameters.items()
        if name not in ("self", "params") and parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    }


def _is_axis(section: str, key: str, value: Any) -> bool:
    """A list is an axis, except for list-typed settings, where a list of lists is."""
    if not isinstance(value, list):
        return False
    model = SETTING_SECTIONS[section]
    annotation = str(model.model_fields[key].annotation) if key in model.model_fields else ""
    list_typed = annotation.startswith(("list", "tuple")) or "tuple[" in annotation
    if list_typed:
        return len(value) > 0 and all(isinstance(item, list) for item in value)
    return True


def _describe_error(model: type[_Section], section: str, error: dict, where: str | None) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "?"
    prefix = f"{where}: " if where else ""
    if error["type"] == "extra_forbidden":
        valid = ", ".join(model.model_fields)
        return f"{prefix}unknown key {key!r} in [{section}]; valid keys are: {valid}"
    value = error.get("input")
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return f"{prefix}[{section}] {key} = {value!r}: {message}"


def _validate(model: type[_Section], section: str, values: dict, where: str | None) -> _Section:
    """``values`` as ``model``; every mistake named with the section, key and value."""
    try:
        return model.model_validate(values)
    except ValidationError as error:
        raise GdlabError(
            "\n".join(_describe_error(model, section, item, where) for item in error.errors())
        ) from None


def _validate_section(section: str, values: dict, where: str | None) -> _Section:
    return _validate(SETTING_SECTIONS[section], section, values, where)


def _check_optimizer(optimizer: OptimizerSpec, where: str) -> None:
    """Keys the rule does not have, and values the rule itself refuses, named with the key."""
    import gdlab.optim

    defaults = rule_defaults(optimizer.name)
    given = optimizer.model_dump(exclude_none=True, exclude={"name", "implementation"})
    foreign = sorted(set(given) - set(defaults))
    if foreign:
        raise GdlabError(
            f"{where}: [optimizer] {', '.join(foreign)} does not apply to {optimizer.name!r}; "
            f"its hyperparameters are: {', '.join(defaults)}"
        )
    hyperparameters = optimizer.hyperparameters()
    if hyperparameters.get("lr") is None:
        raise GdlabError(f"{where}: [optimizer] lr is required for {optimizer.name!r}; add e.g. lr = 0.01")
    try:
        getattr(gdlab.optim, RULES[optimizer.name])([torch.zeros(1, requires_grad=True)], **hyperparameters)
    except (ValueError, TypeError) as error:
        raise GdlabError(f"{where}: [optimizer] {error}") from None


def load_study(path: str | Path) -> Study:
    """Read and validate a study file; raise GdlabError naming the key and value on any mistake."""
    path = Path(path)
    if not path.is_file():
        raise GdlabError(f"study file {str(path)!r} not found; see experiments/ for examples")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise GdlabError(f"{path}: not valid TOML: {error}") from None
    return parse_study(raw, source=str(path))


def parse_study(raw: dict, source: str = "<study>") -> Study:
    unknown = sorted(set(raw) - set(TOP_LEVEL_KEYS) - set(ALL_SECTIONS))
    if unknown:
        raise GdlabError(
            f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; top-level keys are "
            f"{', '.join(TOP_LEVEL_KEYS)} and the sections {', '.join(f'[{s}]' for s in ALL_SECTIONS)}"
        )
    name = raw.get("name", Path(source).stem)
    if not isinstance(name, str) or not name or any(char in name for char in "/\\"):
        raise GdlabError(f"{source}: name = {name!r} must be a non-empty string without slashes")
    seeds = raw.get("seeds", 1)
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise GdlabError(f"{source}: seeds = {seeds!r} must be a whole number >= 1 (runs per configuration)")

    base_values: dict[str, dict] = {}
    axes: dict[str, list[Any]] = {}
    for section in SETTING_SECTIONS:
        values = raw.get(section, {})
        if not isinstance(values, dict):
            raise GdlabError(f"{source}: [{section}] must be a table, got {values!r}")
        base_values[section] = {}
        for key, value in values.items():
            if _is_axis(section, key, value):
                if len(value) == 0:
                    raise GdlabError(f"{source}: [{section}] {key} = []: an axis needs at least one value")
                axes[f"{section}.{key}"] = value
                base_values[section][key] = value[0]
            else:
                base_values[section][key] = value
    base = Settings(
        **{section: _validate_section(section, base_values[section], source) for section in SETTING_SECTIONS}
    )
    # Validate every value of every axis on its own, so the error names it.
    for dotted_key, values in axes.items():
        for value in values:
            try:
                settings = base.replace({dotted_key: value})
            except GdlabError as error:
                raise GdlabError(f"{source}: {error}") from None
            if dotted_key.startswith("optimizer."):
                _check_optimizer(settings.optimizer, source)
    _check_optimizer(base.optimizer, source)

    search = _parse_plain_section(raw, "search", SearchSpec, source)
    ablation = _parse_plain_section(raw, "ablation", AblationSpec, source)
    _check_search(search, base, source)
    _check_ablation(ablation, axes, source)
    return Study(
        name=name,
        description=str(raw.get("description", "")),
        seeds=seeds,
        base=base,
        axes=axes,
        search=search,
        ablation=ablation,
        source=source,
    )


def _parse_plain_section(raw: dict, section: str, model: type[_Section], source: str) -> _Section:
    return _validate(model, section, raw.get(section, {}), source)


def qualify_key(key: str) -> str:
    """``lr`` -> ``optimizer.lr``; ``model.batchnorm`` stays as it is."""
    return key if "." in key else f"optimizer.{key}"


def _check_key_exists(dotted_key: str, where: str) -> None:
    section, _, key = dotted_key.partition(".")
    if section not in SETTING_SECTIONS or key not in SETTING_SECTIONS[section].model_fields:
        raise GdlabError(
            f"{where}: {dotted_key!r} is not a setting; use an optimizer hyperparameter (lr, momentum, ...) "
            f"or section.key with section one of {', '.join(SETTING_SECTIONS)}"
        )


def _check_search(search: SearchSpec, base: Settings, source: str) -> None:
    if search.kind == "list":
        if not search.configs:
            raise GdlabError(f"{source}: [search] kind = 'list' needs [[search.configs]] entries, one per configuration")
        for number, config in enumerate(search.configs, start=1):
            where = f"{source}: [[search.configs]] entry {number}"
            qualified = {}
            for key, value in config.items():
                _check_key_exists(qualify_key(key), where)
                qualified[qualify_key(key)] = value
            try:
                settings = base.replace(qualified)
            except GdlabError as error:
                raise GdlabError(f"{where}: {error}") from None
            _check_optimizer(settings.optimizer, where)
    elif search.configs:
        raise GdlabError(f"{source}: [search] configs are only read with kind = 'list' (kind is {search.kind!r})")
    if search.kind == "random":
        if not search.space:
            raise GdlabError(f"{source}: [search] kind = 'random' needs a [search.space] table, e.g. lr = [1e-4, 1.0]")
        for key, (low, high) in search.space.items():
            _check_key_exists(qualify_key(key), f"{source}: [search.space]")
            if not low < high:
                raise GdlabError(f"{source}: [search.space] {key} = [{low}, {high}]: low must be below high")
            if key.rsplit(".", 1)[-1] in LOG_UNIFORM_KEYS and low <= 0:
                raise GdlabError(
                    f"{source}: [search.space] {key} = [{low}, {high}]: {key} is drawn log-uniformly, so low must be > 0"
                )
    elif search.space:
        raise GdlabError(f"{source}: [search] space is only read with kind = 'random' (kind is {search.kind!r})")


LOG_UNIFORM_KEYS = ("lr", "weight_decay", "eps")


def _check_ablation(ablation: AblationSpec, axes: dict[str, list], source: str) -> None:
    for factor in ablation.factors:
        _check_key_exists(factor, f"{source}: [ablation] factors")
        if factor not in axes or len(axes[factor]) != 2:
            raise GdlabError(
                f"{source}: [ablation] factor {factor!r} must be a grid axis with exactly two values, "
                f"e.g. {factor.split('.')[1]} = [true, false] in [{factor.split('.')[0]}]"
            )
