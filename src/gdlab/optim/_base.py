"""What every gdlab optimizer class shares: argument checks, state counters, closures.

The classes are ``torch.optim.Optimizer`` subclasses (so param groups,
``state_dict``, hooks and torch's LR schedulers work on them) that only hold
hyperparameters and state and hand them to one rule of
``gdlab.optim.functional``. Hyperparameters are checked for the constructor's
defaults and again for every param group, with the checks and messages torch
uses (ValueError), extended with the argument's name and what to do.

As in torch, a hyperparameter may be a 1-element tensor (an lr that a
scheduler rewrites in place, Adam's betas): the classes store it as given and
hand the rules ``torch.optim.optimizer._to_scalar`` of it (a 0-dim tensor),
which the rules treat exactly as torch's single-tensor path does. Tensors of
K values (K stacked configurations) are for the functional rules only.
"""

import numbers
from collections.abc import Callable, Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer

try:  # torch's own conversion (torch >= 2.6); the same function otherwise
    from torch.optim.optimizer import _to_scalar as to_scalar
except ImportError:  # pragma: no cover - older torch

    def to_scalar(x):
        """A 1-element tensor as a 0-dim tensor; anything else as it is (torch's ``_to_scalar``)."""
        if isinstance(x, Tensor) and x.dim() != 0:
            return x.squeeze()
        return x


# torch's implementation switches. gdlab has one implementation, torch's
# single-tensor one: ``foreach`` is accepted (and stored, as torch stores it)
# but has no effect; the others, when True, ask for something gdlab does not do.
UNSUPPORTED_WHEN_TRUE = ("capturable", "differentiable", "fused")


def _without_dynamo_guard(method: Callable) -> Callable:
    """torch's ``Optimizer`` method as written, without its ``torch._disable_dynamo`` wrapper.

    The wrapper keeps ``torch.compile`` from tracing the method, and imports
    ``torch._dynamo`` on its first call to do so: about 1 s on a 2-core CPU, paid
    by every process that builds an optimizer (a small study's whole training
    takes about as long). Called eagerly, the wrapped method does the same work.
    """
    return getattr(method, "__wrapped__", method)


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
        _without_dynamo_guard(Optimizer.add_param_group)(self, param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        _without_dynamo_guard(Optimizer.zero_grad)(self, set_to_none)

    def state_dict(self) -> dict:
        return _without_dynamo_guard(Optimizer.state_dict)(self)

    def load_state_dict(self, state_dict: dict) -> None:
        _without_dynamo_guard(Optimizer.load_state_dict)(self, state_dict)

    def params_with_grad(self, group: dict, *, sparse: bool = False) -> list[Tensor]:
        """The group's parameters that have a gradient; the others are skipped, as torch does.

        A sparse gradient is refused (RuntimeError, torch's wording) unless
        ``sparse=True``: the rule then handles it as torch's does.
        """
        params = [param for param in group["params"] if param.grad is not None]
        if not sparse:
            for param in params:
                if param.grad.is_sparse:
                    name = type(self).__name__
                    raise RuntimeError(
                        f"{name} does not support sparse gradients: a parameter of shape "
                        f"{tuple(param.shape)} has one (gdlab's {name}, like torch's, takes dense "
                        f"gradients); use SparseAdam, SGD or Adagrad, or a dense embedding "
                        f"(nn.Embedding(sparse=False))"
                    )
        return params

    def restore_group_defaults(self, group_defaults: dict, *, step_dtype_follows_fused: bool = False) -> None:
        """What torch's ``__setstate__`` does after ``load_state_dict`` (or unpickling).

        An older or foreign state dict may lack group keys that later torch
        versions added (``maximize``, ``foreach``, ``capturable``, ``differentiable``,
        ``fused`` ...): each missing key gets ``group_defaults``'s value. A ``step``
        saved as a Python number becomes a 0-dim tensor, as the rules count in one.
        """
        for group in self.param_groups:
            for key, value in group_defaults.items():
                group.setdefault(key, value)
            fused = bool(group.get("fused")) if step_dtype_follows_fused else False
            for param in group["params"]:
                state = self.state.get(param, {})
                if len(state) != 0 and "step" in state and not torch.is_tensor(state["step"]):
                    state["step"] = torch.tensor(float(state["step"]), dtype=scalar_dtype(fused))


def scalar_dtype(fused: bool = False) -> torch.dtype:
    """torch's ``_get_scalar_dtype``: float32, or float64 when that is the default dtype."""
    if fused:
        return torch.float32
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


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
    return torch.tensor(0.0, dtype=scalar_dtype())


def scalars(group: dict, names: Iterable[str]) -> dict:
    """The group's hyperparameters ``names`` as the rules take them: each 1-element
    tensor as a 0-dim tensor (torch's ``_to_scalar``), numbers as they are."""
    return {name: to_scalar(group[name]) for name in names}


def check_number(name: str, value) -> None:
    """A real number, or a 1-element real tensor (as torch accepts for lr and betas)."""
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"Tensor {name} must be 1-element: got shape {tuple(value.shape)}; an optimizer class "
                f"takes one value per param group (tensors of one value per stacked configuration "
                f"go to the rules in gdlab.optim.functional)"
            )
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name} must be a real number, got a {value.dtype} tensor")
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")


