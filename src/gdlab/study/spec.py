"""A study file (TOML) turned into validated settings.

The file has top-level ``name``, ``seeds``, ``description`` and the sections
``[data]``, ``[model]``, ``[train]``, ``[optimizer]``, ``[search]``,
``[ablation]``. In the four setting sections any value given as a list
becomes a grid axis (for settings that are lists themselves, such as
``hidden`` or ``betas``, a list of lists). Every value of every axis is
validated here, before anything trains, and a mistake is reported with the
file, the section, the key and the value.
"""

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gdlab.errors import GdlabError
from gdlab.models import ACTIVATIONS
from gdlab.optim import registry
from gdlab.optim.declaration import REQUIRED
from gdlab.optim.resolve import StudyRule, resolve_rule
from gdlab.train.loop import needs_closure
from gdlab.usercode import is_target, resolve_path, target_of

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
    # How gradients are computed for a single run: torch's autograd, or gdlab's hand-written MLP
    # backward with losses kept on the device until the epoch ends (MLPs only; the rule is unchanged).
    engine: Literal["autograd", "fast"] = "autograd"
    # Mixed precision: "bf16" runs the forward pass and the loss under torch.autocast in bfloat16;
    # the parameters, their gradients and the update rule stay in `dtype` (which must be float32).
    precision: Literal["full", "bf16"] = "full"
    # How a ConvNet's weights and input batches are laid out in memory; channels_last is what
    # GPU convolution kernels (tensor cores) prefer. Convnets only.
    memory_format: Literal["contiguous", "channels_last"] = "contiguous"

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

    ``name``: a registered rule (``gdlab.optim.registry.names()``), or the
    user's own ``path/to/file.py:Class`` (relative to the study file) or
    ``package.module:Class``: a ``torch.optim.Optimizer`` subclass or a
    ``RuleDeclaration``. ``reference``: with ``implementation = "both"``, the
    registered rule a user's class is paired with. Every other key is a
    hyperparameter of the rule, checked against its declaration (or its class's
    signature); those left out take the rule's own defaults.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = "sgd"
    implementation: Literal["scratch", "torch", "both"] = "scratch"
    reference: str | None = None

    def rule(self) -> StudyRule:
        return resolve_rule(self.name, reference=self.reference)

    def given(self) -> dict[str, Any]:
        """The hyperparameters the file sets."""
        return dict(self.model_extra or {})

    def hyperparameters(self) -> dict[str, Any]:
        """Every hyperparameter of the rule, the file's values over the rule's defaults."""
        given = {key: tuple(value) if isinstance(value, list) else value for key, value in self.given().items()}
        return {**self.rule().defaults, **given}


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
        if section == "optimizer" and key not in OptimizerSpec.model_fields:
            return self.optimizer.hyperparameters().get(key)  # the rule's default where the file is silent
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


def _is_axis(section: str, key: str, value: Any) -> bool:
    """A list is an axis, except for list-typed settings, where a list of lists is."""
    if not isinstance(value, list):
        return False
    model = SETTING_SECTIONS[section]
    if section == "optimizer" and key not in model.model_fields:
        # A hyperparameter: list-typed where the rule's default is a sequence (betas).
        list_typed = isinstance(value[0], list) if value else False
    else:
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


