"""AdamW (Adam with decoupled weight decay): ``torch.optim.AdamW``."""

import functools

import torch

from gdlab.optim.adam import AdamW
from gdlab.optim.declaration import RuleDeclaration, flag_grid
from gdlab.optim.rules import adam
from gdlab.optim.rules._common import weight_decay

RULE = RuleDeclaration(
    name="adamw",
    optimizer=AdamW,
    reference=torch.optim.AdamW,
    init=adam.init,
    update=functools.partial(adam.update, decoupled_weight_decay=True),
    hyperparameters=tuple(
        weight_decay(1e-2) if hyperparameter.name == "weight_decay" else hyperparameter
        for hyperparameter in adam.HYPERPARAMETERS
    ),
    verify_grid=flag_grid({"lr": 0.01}, amsgrad=[False, True], weight_decay=[0.0, 0.1], maximize=[False, True]),
    variants=adam.adam_variants(decoupled=True),
    summary="Adam with decoupled weight decay",
)
