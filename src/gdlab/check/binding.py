"""What each parameter of the user's function is, read from its name.

People write ``train(n_epochs, model, loss_fn, train_loader, lr)``, but also
``train(lr, weight_decay, momentum, model, criterion, train_loader, val_loader,
device, num_epochs)``, ``momentum_update(loss, params, grad_vel, lr, beta)``
and ``sgd_momentum(params, states, hyperparams)``. gdlab reads each
parameter's name and takes it to be

- a *role*: something gdlab hands over (the number of epochs, the model, the
  loss function, a loader, the device, an optimizer; for an update function
  the loss, the parameters, their gradients, a state list, the step count, a
  dict of hyperparameters, the batch);
- a *hyperparameter* of the rule checked against, under its own name
  (``lr``), a usual spelling (``learning_rate``, ``eta``; ``mu``, ``beta``;
  ``wd``, ``l2``, ``lambda_`` ...) or one entry of a pair (``beta1``);
- or nothing, when it has a default: it is left at it.

Order does not matter. ``binds={"NAME": "ROLE_OR_HYPERPARAMETER"}`` (``--bind
NAME=ROLE``) settles any other name. A parameter nothing fills is an error
that lists every parameter and what gdlab took it to be.

Which kind of function it is follows from its roles: one with a training
loader (or a number of epochs) is a training function that runs its own
loop; any other is an update function, called by gdlab once per step.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from gdlab.check.loading import CannotCheck
from gdlab.check.rules import Rule, format_value

TRAINING = "training function"
UPDATE = "update function"
OPTIMIZER = "Optimizer class"


@dataclass(frozen=True)
class Role:
    """Something gdlab hands to the user's code, and the names people give it."""

    name: str
    meaning: str
    spellings: tuple[str, ...]


_TRAINING_ROLES = (
    Role("n_epochs", "the number of epochs", (
        "epochs", "n_epochs", "num_epochs", "nb_epochs", "n_epoch", "num_epoch", "epoch_count", "epochs_count",
        "max_epochs", "epochs_num", "number_of_epochs", "total_epochs", "nepochs", "num_epochs_to_train",
    )),
    Role("model", "the model", ("model", "net", "network", "mlp", "module", "classifier", "nn_model")),
    Role("loss_fn", "the loss function", (
        "loss_fn", "loss_func", "loss_function", "lossfn", "loss_fcn", "criterion", "criterium", "loss",
        "cost_fn", "cost_function", "objective",
    )),
    Role("train_loader", "the training loader", (
        "train_loader", "loader", "dataloader", "data_loader", "train_dataloader", "trainloader", "train_dl",
        "train_iter", "data_iter", "train_data", "training_loader", "train_batches", "batches", "dl",
    )),
    Role("val_loader", "a validation loader", (
        "val_loader", "valid_loader", "validation_loader", "val_dataloader", "valid_dataloader", "val_dl",
        "valid_dl", "val_iter", "valid_iter", "test_loader", "test_dataloader", "test_iter", "eval_loader",
        "dev_loader", "val_data", "test_data", "valloader", "testloader",
    )),
    Role("device", "the device (the CPU)", ("device", "dev")),
    Role("optimizer", "an optimizer: the reference's own, over the model's parameters", ("optimizer", "opt", "optim", "optimiser")),
)