def _check_optimizer(optimizer: OptimizerSpec, where: str, dtype: str = "float32") -> None:
    """Keys the rule does not have, and values the rule itself refuses, named with the key;
    ``dtype``: the one the rule trains in (its probe step runs in it)."""
    try:
        rule = optimizer.rule()
    except GdlabError as error:
        raise GdlabError(f"{where}: {error}") from None
    if optimizer.reference is not None and optimizer.implementation != "both":
        raise GdlabError(
            f"{where}: [optimizer] reference = {optimizer.reference!r} is read only with implementation = 'both'"
        )
    if optimizer.implementation != "scratch" and rule.reference is None:
        raise GdlabError(
            f"{where}: [optimizer] implementation = {optimizer.implementation!r} needs a reference rule to train "
            f"{optimizer.name!r} against; add reference = \"adamw\" (or another of "
            f"{', '.join(registry.names())}), or use implementation = 'scratch'"
        )
    foreign = sorted(set(optimizer.given()) - set(rule.defaults))
    if foreign:
        raise GdlabError(
            f"{where}: [optimizer] {', '.join(foreign)} does not apply to {optimizer.name!r}; "
            f"its hyperparameters are: {', '.join(rule.defaults)}"
        )
    hyperparameters = optimizer.hyperparameters()
    missing = [key for key, value in hyperparameters.items() if value is REQUIRED]
    if missing:
        raise GdlabError(
            f"{where}: [optimizer] {', '.join(missing)} is required for {optimizer.name!r}; add e.g. "
            f"{missing[0]} = 0.01"
        )
    implementations = ["scratch", "torch"] if optimizer.implementation == "both" else [optimizer.implementation]
    for implementation in implementations:
        probe = [torch.zeros(1, dtype=getattr(torch, dtype), requires_grad=True)]
        try:
            probe_optimizer = rule.build(probe, hyperparameters, implementation)
        except (ValueError, TypeError, OverflowError) as error:
            raise GdlabError(f"{where}: [optimizer] {error}") from None
        except Exception as error:  # a user's class failing in its own constructor
            raise GdlabError(
                f"{where}: [optimizer] {optimizer.name} refused these hyperparameters "
                f"({', '.join(f'{key}={value!r}' for key, value in hyperparameters.items())}): "
                f"{type(error).__name__}: {error}"
            ) from None
        _probe_step(optimizer.name, probe_optimizer, probe[0], where)


def _probe_step(name: str, probe_optimizer: torch.optim.Optimizer, param: torch.Tensor, where: str) -> None:
    """One step on a tiny dense problem, before anything trains: a rule that cannot train a
    study's model (SparseAdam needs sparse gradients) or a user's class whose step fails says so now."""

    def closure():
        probe_optimizer.zero_grad()
        loss = (param - 1.0).pow(2).sum()
        loss.backward()
        return loss

    try:
        if needs_closure(probe_optimizer):  # as gdlab.train.fit steps it
            probe_optimizer.step(closure)
        else:
            closure()
            probe_optimizer.step()
    except Exception as error:
        raise GdlabError(
            f"{where}: [optimizer] {name} fails one step on a tiny dense problem, as a study would train it "
            f"(dense gradients, step() after backward): "
            f"{type(error).__name__}: {error}"
        ) from None


