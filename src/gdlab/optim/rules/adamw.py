"""AdamW (Adam with decoupled weight decay): ``torch.optim.AdamW``."""

import functools

import torch

from gdlab.optim.adam import AdamW
from gdlab.optim.declaration import RuleDeclaration
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
    verify_grid=adam.VERIFY_GRID,
    summary="Adam with decoupled weight decay",
)