_UPDATE_ROLES = (
    Role("loss", "the loss of the batch (its gradient not yet computed)", (
        "loss", "l", "cost", "objective", "loss_value", "batch_loss",
    )),
    Role("params", "the model's parameters (a list)", (
        "params", "parameters", "param_list", "params_list", "parameter_list", "model_params", "weights", "theta",
        "param", "ps",
    )),
    Role("grads", "their gradients (a list)", (
        "grads", "gradients", "grad_list", "grads_list", "dparams", "param_grads", "grad", "gs",
    )),
    Role("model", "the model", ("model", "net", "network", "mlp", "module")),
    Role("loss_fn", "the loss function", ("loss_fn", "loss_func", "loss_function", "criterion", "lossfn")),
    Role("x", "the batch's inputs", ("x", "inputs", "input", "imgs", "images", "data", "xb", "batch_x", "features")),
    Role("y", "the batch's labels", ("y", "labels", "label", "targets", "target", "y_true", "yb", "batch_y")),
    Role("step", "the step count (1 at the first step)", (
        "t", "step", "steps", "timestep", "time_step", "iteration", "iter", "it", "n_iter", "step_count", "n_step",
    )),
    Role("hparams", "the hyperparameters as a dict", (
        "hyperparams", "hparams", "hyperparameters", "hyper_params", "hp", "hps", "config", "cfg", "settings",
        "opt_params", "optim_params",
    )),
    Role("state", "optimizer state: one tensor per parameter, kept from step to step", (
        "state", "states", "v", "m", "s", "h", "r", "u", "vel", "vels", "velocity", "velocities", "cache", "caches",
    )),
    Role("device", "the device (the CPU)", ("device", "dev")),
    # cs231n's update rules, sgd(w, dw, config), take one parameter at a time (its Solver calls them
    # once per parameter, with one config dict per parameter that also keeps the rule's state).
    Role("weight", "one parameter: gdlab calls the function once per parameter at every step", (
        "w", "weight", "w_i", "param_i",
    )),
    Role("weight_grad", "that parameter's gradient", ("dw", "dweight", "grad_w", "dw_i", "dparam", "grad_param")),
    # d2l's sgd(params, lr, batch_size) divides gradients of the loss summed over the batch
    # (its loops call l.sum().backward()): with this role, gdlab hands over such gradients.
    Role("batch_size", "the batch size; the gradients (and a loss) gdlab hands over are then of the loss summed "
         "over the batch, as d2l's l.sum().backward() makes them, for the update to divide", (
             "batch_size", "batchsize", "bs", "minibatch_size", "mini_batch_size", "n_batch", "batch_len",
         )),
)

_OPTIMIZER_ROLES = (
    Role("params", "the model's parameters", (
        "params", "parameters", "param_groups", "model_params", "param_list", "parameter_list",
    )),
)

ROLES = {TRAINING: _TRAINING_ROLES, UPDATE: _UPDATE_ROLES, OPTIMIZER: _OPTIMIZER_ROLES}

# Parts of names that mark an update function's state lists (grad_vel, momentum_buffer, grad_sq, exp_avg ...).
_STATE_MARKS = ("state", "buf", "vel", "moment", "cache", "accum", "sq", "avg", "hist", "lst", "list", "mom_")

# Usual spellings of the hyperparameters, by the declarations' names. A spelling applies only to
# a rule that has that hyperparameter and does not use the spelling for another one (RMSprop's
# alpha is not its lr); where two names share a spelling, the first listed here wins.
SPELLINGS: dict[str, tuple[str, ...]] = {
    "lr": ("learning_rate", "learningrate", "eta", "step_size", "stepsize", "lr_rate", "base_lr", "init_lr",
           "alpha", "lrate", "learn_rate"),
    "alpha": ("gamma", "rho", "decay_rate", "smoothing", "smoothing_constant", "beta", "sq_decay"),
    "momentum": ("mu", "beta", "mom", "c_mom", "momentum_coef", "momentum_factor", "gamma", "rho", "m_coef"),
    "weight_decay": ("wd", "l2", "lambda", "lambd", "lmbda", "lam", "w_decay", "weightdecay", "l2_reg",
                     "l2_penalty", "decay", "reg", "weight_decay_rate", "l2_lambda", "l2_coef", "reg_lambda",
                     "wdecay"),
    "dampening": ("damp", "dampening_factor"),
    "nesterov": ("use_nesterov", "nesterov_momentum"),
    "eps": ("epsilon", "eps_hat", "delta", "fuzz", "fudge"),
    "betas": (),
    "amsgrad": ("ams", "use_amsgrad"),
    "centered": ("center", "centred"),
    "lr_decay": ("lrdecay", "learning_rate_decay"),
    "initial_accumulator_value": ("initial_accumulator", "init_acc", "init_accumulator", "initial_value"),
    "maximize": ("maximise", "ascent"),
}

# Extra spellings of one entry of a pair (Adam's betas as b1 and b2).
_PAIR_SPELLINGS = {"betas": (("b1", "beta_1"), ("b2", "beta_2"))}


def normalize(name: str) -> str:
    return name.strip("_").lower()