def load_study(path: str | Path, optimizers: dict[str, type] | None = None) -> Study:
    """Read and validate a study file; raise GdlabError naming the key and value on any mistake.

    ``optimizers``: rules of the caller's own by the names the file uses for them
    (``{"lion": Lion}`` for ``name = "lion"``), e.g. classes defined in a notebook.
    """
    path = Path(path)
    if not path.is_file():
        raise GdlabError(f"study file {str(path)!r} not found; see experiments/ for examples")
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:
        raise GdlabError(
            f"{path}: not UTF-8 text (byte {error.start} is {error.object[error.start:error.start + 1]!r}); "
            f"TOML files are UTF-8: save it in that encoding"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise GdlabError(f"{path}: not valid TOML: {error}") from None
    return parse_study(raw, source=str(path), base_dir=path.parent, optimizers=optimizers)


def parse_study(
    raw: dict, source: str = "<study>", base_dir: str | Path | None = None, optimizers: dict[str, type] | None = None
) -> Study:
    """Validate a study read from TOML; ``base_dir`` anchors relative paths to user files
    (the study file's folder; the working folder by default); ``optimizers`` as in ``load_study``."""
    try:
        raw = _anchor_user_files(raw, Path(base_dir) if base_dir is not None else Path.cwd(), optimizers or {})
    except GdlabError as error:
        raise GdlabError(f"{source}: [optimizer] {error}") from None
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
    _check_numbers_fit(raw, base, axes, source)
    # Validate every value of every axis on its own, so the error names it.
    for dotted_key, values in axes.items():
        for value in values:
            try:
                settings = base.replace({dotted_key: value})
            except GdlabError as error:
                raise GdlabError(f"{source}: {error}") from None
            _check_combination(settings, source)
            if dotted_key.startswith("optimizer."):
                _check_optimizer(settings.optimizer, source, settings.train.dtype)
    _check_combination(base, source)
    _check_optimizer(base.optimizer, source, base.train.dtype)

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


def _check_combination(settings: "Settings", source: str) -> None:
    """Settings of different keys that cannot go together, each refused naming both and the way out."""
    train, model = settings.train, settings.model
    if train.precision == "bf16" and train.dtype != "float32":
        raise GdlabError(
            f"{source}: [train] precision = 'bf16' runs the forward pass in bfloat16 with float32 parameters, "
            f"but dtype = {train.dtype!r}; set dtype = 'float32' or precision = 'full'"
        )
    if train.precision == "bf16" and train.engine == "fast":
        raise GdlabError(
            f"{source}: [train] precision = 'bf16' needs autograd (torch.autocast), but engine = 'fast' computes "
            f"gradients by gdlab's hand-written MLP backward in full precision; set engine = 'autograd' or "
            f"precision = 'full'"
        )
    if train.memory_format == "channels_last" and model.kind != "convnet":
        raise GdlabError(
            f"{source}: [train] memory_format = 'channels_last' lays out convolution weights and image batches, "
            f"but [model] kind = {model.kind!r} has no convolutions; set memory_format = 'contiguous' or "
            f"kind = 'convnet'"
        )


def _numbers(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [value]
    if isinstance(value, (list, tuple)):
        return [number for item in value for number in _numbers(item)]
    return []


def _check_numbers_fit(raw: dict, base: Settings, axes: dict[str, list[Any]], source: str) -> None:
    """Every number the file gives the rule (in [optimizer], its axes, [[search.configs]] and the
    random search's space) is finite and fits the narrowest dtype the study trains in: lr = 1e308
    cannot become a float32, and would stop the whole study at its first step."""
    search = raw.get("search") if isinstance(raw.get("search"), dict) else {}
    configs = search.get("configs") if isinstance(search.get("configs"), list) else []
    entries = [entry for entry in configs if isinstance(entry, dict)]
    space = search.get("space") if isinstance(search.get("space"), dict) else {}
    dtypes = {base.train.dtype, *axes.get("train.dtype", [])}
    dtypes.update(value for entry in entries for key, value in entry.items() if qualify_key(key) == "train.dtype")
    dtype = "float32" if "float32" in dtypes else "float64"
    largest = torch.finfo(getattr(torch, dtype)).max
    given = list(raw.get("optimizer", {}).items()) + [
        (qualify_key(key).partition(".")[2], value)
        for key, value in [item for entry in entries for item in entry.items()] + list(space.items())
        if qualify_key(key).startswith("optimizer.")
    ]
    for key, value in given:
        for number in _numbers(value):
            if not math.isfinite(number):
                raise GdlabError(f"{source}: [optimizer] {key} = {number!r} is not a finite number; give one")
            if abs(number) > largest:
                raise GdlabError(
                    f"{source}: [optimizer] {key} = {number!r} does not fit in {dtype}, the dtype this study "
                    f"trains in (largest {largest:.3g}); use a smaller value, or dtype = \"float64\" in [train]"
                )


def _parse_plain_section(raw: dict, section: str, model: type[_Section], source: str) -> _Section:
    return _validate(model, section, raw.get(section, {}), source)


def qualify_key(key: str) -> str:
    """``lr`` -> ``optimizer.lr``; ``model.batchnorm`` stays as it is."""
    return key if "." in key else f"optimizer.{key}"


def _check_key_exists(dotted_key: str, where: str, base: "Settings | None" = None) -> None:
    """A setting's key must exist; an optimizer hyperparameter is checked against the rule itself
    (by ``_check_optimizer``, or here against ``base``'s rule where no other check follows)."""
    section, _, key = dotted_key.partition(".")
    if section == "optimizer" and key not in OptimizerSpec.model_fields:
        if base is not None and key not in base.optimizer.rule().defaults:
            raise GdlabError(
                f"{where}: {key!r} is not a hyperparameter of {base.optimizer.name!r}; "
                f"its hyperparameters are: {', '.join(base.optimizer.rule().defaults)}"
            )
        return
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
            _check_optimizer(settings.optimizer, where, settings.train.dtype)
    elif search.configs:
        raise GdlabError(f"{source}: [search] configs are only read with kind = 'list' (kind is {search.kind!r})")
    if search.kind == "random":
        if not search.space:
            raise GdlabError(f"{source}: [search] kind = 'random' needs a [search.space] table, e.g. lr = [1e-4, 1.0]")
        for key, (low, high) in search.space.items():
            _check_key_exists(qualify_key(key), f"{source}: [search.space]", base)
            if not low < high:
                raise GdlabError(f"{source}: [search.space] {key} = [{low}, {high}]: low must be below high")
            if is_log_uniform(qualify_key(key), base) and low <= 0:
                raise GdlabError(
                    f"{source}: [search.space] {key} = [{low}, {high}]: {key} is drawn log-uniformly, so low must be > 0"
                )
    elif search.space:
        raise GdlabError(f"{source}: [search] space is only read with kind = 'random' (kind is {search.kind!r})")


def is_log_uniform(dotted_key: str, settings: Settings) -> bool:
    """Whether a random search draws this setting log-uniformly: as the rule declares (lr, weight
    decay and other scales; for a user's class, lr, weight_decay and eps)."""
    section, _, key = dotted_key.partition(".")
    return section == "optimizer" and key in settings.optimizer.rule().log_uniform


def _anchor_user_files(raw: dict, base_dir: Path, optimizers: dict[str, type]) -> dict:
    """The study with every ``file.py:Class`` rule made absolute from ``base_dir`` (the study
    file's folder), so that it means the same file wherever gdlab runs, and every name given in
    ``optimizers`` replaced by the ``module:Class`` target of its object."""

    def anchored(name):
        if isinstance(name, list):
            return [anchored(item) for item in name]
        if isinstance(name, str) and name in optimizers:
            return target_of(optimizers[name], name)
        if not is_target(name):
            return name
        where, _, attribute = name.rpartition(":")
        path = resolve_path(where, base_dir)
        return name if path is None else f"{path}:{attribute}"

    raw = dict(raw)
    if isinstance(raw.get("optimizer"), dict) and "name" in raw["optimizer"]:
        raw["optimizer"] = {**raw["optimizer"], "name": anchored(raw["optimizer"]["name"])}
    search = raw.get("search")
    if isinstance(search, dict) and isinstance(search.get("configs"), list):
        search = dict(search)
        search["configs"] = [
            {**entry, "name": anchored(entry["name"])} if isinstance(entry, dict) and "name" in entry else entry
            for entry in search["configs"]
        ]
        raw["search"] = search
    return raw


def _check_ablation(ablation: AblationSpec, axes: dict[str, list], source: str) -> None:
    for factor in ablation.factors:
        _check_key_exists(factor, f"{source}: [ablation] factors")
        if factor not in axes or len(axes[factor]) != 2:
            raise GdlabError(
                f"{source}: [ablation] factor {factor!r} must be a grid axis with exactly two values, "
                f"e.g. {factor.split('.')[1]} = [true, false] in [{factor.split('.')[0]}]"
            )
