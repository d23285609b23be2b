"""gdlab's own loop around an update function or an Optimizer class, one call per step.

An update function is what a tutorial has people write inside their loop:
``momentum_update(loss, params, grad_vel, lr, beta)`` (Neuromatch),
``sgd_momentum(params, states, hyperparams)`` (d2l), ``manual_sgd_step(model,
lr, momentum, weight_decay, momentum_buffer)``. gdlab plays the loop:

- whoever calls ``backward`` zeroes the gradients first. A function that
  takes the loss (or the batch) computes its own gradients, so gdlab leaves
  ``p.grad`` alone and a missing ``zero_grad`` in it shows; for any other,
  gdlab computes fresh gradients before each call, as the loop around it would;
- state lists (``grad_vel``, ``states``, ``momentum_buffer``) are made once
  and handed back at every call: one zero tensor per parameter, or ``None``
  per parameter where the code tests ``is None``, or a tuple of zero tensors
  per parameter where it unpacks several (d2l's Adam: ``(v, s)``), or a dict;
  the first call tells which (`STATE_LAYOUTS`);
- a dict of hyperparameters (`HyperparameterDict`) answers gdlab's names and
  the usual spellings (d2l's RMSprop reads ``hyperparams['gamma']``), and a
  step counter ``t`` it does not hold starts at 1, as d2l's does;
- a function that returns new parameters instead of changing them in place
  (``return [p - lr * g ...]``, or ``(params, state)``) has them written back.

An Optimizer class is built on ``model.parameters()`` with the
hyperparameters under its own ``__init__`` names and stepped in the standard
loop: ``zero_grad(); loss.backward(); step()`` (with a closure when ``step``
takes one).

Both loops draw batches from the same `ObservedLoader` as a training
function, so every step is observed, judged and diagnosed the same way.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from gdlab.check.binding import SPELLINGS, Binding, _component_names, normalize
from gdlab.check.loading import CannotCheck, describe_exception, source_file
from gdlab.check.observe import ObservedLoader

STEP_COUNTER_KEYS = ("t", "step", "timestep", "time_step", "iteration", "n_iter", "step_count")


class HyperparameterDict(dict):
    """The hyperparameters as a dict, as d2l passes them: ``hyperparams['lr']``.

    Holds the rule's values under gdlab's names; a key it does not hold is
    looked up as a usual spelling (``gamma`` is RMSprop's alpha), an entry of
    a pair (``beta1``), or a step counter (``t``, stored as 1 the first time
    and then the function's to advance). Every key read is recorded, so the
    check knows which hyperparameters the code uses.
    """

    def __init__(self, hparams: Mapping[str, Any]):
        super().__init__(hparams)
        self.names = tuple(hparams)
        self.read: set[str] = set()
        self.aliases: dict[str, str] = {}

    def _resolve(self, key):
        if not isinstance(key, str):
            return None
        normal = normalize(key)
        if normal in STEP_COUNTER_KEYS:
            return ("step",)
        for canonical, spellings in SPELLINGS.items():
            if canonical in self.names and normal in spellings:
                return (canonical,)
        for name in self.names:
            value = dict.get(self, name)
            if isinstance(value, tuple) and len(value) == 2:
                for index, spellings in enumerate(_component_names(name)):
                    if normal in spellings:
                        return (name, index)
        return None

    def __getitem__(self, key):
        if dict.__contains__(self, key):
            if key in self.names:
                self.read.add(key)
            return dict.__getitem__(self, key)
        return self.__missing__(key)

    def __missing__(self, key):
        found = self._resolve(key)
        if found is None:
            raise KeyError(key)
        if found == ("step",):
            self[key] = 1
            self.aliases[key] = "the step count"
            return 1
        self.read.add(found[0])
        self.aliases[key] = found[0] + (f"[{found[1]}]" if len(found) == 2 else "")
        value = dict.__getitem__(self, found[0])
        return value[found[1]] if len(found) == 2 else value

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default

    def setdefault(self, key, default=None):
        """cs231n's ``config.setdefault("learning_rate", 1e-2)``: a hyperparameter (under any usual
        spelling) keeps gdlab's value; the code's own state and step counter start as it says."""
        found = None if dict.__contains__(self, key) else self._resolve(key)
        if found is None or found == ("step",):
            if not dict.__contains__(self, key):
                dict.__setitem__(self, key, default)
            return dict.__getitem__(self, key)
        return self[key]

    def __contains__(self, key):
        return dict.__contains__(self, key) or self._resolve(key) is not None


# How the state lists an update function keeps can be laid out, tried in order until its first
# call runs: the order is adjusted to what its source shows (`state_layouts`).
STATE_LAYOUTS = ("zeros", "none", "dict")


def state_layouts(function: Callable) -> list[str]:
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        source = ""
    if re.search(r"\bis\s+None\b|==\s*None\b", source):
        return ["none", "zeros", "dict"]
    return list(STATE_LAYOUTS)


def make_state(layout: str, params: list[torch.Tensor]):
    if layout == "zeros":
        return [torch.zeros_like(param) for param in params]
    if layout == "none":
        return [None for _ in params]
    if layout == "dict":
        return {}
    count = int(layout.removeprefix("tuples of "))
    return [tuple(torch.zeros_like(param) for _ in range(count)) for param in params]


def describe_layout(layout: str) -> str:
    return {
        "zeros": "one zero tensor per parameter",
        "none": "None for each parameter",
        "dict": "an empty dict",
    }.get(layout, f"a tuple of {layout.removeprefix('tuples of ')} zero tensors per parameter")


class FirstCallFailed(Exception):
    """The update function raised at its first call: perhaps the state is laid out otherwise."""

    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error


@dataclass
class UpdateRun:
    """What gdlab's loop around an update function did, for the report."""

    layout: str | None = None
    returned_parameters: bool = False
    computes_own_gradients: bool = False
    numpy_arrays: bool = False  # one parameter at a time, handed over as numpy arrays
    hyperparameter_dict: HyperparameterDict | None = None
    notes: list[str] = field(default_factory=list)


def _is_parameter_list(value, params) -> bool:
    return (
        isinstance(value, (list, tuple)) and len(value) == len(params) and len(params) > 0
        and all(isinstance(item, torch.Tensor) and item.shape == param.shape for item, param in zip(value, params))
    )


def run_update_function(
    function: Callable, binding: Binding, model, loss_fn, loader: ObservedLoader, hparams: Mapping[str, Any],
    epochs: int, layout: str | None, lr_at: Callable[[int], float] | None = None,
) -> UpdateRun:
    """Call ``function`` once per batch for ``epochs`` passes over ``loader`` (see the module docstring).

    ``lr_at(step)`` gives the learning rate of each step (from 1), as a scheduler would; without it
    the learning rate stays ``hparams["lr"]``.
    """
    run = UpdateRun(layout=layout)
    params = list(model.parameters())
    state_slots = [slot.name for slot in binding.roles("state")]
    states = {name: make_state(layout, params) for name in state_slots} if state_slots else {}
    takes_batch = binding.role("x") is not None
    run.computes_own_gradients = binding.role("loss") is not None or takes_batch
    hyperparameter_dict = HyperparameterDict(hparams) if binding.role("hparams") else None
    run.hyperparameter_dict = hyperparameter_dict
    # One parameter at a time (cs231n): one dict per parameter, kept from step to step with its state.
    per_parameter = binding.role("weight") is not None
    configs = [HyperparameterDict(hparams) for _ in params] if per_parameter and hyperparameter_dict is not None else []
    if configs:
        run.hyperparameter_dict = configs[0]
    step = 0
    for _ in range(epochs):
        for x, y in loader:
            step += 1
            step_hparams = {**hparams, "lr": lr_at(step)} if lr_at is not None else hparams
            if hyperparameter_dict is not None and lr_at is not None:
                dict.__setitem__(hyperparameter_dict, "lr", step_hparams["lr"])
            values: dict[str, Any] = {
                "model": model, "params": params, "loss_fn": loss_fn, "x": x, "y": y, "step": step,
                "hparams": hyperparameter_dict, "device": torch.device("cpu"), "batch_size": len(y), **states,
            }
            # An update that takes the batch size divides by it: hand it the summed loss's gradients.
            # The check's batches hold a power of two of samples, so that scaling is exact.
            summed = len(y) if binding.role("batch_size") is not None else 1
            with torch.enable_grad():
                if binding.role("loss") is not None:
                    values["loss"] = loss_fn(model(x), y) * summed
                elif not takes_batch:
                    for param in params:
                        param.grad = None
                    (loss_fn(model(x), y) * summed).backward()
            if binding.role("grads") is not None:
                values["grads"] = [param.grad for param in params]
            if per_parameter:
                _call_per_parameter(function, binding, values, step_hparams, params, configs, step, run)
                continue
            args, kwargs = binding.arguments(values, step_hparams)
            _take_result(_call(function, args, kwargs, step), params, states, state_slots, run)
    return run


def _call(function: Callable, args: list, kwargs: dict, step: int):
    """``function(*args, **kwargs)``; what it raises at the first step is a FirstCallFailed (the call
    itself may be what is wrong), later the exception itself."""
    try:
        return function(*args, **kwargs)
    except Exception as error:
        if step == 1:
            raise FirstCallFailed(error) from None
        raise


def _call_per_parameter(function, binding: Binding, values: dict, step_hparams: Mapping[str, Any], params,
                        configs: list, step: int, run: UpdateRun) -> None:
    """One call per parameter, as cs231n's Solver makes them: ``next_w, config = rule(w, dw, config)``.

    ``w`` is the parameter itself (detached: an in-place ``w -= ...`` updates it), ``dw`` its
    gradient; a returned ``next_w`` (a tensor or a numpy array) is written back into the parameter
    and a returned dict is that parameter's config from then on.
    """
    as_numpy = run.numpy_arrays = uses_numpy(function)
    for index, param in enumerate(params):
        # numpy code (cs231n's is) gets numpy arrays: views of the parameter and its gradient.
        weight = param.detach().numpy() if as_numpy else param.detach()
        gradient = param.grad.detach().numpy() if as_numpy else param.grad
        call_values = {**values, "weight": weight, "weight_grad": gradient}
        if configs:
            if "lr" in step_hparams:
                dict.__setitem__(configs[index], "lr", step_hparams["lr"])
            call_values["hparams"] = configs[index]
        args, kwargs = binding.arguments(call_values, step_hparams)
        result = _call(function, args, kwargs, step)
        if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict):
            result, config = result
            if configs and config is not configs[index]:
                configs[index] = config if isinstance(config, HyperparameterDict) else _kept(config, configs[index])
        if result is None or result is weight or result is param:
            continue
        run.returned_parameters = True
        with torch.no_grad():
            param.copy_(torch.as_tensor(result, dtype=param.dtype, device=param.device).reshape(param.shape))