@dataclass(frozen=True)
class Slot:
    """One parameter of the user's function and what gdlab took it to be."""

    name: str
    kind: Any  # inspect.Parameter.kind
    default: Any
    role: str | None = None
    hyperparameter: str | None = None
    component: int | None = None  # which entry of a pair (beta1 -> 0)
    how: str = ""

    @property
    def has_default(self) -> bool:
        return self.default is not inspect.Parameter.empty

    @property
    def filled(self) -> bool:
        return self.role is not None or self.hyperparameter is not None

    def taken_as(self, entry: str) -> str:
        if self.role is not None:
            meaning = next(role.meaning for role in ROLES[entry] if role.name == self.role)
            return f"{self.role}: {meaning}"
        if self.hyperparameter is not None:
            part = f" (entry {self.component + 1} of the pair)" if self.component is not None else ""
            return f"hyperparameter {self.hyperparameter}{part}"
        if self.has_default:
            return f"nothing gdlab knows; left at its default {self.default!r}"
        return "nothing gdlab knows, and it has no default"


@dataclass(frozen=True)
class Binding:
    """What every parameter of the function (or the class's ``__init__``) is, and how to call it."""

    name: str
    entry: str
    signature: str
    slots: tuple[Slot, ...]
    takes_kwargs: bool
    rule: Rule
    notes: tuple[str, ...] = field(default_factory=tuple)
    # Defaults the code writes into its hyperparameter dict (cs231n: config.setdefault("momentum", 0.9)),
    # by hyperparameter (a pair's entries by index): the code's own defaults, as a parameter's are.
    dict_defaults: tuple[tuple[str, int | None, Any], ...] = ()

    def role(self, role: str) -> Slot | None:
        return next((slot for slot in self.slots if slot.role == role), None)

    def roles(self, role: str) -> list[Slot]:
        return [slot for slot in self.slots if slot.role == role]

    def receivers(self, hyperparameter: str) -> list[Slot]:
        return [slot for slot in self.slots if slot.hyperparameter == hyperparameter]

    def received(self) -> set[str]:
        """Hyperparameters the function takes: by a parameter, or all of them through ``**kwargs`` or the
        optimizer it is given."""
        if self.takes_kwargs or self.role("optimizer") is not None:
            return set(self.rule.names())
        return {slot.hyperparameter for slot in self.slots if slot.hyperparameter is not None}

    def own_defaults(self) -> dict[str, Any]:
        """The function's own default for each hyperparameter it takes (pairs from both entries): a
        parameter's default, else one its code writes into its hyperparameter dict."""
        found: dict[str, Any] = {}
        for name in self.rule.names():
            defaults = [(slot.component, slot.default) for slot in self.receivers(name)
                        if slot.has_default and slot.default is not None]
            defaults = defaults or [(component, value) for hyper, component, value in self.dict_defaults
                                    if hyper == name]
            if not defaults:
                continue
            if self.rule.kind(name) == "pair" and all(component is not None for component, _ in defaults):
                entries = dict(defaults)
                if set(entries) == {0, 1}:
                    found[name] = (entries[0], entries[1])
            elif defaults[0][0] is None:
                found[name] = defaults[0][1]
        return found

    def arguments(self, values: Mapping[str, Any], hparams: Mapping[str, Any]) -> tuple[list, dict]:
        """Positional and keyword arguments for a call.

        ``values`` gives what each role receives, by the parameter's own name
        first (each state list is its own) and then by role; ``hparams`` the
        hyperparameters. Leading roles go by position, as people call them;
        the rest by keyword; parameters gdlab does not fill keep their defaults.
        """
        args: list = []
        kwargs: dict = {}
        positional = True
        for slot in self.slots:
            if slot.role is not None:
                value = values[slot.name] if slot.name in values else values[slot.role]
            elif slot.hyperparameter is not None:
                value = hparams[slot.hyperparameter]
                if slot.component is not None:
                    value = value[slot.component]
            elif slot.kind is inspect.Parameter.POSITIONAL_ONLY and positional:
                args.append(slot.default)
                continue
            else:
                positional = False
                continue
            by_position = slot.kind is inspect.Parameter.POSITIONAL_ONLY or (
                slot.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and slot.role is not None
            )
            if positional and by_position:
                args.append(value)
            else:
                positional = False
                kwargs[slot.name] = value
        if self.takes_kwargs:
            for name in self.rule.names():
                if not self.receivers(name):
                    kwargs.setdefault(name, hparams[name])
        return args, kwargs

    def describe_call(self, placeholders: Mapping[str, str], hparams: Mapping[str, Any]) -> str:
        """The call as text: leading roles by position, then hyperparameters (in the rule's order), then other roles."""
        order = {name: index for index, name in enumerate(self.rule.names())}
        shown: list[str] = []
        keywords: list[tuple[tuple[int, int, int], str]] = []
        positional = True
        for position, slot in enumerate(self.slots):
            if slot.role is not None:
                text = placeholders.get(slot.role, slot.name)
                key = (len(order), 0, position)
            elif slot.hyperparameter is not None:
                value = hparams[slot.hyperparameter]
                text = format_value(value[slot.component] if slot.component is not None else value)
                key = (order[slot.hyperparameter], slot.component or 0, position)
            else:
                positional = False
                continue
            if positional and slot.role is not None and slot.kind is not inspect.Parameter.KEYWORD_ONLY:
                shown.append(text)
            else:
                positional = False
                keywords.append((key, f"{slot.name}={text}"))
        if self.takes_kwargs:
            for name in self.rule.names():
                if not self.receivers(name):
                    keywords.append(((order[name], 0, -1), f"{name}={format_value(hparams[name])}"))
        shown += [text for _, text in sorted(keywords)]
        return f"{self.name}({', '.join(shown)})"

    def renamed(self) -> list[str]:
        """``learning_rate as lr``: every parameter whose name is not gdlab's, and what it was taken to be."""
        shown = []
        for slot in self.slots:
            if slot.hyperparameter is not None and normalize(slot.name) != slot.hyperparameter:
                target = slot.hyperparameter + (f"[{slot.component}]" if slot.component is not None else "")
                if not (slot.component is not None and slot.name == _component_names(slot.hyperparameter)[slot.component][0]):
                    shown.append(f"{slot.name} as {target}")
            elif slot.role is not None and normalize(slot.name) != slot.role:
                shown.append(f"{slot.name} as {slot.role}")
        return shown

    def table(self) -> str:
        """Every parameter, one a line, with what gdlab took it to be."""
        width = max((len(slot.name) for slot in self.slots), default=0)
        lines = [f"    {slot.name:<{width}}  {slot.taken_as(self.entry)}"
                 + (f" ({slot.how})" if slot.how and slot.filled else "") for slot in self.slots]
        return "\n".join(lines)


