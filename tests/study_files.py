"""Small study files for tests: real mnist-5k data, tiny networks, a second or two per study."""

import textwrap
from pathlib import Path

TINY_STUDY = """
name = "tiny"
seeds = {seeds}

[data]
dataset = "mnist-5k"
val_fraction = 0.2
split_seed = 123
train_examples = 600

[model]
kind = "mlp"
hidden = [16]
activation = "relu"

[train]
epochs = {epochs}
batch_size = 64

[optimizer]
name = "sgd"
implementation = "{implementation}"
lr = {lr}
momentum = {momentum}
{extra}
"""


def write_study(
    folder: Path,
    *,
    seeds: int = 1,
    epochs: int = 2,
    implementation: str = "scratch",
    lr: str = "[0.05, 0.2]",
    momentum: str = "0.0",
    extra: str = "",
    name: str = "tiny.toml",
) -> Path:
    path = folder / name
    path.write_text(
        TINY_STUDY.format(
            seeds=seeds,
            epochs=epochs,
            implementation=implementation,
            lr=lr,
            momentum=momentum,
            extra=textwrap.dedent(extra),
        )
    )
    return path