def check_flag(name: str, value) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")


def check_optional_flag(name: str, value) -> None:
    """None (torch chooses), True or False: ``foreach`` and ``fused``."""
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"{name} must be None, True or False, got {value!r} ({type(value).__name__})")


def check_implementation(group: dict) -> None:
    """torch's implementation switches present in ``group``: ``foreach`` is accepted and
    ignored; ``capturable``, ``differentiable`` or ``fused`` set to True are refused."""
    if "foreach" in group:
        check_optional_flag("foreach", group["foreach"])
    for name in UNSUPPORTED_WHEN_TRUE:
        if name not in group:
            continue
        if name == "fused":
            check_optional_flag(name, group[name])
        else:
            check_flag(name, group[name])
        if group[name]:
            raise ValueError(
                f"{name}=True is not supported: gdlab runs torch's single-tensor rule "
                f"(the foreach=False implementation) only; leave {name} unset or False"
            )


def check_tensor_hyperparameters_with_foreach(group: dict, names: Iterable[str]) -> None:
    """torch refuses a tensor lr (or betas) with foreach=True unless capturable
    (its foreach kernels take numbers); gdlab ignores foreach, but refuses the
    same inputs with the same message, so code behaves the same on both."""
    if not group.get("foreach") or group.get("capturable"):
        return
    for name in names:
        if isinstance(group.get(name), Tensor):
            raise ValueError(f"{name} as a Tensor is not supported for capturable=False and foreach=True")


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
    if isinstance(betas[0], Tensor) != isinstance(betas[1], Tensor):
        raise ValueError(
            f"betas must be either both floats or both Tensors, got {betas!r} "
            f"(give both as numbers, or both as 1-element tensors)"
        )


class DeclaredOptimizer(ScratchOptimizer):
    """A gdlab optimizer whose step is its rule's declared pure ``init``/``update``.

    A subclass names them as ``rule_init = staticmethod(init)``, ``rule_update =
    staticmethod(update)`` and ``rule_state = MyState`` (the NamedTuple whose fields are
    torch's per-parameter state keys). Each parameter's state is made by ``init`` at its first
    step and kept in ``self.state`` under torch's keys, so ``state_dict`` moves between gdlab
    and torch; the class, the stacked backend and the checker thus build state the same way.
    """

    rule_init: Callable
    rule_update: Callable
    rule_state: type

    @torch.no_grad()
    def step(self, closure=None):
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            check_implementation(group)  # a loaded state_dict may have set capturable/differentiable
            hparams = {key: value for key, value in group.items() if key != "params"}
            params = self.params_with_grad(group)
            self.rule_update(params, [param.grad for param in params], self.rule_state_of(params, hparams), **hparams)
        return loss

    def rule_state_of(self, params: list[Tensor], hparams: dict):
        """The state lists of ``params`` (a ``rule_state``); a parameter's state is made at its first step."""
        for param in params:
            if not self.state[param]:
                initial = self.rule_init([param], hparams)._asdict()
                self.state[param].update({key: values[0] for key, values in initial.items()})
        return self.rule_state(*([self.state[param][key] for param in params] for key in self.rule_state._fields))