def parse_binds(pairs: list[str], option: str = "--bind") -> dict[str, str]:
    """``["w_decay=weight_decay", ...]`` -> ``{"w_decay": "weight_decay"}`` (the function's name -> what it is)."""
    binds: dict[str, str] = {}
    for pair in pairs:
        user_name, separator, target = (part.strip() for part in pair.partition("="))
        if not separator or not user_name.isidentifier() or not target.isidentifier():
            raise CannotCheck(
                f"{option[2:]} {pair!r} must read YOUR_NAME=GDLAB_NAME, like {option} w_decay=weight_decay "
                f"or {option} my_loader=train_loader"
            )
        binds[user_name] = target
    return binds


# Kept for callers of the first version: --rename YOUR_NAME=GDLAB_NAME is --bind.
def parse_renames(pairs: list[str]) -> dict[str, str]:
    return parse_binds(pairs, option="--rename")


def bind(obj: Callable, rule: Rule, binds: Mapping[str, str] | None = None) -> Binding:
    """Read ``obj``'s signature (a class: its ``__init__``) and take each parameter to be something."""
    binds = dict(binds or {})
    name = getattr(obj, "__name__", repr(obj))
    if inspect.isclass(obj):
        if not issubclass(obj, torch.optim.Optimizer):
            raise CannotCheck(
                f"{name} is a class but not a torch.optim.Optimizer subclass; give a training function, "
                "an update function, or an Optimizer class"
            )
        entry = OPTIMIZER
    else:
        entry = None
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        raise CannotCheck(f"cannot read the signature of {name}; give a Python function or class") from None
    parameters = [p for p in signature.parameters.values() if p.kind is not p.VAR_POSITIONAL]
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in parameters)
    parameters = [p for p in parameters if p.kind is not p.VAR_KEYWORD]
    names = [p.name for p in parameters]
    for user_name, target in binds.items():
        if user_name not in names:
            raise CannotCheck(
                f"bind {user_name}={target}: {name} has no parameter {user_name!r}; its parameters are "
                f"{', '.join(names) or 'none'}"
            )

    if entry is None:
        entry = _entry_from_names(parameters, binds)
    slots = _fill(parameters, rule, binds, entry)
    hparams = next((slot for slot in slots if slot.role == "hparams"), None)
    dict_defaults = _dict_defaults(obj, hparams.name, rule) if hparams is not None else ()
    binding = Binding(name, entry, f"{name}{signature}", tuple(slots), takes_kwargs, rule, dict_defaults=dict_defaults)
    _refuse_unfilled(binding, rule)
    return binding


