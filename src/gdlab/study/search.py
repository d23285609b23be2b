"""From a study to the list of runs it asks for.

A *configuration* is one point of the search: the grid of list-valued
settings, crossed with the study's explicit list or random draws. A *run* is
a configuration trained with one seed by one implementation of the rule.
The order is deterministic, so the same file always plans the same runs under
the same ids, which is what ``--resume`` relies on.
"""

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from gdlab.study.spec import Settings, Study, is_log_uniform, qualify_key
from gdlab.usercode import is_target


@dataclass(frozen=True)
class Configuration:
    index: int
    id: str
    values: dict[str, Any]  # "section.key" -> value: what sets it apart from the base settings
    settings: Settings


@dataclass(frozen=True)
class RunPlan:
    id: str
    configuration: Configuration
    seed: int
    implementation: str  # "scratch" | "torch"

    @property
    def settings(self) -> Settings:
        return self.configuration.settings

    def config(self) -> dict[str, Any]:
        """The run's settings as a flat, readable dict for summary.json."""
        optimizer = self.settings.optimizer
        config = {"optimizer": optimizer.name, "implementation": self.implementation}
        for key, value in optimizer.hyperparameters().items():
            config[key] = list(value) if isinstance(value, tuple) else value
        for dotted_key, value in self.configuration.values.items():
            if not dotted_key.startswith("optimizer."):
                config[dotted_key] = value
        return config

    def identity(self) -> dict[str, Any]:
        """Everything that made this run, for telling a finished run of another spec from this one:
        every resolved setting (data, split, model, training, the rule with all its hyperparameters),
        the seed, the implementation, the user's rule file by SHA-256 and gdlab's version."""
        from gdlab import __version__

        settings = self.settings
        rule = settings.optimizer.rule()
        identity = {f"{section}.{key}": value for section in ("data", "model", "train")
                    for key, value in settings.section(section).model_dump().items()}
        identity.update({f"optimizer.{key}": list(value) if isinstance(value, tuple) else value
                         for key, value in settings.optimizer.hyperparameters().items()})
        identity.update({
            "optimizer.name": settings.optimizer.name,
            "optimizer.reference": settings.optimizer.reference,
            "optimizer.file_sha256": rule.sha256,
            "seed": self.seed,
            "implementation": self.implementation,
            "gdlab_version": __version__,
        })
        return identity


# Short names in configuration ids, which must fit a terminal line and a file name.
ID_ABBREVIATIONS = {
    "momentum": "mom",
    "weight_decay": "wd",
    "dampening": "damp",
    "nesterov": "nest",
    "batchnorm": "bn",
    "schedule": "sched",
    "batch_size": "batch",
    "activation": "act",
    "name": "rule",
}


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, (list, tuple)):
        return "x".join(_format_value(item) for item in value)
    if is_target(value):  # a user's rule, "path/to/file.py:Lion": its class name is what tells runs apart
        return value.rpartition(":")[2]
    return str(value)


def _draw(key: str, low: float, high: float, base: Settings, rng: np.random.Generator) -> Any:
    base_value = base.get(key)
    if is_log_uniform(key, base):
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        value = rng.uniform(low, high)
    if isinstance(base_value, int) and not isinstance(base_value, bool):
        return int(round(value))
    return float(value)


def _points(study: Study) -> list[dict[str, Any]]:
    keys = list(study.axes)
    grid = [dict(zip(keys, combination)) for combination in itertools.product(*study.axes.values())]
    search = study.search
    if search.kind == "list":
        entries = [{qualify_key(key): value for key, value in entry.items()} for entry in search.configs]
        return [{**entry, **point} for entry in entries for point in grid]
    if search.kind == "random":
        rng = np.random.default_rng(search.seed)
        draws = []
        for _ in range(search.trials):
            draw = {}
            for key, (low, high) in search.space.items():
                dotted_key = qualify_key(key)
                draw[dotted_key] = _draw(dotted_key, low, high, study.base, rng)
            draws.append(draw)
        return [{**draw, **point} for draw in draws for point in grid]
    return grid


def configurations(study: Study) -> list[Configuration]:
    points = _points(study)
    varying = [
        key
        for key in dict.fromkeys(key for point in points for key in point)
        if len({repr(point.get(key)) for point in points}) > 1
    ]
    width = max(2, len(str(len(points) - 1)))
    result = []
    for index, point in enumerate(points):
        label = "_".join(
            f"{ID_ABBREVIATIONS.get(key.split('.')[-1], key.split('.')[-1])}={_format_value(point[key])}"
            for key in varying
            if key in point
        )
        config_id = f"{index:0{width}d}" + (f"_{label}" if label else "")
        result.append(Configuration(index, config_id, point, study.base.replace(point)))
    return result


def plan_runs(study: Study) -> list[RunPlan]:
    """Every run of the study: configurations x seeds x implementations, in a fixed order."""
    plans = []
    for configuration in configurations(study):
        implementation = configuration.settings.optimizer.implementation
        implementations = ["scratch", "torch"] if implementation == "both" else [implementation]
        for seed in range(study.seeds):
            for name in implementations:
                suffix = f"_{name}" if len(implementations) > 1 else ""
                plans.append(RunPlan(f"{configuration.id}_s{seed}{suffix}", configuration, seed, name))
    return plans