def uses_numpy(function: Callable) -> bool:
    """Whether ``function``'s own code names the numpy module (``np.zeros_like(w)``)."""
    code = getattr(function, "__code__", None)
    names = set(code.co_names) if code is not None else set()
    return any(name in names and getattr(value, "__name__", None) == "numpy"
               for name, value in getattr(function, "__globals__", {}).items())


def _kept(config: dict, previous: "HyperparameterDict") -> "HyperparameterDict":
    """A new dict the function returned, still answering gdlab's hyperparameters under their spellings."""
    kept = HyperparameterDict({name: dict.__getitem__(previous, name) for name in previous.names})
    kept.read, kept.aliases = previous.read, previous.aliases
    for key, value in config.items():
        dict.__setitem__(kept, key, value)
    return kept


def _take_result(result, params, states: dict, state_slots: list[str], run: UpdateRun) -> None:
    """Write returned parameters (and state) back, for functions that return them instead of updating in place."""
    new_state = None
    if _is_parameter_list(result, params):
        new_params = result
    elif isinstance(result, tuple) and result and _is_parameter_list(result[0], params):
        new_params, new_state = result[0], result[1:]
    else:
        return
    run.returned_parameters = True
    with torch.no_grad():
        for param, new in zip(params, new_params):
            if new is not param:
                param.copy_(new)
    if new_state is not None and len(new_state) == len(state_slots):
        for name, value in zip(state_slots, new_state):
            states[name] = value