def _dict_defaults(function: Callable, dict_name: str, rule: Rule) -> tuple[tuple[str, int | None, Any], ...]:
    """The hyperparameters ``function`` gives a default by ``<dict_name>.setdefault("key", number)``."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError):
        return ()
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "setdefault"
                and isinstance(node.func.value, ast.Name) and node.func.value.id == dict_name and len(node.args) == 2):
            continue
        key, value = node.args
        if not (isinstance(key, ast.Constant) and isinstance(key.value, str) and isinstance(value, ast.Constant)
                and isinstance(value.value, (int, float)) and not isinstance(value.value, bool)):
            continue
        normal = normalize(key.value)
        hyper = _hyperparameter_by_name(normal, rule) or _hyperparameter_by_spelling(normal, rule, set())
        if hyper is not None:
            found.append((hyper[0], hyper[1], value.value))
    return tuple(found)


def _entry_from_names(parameters, binds: Mapping[str, str]) -> str:
    """A training function has a training loader or a number of epochs; anything else is an update function."""
    loop_roles = {"train_loader", "n_epochs", "epochs"}
    for parameter in parameters:
        if binds.get(parameter.name) in loop_roles:
            return TRAINING
        if parameter.name not in binds and _role_by_spelling(parameter.name, TRAINING) in loop_roles:
            return TRAINING
    return UPDATE


def _role_by_spelling(name: str, entry: str) -> str | None:
    key = normalize(name)
    for role in ROLES[entry]:
        if key in role.spellings:
            return role.name
    return None


def _component_names(pair: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    stem = pair[:-1] if pair.endswith("s") else pair
    extra = _PAIR_SPELLINGS.get(pair, ((), ()))
    return (f"{stem}1", f"{stem}_1", *extra[0]), (f"{stem}2", f"{stem}_2", *extra[1])


def _hyperparameter_by_name(key: str, rule: Rule) -> tuple[str, int | None] | None:
    """The rule's hyperparameter (and pair entry) called ``key`` exactly."""
    for name in rule.names():
        if key == name:
            return name, None
        if rule.kind(name) == "pair":
            for index, spellings in enumerate(_component_names(name)):
                if key == spellings[0]:
                    return name, index
    return None


def _hyperparameter_by_spelling(key: str, rule: Rule, taken: set) -> tuple[str, int | None] | None:
    """The rule's hyperparameter ``key`` is a usual spelling of (not one the function already takes)."""
    names = rule.names()
    if key in names:
        return None
    for canonical, spellings in SPELLINGS.items():
        if canonical in names and key in spellings and (canonical, None) not in taken:
            return canonical, None
    for name in names:
        if rule.kind(name) == "pair":
            for index, spellings in enumerate(_component_names(name)):
                if key in spellings and (name, index) not in taken:
                    return name, index
    return None


