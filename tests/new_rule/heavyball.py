"""A new rule in one file, as a researcher adds one: the classic heavy-ball momentum.

    v <- mu * v - lr * g        (v starts at 0)
    theta <- theta + v

With ``$GDLAB_RULE_PATH`` naming this folder, gdlab registers it everywhere:
study files (``name = "heavyball"``), the vectorized backend (the update takes
each number as one value per stacked member), ``gdlab check --against
heavyball`` and ``gdlab verify``.
"""

from typing import NamedTuple

import torch
from torch import Tensor

from gdlab.optim.declaration import Hyperparameter, RuleDeclaration


def _per_member(value, param: Tensor):
    """A number, or one value per stacked member viewed against the parameter's first dimension."""
    if isinstance(value, Tensor) and value.dim() > 0:
        return value.view((-1,) + (1,) * (param.dim() - 1))
    return value


class HeavyBallState(NamedTuple):
    velocity: list[Tensor]


def init(params, hparams) -> HeavyBallState:
    return HeavyBallState([torch.zeros_like(param) for param in params])


def update(params, grads, state: HeavyBallState, *, lr, momentum, **_):
    for param, grad, velocity in zip(params, grads, state.velocity):
        velocity.mul_(_per_member(momentum, param)).sub_(grad * _per_member(lr, param))
        param.add_(velocity)


class HeavyBall(torch.optim.Optimizer):
    def __init__(self, params, lr=0.01, momentum=0.9):
        if lr < 0:
            raise ValueError(f"Invalid learning rate: {lr}")
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [param for param in group["params"] if param.grad is not None]
            for param in params:
                if "velocity" not in self.state[param]:
                    self.state[param]["velocity"] = torch.zeros_like(param)
            state = HeavyBallState([self.state[param]["velocity"] for param in params])
            update(params, [param.grad for param in params], state, lr=group["lr"], momentum=group["momentum"])
        return loss


RULE = RuleDeclaration(
    name="heavyball",
    optimizer=HeavyBall,
    reference=None,
    reference_source="Polyak 1964; the lr-inside-the-velocity form courses teach",
    init=init,
    update=update,
    hyperparameters=(
        Hyperparameter("lr", 0.01, log_uniform=True, label="learning rate"),
        Hyperparameter("momentum", 0.9),
    ),
    verify_grid=({"lr": 0.05}, {"lr": 0.05, "momentum": 0.5}),
    summary="heavy-ball momentum, lr inside the velocity",
)
