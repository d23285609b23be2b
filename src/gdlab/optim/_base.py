"""What every gdlab optimizer class shares: argument checks, state counters, closures.

The classes are ``torch.optim.Optimizer`` subclasses (so param groups,
``state_dict``, hooks and torch's LR schedulers work on them) that only hold
hyperparameters and state and hand them to one rule of
``gdlab.optim.functional``. Hyperparameters are checked for the constructor's
defaults and again for every param group, with the checks and messages torch
uses (ValueError), extended with the argument's name and what to do.
"""

import numbers
from collections.abc import Callable

import torch
from torch import Tensor
from torch.optim import Optimizer


class ScratchOptimizer(Optimizer):
    """Base of the gdlab optimizers.

    A subclass defines ``check_group(group: dict) -> None``, raising for a
    hyperparameter torch would refuse; it runs on the defaults and on every
    param group, including groups added later.
    """

    def __init__(self, params, defaults: dict):
        self.check_group(defaults)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict) -> None:
        group_hyperparameters = {key: value for key, value in param_group.items() if key != "params"}
        self.check_group({**self.defaults, **group_hyperparameters})
        super().add_param_group(param_group)

    def params_with_grad(self, group: dict) -> list[Tensor]:
        """The group's parameters that have a gradient; the others are skipped, as torch does."""
        params = [param for param in group["params"] if param.grad is not None]
        for param in params:
            if param.grad.is_sparse:
                raise RuntimeError(
                    f"{type(self).__name__} from gdlab takes dense gradients, and a parameter of "
                    f"shape {tuple(param.shape)} has a sparse one; use torch.optim.SparseAdam or "
                    f"a dense embedding (nn.Embedding(sparse=False))"
                )
        return params


def evaluate_closure(closure: Callable[[], Tensor] | None) -> Tensor | None:
    """Run ``closure`` with gradients enabled (``step`` itself runs under no_grad), as torch does."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def new_step_counter() -> Tensor:
    """A 0-dim tensor counting steps, as torch's ``state["step"]``.

    float32, or float64 when that is the default dtype (torch's
    ``_get_scalar_dtype``): a half-precision default would stop counting at
    2048, so the default dtype is followed only when it is float64.
    """
    dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
    return torch.tensor(0.0, dtype=dtype)


def check_number(name: str, value) -> None:
    if isinstance(value, Tensor):
        raise TypeError(
            f"{name}={value!r} is a tensor; gdlab's optimizer classes take Python numbers. "
            f"Tensor hyperparameters (one per stacked configuration) go to the rules in "
            f"gdlab.optim.functional"
        )
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")


def check_flag(name: str, value) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")


def check_non_negative(name: str, value, label: str) -> None:
    """``label`` is torch's wording ("learning rate", "momentum value") so torch's messages still match."""
    check_number(name, value)
    if not 0.0 <= value:  # written so that NaN fails too
        raise ValueError(f"Invalid {label}: {value} ({name} must be a number >= 0)")


def check_betas(betas) -> None:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    for index, beta in enumerate(betas):
        check_number(f"betas[{index}]", beta)
        if not 0.0 <= beta < 1.0:
            raise ValueError(
                f"Invalid beta parameter at index {index}: {beta} "
                f"(betas[{index}] must be in [0, 1), e.g. betas=(0.9, 0.999))"
            )