def _fill(parameters, rule: Rule, binds: Mapping[str, str], entry: str) -> list[Slot]:
    roles = {role.name for role in ROLES[entry]}
    slots: list[Slot | None] = [None] * len(parameters)
    taken_roles: set[str] = set()
    taken_hyper: set[tuple[str, int | None]] = set()

    def claim(index: int, how: str, role: str | None = None, hyper: tuple[str, int | None] | None = None):
        parameter = parameters[index]
        if role is not None and role != "state":
            taken_roles.add(role)
        if hyper is not None:
            taken_hyper.add(hyper)
        slots[index] = Slot(
            parameter.name, parameter.kind, parameter.default, role=role,
            hyperparameter=hyper[0] if hyper else None, component=hyper[1] if hyper else None, how=how,
        )

    # 1. What the user bound, then names that are exactly a hyperparameter or a role.
    for index, parameter in enumerate(parameters):
        target = binds.get(parameter.name)
        if target is None:
            continue
        target = _ROLE_ALIASES.get(target, target)
        hyper = _hyperparameter_by_name(normalize(target), rule)
        if target in ("default", "ignore"):
            slots[index] = Slot(parameter.name, parameter.kind, parameter.default, how="--bind")
        elif target in roles:
            claim(index, "--bind", role=target)
        elif hyper is not None:
            claim(index, "--bind", hyper=hyper)
        else:
            raise CannotCheck(
                f"bind {parameter.name}={target}: {target!r} is not a hyperparameter of {rule.title} or a role "
                f"gdlab fills; hyperparameters: {', '.join(rule.names())}; roles of a {entry}: "
                f"{', '.join(sorted(roles))} (or 'default' to leave it at its default)"
            )
    if entry == OPTIMIZER:
        first = next((index for index, slot in enumerate(slots) if slot is None), None)
        if first is not None and "params" not in taken_roles and parameters[first].name not in binds:
            claim(first, "the first argument of an Optimizer", role="params")
    for index, parameter in enumerate(parameters):
        if slots[index] is not None:
            continue
        key = normalize(parameter.name)
        hyper = _hyperparameter_by_name(key, rule)
        if hyper is not None and hyper not in taken_hyper:
            claim(index, "by name", hyper=hyper)
    for index, parameter in enumerate(parameters):
        if slots[index] is not None:
            continue
        role = _role_by_spelling(parameter.name, entry)
        if role is not None and (role not in taken_roles or role == "state"):
            claim(index, "by name", role=role)
    # 2. Usual spellings of hyperparameters, then names that look like state.
    for index, parameter in enumerate(parameters):
        if slots[index] is not None:
            continue
        hyper = _hyperparameter_by_spelling(normalize(parameter.name), rule, taken_hyper)
        if hyper is not None:
            claim(index, f"a usual spelling of {hyper[0]}", hyper=hyper)
    if entry == UPDATE:
        for index, parameter in enumerate(parameters):
            if slots[index] is None and any(mark in normalize(parameter.name) for mark in _STATE_MARKS):
                claim(index, "its name reads as state", role="state")
    return [
        slot if slot is not None else Slot(parameter.name, parameter.kind, parameter.default)
        for slot, parameter in zip(slots, parameters)
    ]


# Names --bind also takes for a role.
_ROLE_ALIASES = {"epochs": "n_epochs", "loader": "train_loader", "loss_function": "loss_fn", "criterion": "loss_fn",
                 "parameters": "params", "gradients": "grads", "hyperparameters": "hparams", "t": "step"}

_REQUIRED_ROLES = {TRAINING: ("model", "train_loader"), OPTIMIZER: ("params",)}


def _refuse_unfilled(binding: Binding, rule: Rule) -> None:
    problems = []
    for slot in binding.slots:
        if not slot.filled and not slot.has_default:
            problems.append(f"its parameter {slot.name!r} has no default and gdlab does not know what to give it")
    for role in _REQUIRED_ROLES.get(binding.entry, ()):
        if binding.role(role) is None:
            meaning = next(r.meaning for r in ROLES[binding.entry] if r.name == role)
            problems.append(f"no parameter takes {meaning} ({role})")
    if binding.entry == UPDATE and not any(
        binding.role(role) for role in ("params", "model", "grads", "loss", "weight")
    ):
        problems.append(
            "no parameter takes the parameters, the model, their gradients or the loss, so it cannot update anything"
        )
    if not problems:
        return
    roles = ", ".join(role.name for role in ROLES[binding.entry])
    article = "an" if binding.entry[0] in "aeiouAEIOU" else "a"
    raise CannotCheck(
        f"{binding.signature} cannot be called as {article} {binding.entry}: " + "; ".join(problems) + ".\n"
        f"  What gdlab took each parameter to be:\n{binding.table()}\n"
        f"  Bind a parameter with --bind NAME=ROLE (Python: binds={{'NAME': 'ROLE'}}); roles of {article} "
        f"{binding.entry}: {roles}; hyperparameters of {rule.title}: {', '.join(rule.names())}"
    )