def run_optimizer_class(
    cls: type, binding: Binding, model, loss_fn, loader: ObservedLoader, hparams: Mapping[str, Any], epochs: int,
    lr_at: Callable[[int], float] | None = None,
):
    """Build ``cls`` on the model's parameters and step it in the standard loop; ``lr_at(step)`` sets
    every param group's ``lr`` before each step, as torch's schedulers do."""
    args, kwargs = binding.arguments({"params": model.parameters()}, hparams)
    try:
        optimizer = cls(*args, **kwargs)
    except Exception as error:
        raise CannotCheck(
            f"building {binding.describe_call({'params': 'model.parameters()'}, hparams)} raised an exception, "
            f"so it cannot be checked:\n" + describe_exception(error, source_file(cls.__init__))
        ) from None
    try:
        takes_closure = "closure" in inspect.signature(optimizer.step).parameters
    except (TypeError, ValueError):
        takes_closure = False
    step = 0
    for _ in range(epochs):
        for x, y in loader:
            step += 1
            if lr_at is not None:
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step)

            def closure(x=x, y=y):
                optimizer.zero_grad()
                with torch.enable_grad():
                    loss = loss_fn(model(x), y)
                    loss.backward()
                return loss

            closure()
            if takes_closure:
                optimizer.step(closure)
            else:
                optimizer.step()
    return optimizer
