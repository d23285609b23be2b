"""Calling a user's backward pass and finding the gradients it produced.

A backward pass is called the way people write it: ``backward(model, y_true,
y_pred)`` as courses ask for, with its arguments recognized by name in any
order (``backward(net, output, labels)``), or a network's own
``net.backward(y_true, y_pred)``. Its results are found where it put them:

- its return value: one ``(dL_dW, dL_db)`` pair per layer, two per-layer
  collections ``(weight gradients, bias gradients)``, a flat list
  ``[dW1, db1, dW2, db2, ...]``, or a dict keyed by parameter name;
- attributes of the model: a pair of per-layer collections such as the
  course's ``model.dL_dw[l]`` / ``model.dL_db[l]`` (dicts keyed by layer
  number, by layer name, lists in layer order or indexed 1..L), under a usual
  name or any name, as long as only one pair of collections was written;
- the parameters' ``.grad``, as autograd would leave them.

``gradients=`` says where when that is ambiguous: "return", "grad", a pair of
attribute names, or a function of the model returning the pairs.
"""

import inspect
from dataclasses import dataclass

import torch
from torch import nn

from gdlab.errors import GdlabError

MODEL_NAMES = {"model", "net", "network", "mlp", "nn", "m", "self", "module"}
TRUE_NAMES = {
    "y_true", "y", "t", "target", "targets", "y_target", "label", "labels", "true", "truth", "ytrue", "y_gt",
    "gt", "y_real", "expected",
}
PRED_NAMES = {
    "y_pred", "pred", "preds", "prediction", "predictions", "output", "outputs", "out", "y_hat", "yhat",
    "logits", "scores", "ypred", "y_out", "y_predicted", "predicted", "a_l", "a_out",
}
WEIGHT_STORE_NAMES = (
    "dL_dW", "dL_dw", "dL_dweight", "dW", "dw", "grad_W", "grad_w", "grads_W", "grads_w", "dLdW", "dLdw",
    "weight_grads", "weight_gradients",
)
BIAS_STORE_NAMES = (
    "dL_db", "dL_dB", "dL_dbias", "db", "dB", "grad_b", "grads_b", "dLdb", "dLdB", "bias_grads", "bias_gradients",
)


@dataclass(frozen=True)
class Layer:
    name: str  # the nn.Linear's module name, "fc.1"
    module: nn.Linear


# ---------------------------------------------------------------- calling it


def backward_caller(backward, model, loss_name):
    """(network, call) where call(network, y_true, y_pred) runs the user's backward pass."""
    if isinstance(backward, nn.Module):
        if model is not None:
            raise GdlabError(
                "check_mlp_backward: got a network as `backward` and also model=; pass either a network "
                "with a backward method, or a function backward(model, y_true, y_pred) with model="
            )
        if not callable(getattr(type(backward), "backward", None)):
            raise GdlabError(
                f"check_mlp_backward: {type(backward).__name__} has no backward(y_true, y_pred) method; "
                "pass your backward function first and this network as model="
            )
        roles, takes_loss = _roles(type(backward).backward, ("y_true", "y_pred"), skip_first=True)

        def call_method(network, y_true, y_pred):
            values = {"y_true": y_true, "y_pred": y_pred}
            extra = {"loss": loss_name} if takes_loss and loss_name is not None else {}
            return network.backward(*(values[role] for role in roles), **extra)

        return backward, call_method
    if not callable(backward):
        raise GdlabError(
            f"check_mlp_backward: `backward` must be a network or a function, got {type(backward).__name__}"
        )
    if isinstance(model, type) and issubclass(model, nn.Module):
        try:
            model = model()
        except TypeError as error:
            raise GdlabError(
                f"check_mlp_backward: model={model.__name__} is a class that needs arguments ({error}); "
                f"pass a network: model={model.__name__}(...)"
            ) from error
    if not isinstance(model, nn.Module):
        raise GdlabError(
            "check_mlp_backward: a backward function needs the network it differentiates: "
            "check_mlp_backward(backward, x, y, model=net)"
        )
    roles, _ = _roles(backward, ("model", "y_true", "y_pred"), skip_first=False)

    def call_function(network, y_true, y_pred):
        values = {"model": network, "y_true": y_true, "y_pred": y_pred}
        return backward(*(values[role] for role in roles))

    return model, call_function


def _roles(function, default, skip_first):
    """The order in which ``function`` takes model / y_true / y_pred, read from its parameter names."""
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return list(default), False
    if skip_first:
        parameters = parameters[1:]
    takes_loss = any(p.name == "loss" for p in parameters)
    positional = [
        p for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "loss"
    ]
    required = [p for p in positional if p.default is p.empty]
    name = getattr(function, "__name__", "backward")
    name = "backward" if name == "<lambda>" else name
    if len(required) > len(default) or len(positional) < len(default):
        if not any(p.kind == p.VAR_POSITIONAL for p in parameters):
            shown = ", ".join(p.name for p in positional)
            raise GdlabError(
                f"check_mlp_backward: {name}({shown}) cannot be called as {name}({', '.join(default)}); "
                "a backward pass takes the network (for a function), the targets and the network's output"
            )
        return list(default), takes_loss
    names = [p.name for p in positional[: len(default)]]
    guessed = [_role_of(n, default) for n in names]
    known = [role for role in guessed if role is not None]
    if len(set(known)) != len(known):
        return list(default), takes_loss
    missing = [role for role in default if role not in known]
    if len(missing) == 1:
        guessed = [role if role is not None else missing[0] for role in guessed]
    if None in guessed:
        return list(default), takes_loss
    return guessed, takes_loss


def _role_of(name, default):
    lowered = name.lower()
    for role, names in (("model", MODEL_NAMES), ("y_true", TRUE_NAMES), ("y_pred", PRED_NAMES)):
        if role in default and (name in names or lowered in names):
            return role
    return None


# ---------------------------------------------------------------- what it may change


@dataclass
class Snapshot:
    """What the backward pass finds before it runs: parameters, their .grad, the model's collections."""

    parameters: dict  # name -> (the Parameter object, a copy of its value)
    grads: dict  # name -> a copy of .grad, or None
    attributes: dict  # name -> (id of the value, ids of its items)
    inputs: dict  # "y_true" / "y_pred" -> a copy


def take_snapshot(network, y_true, y_pred) -> Snapshot:
    parameters, grads = {}, {}
    for name, parameter in network.named_parameters():
        parameters[name] = (parameter, parameter.detach().clone())
        grads[name] = None if parameter.grad is None else parameter.grad.detach().clone()
    return Snapshot(
        parameters,
        grads,
        {name: _identity(value) for name, value in _plain_attributes(network)},
        {"y_true": y_true.clone(), "y_pred": y_pred.clone()},
    )


def _plain_attributes(network):
    return [(name, value) for name, value in vars(network).items() if not name.startswith("_")]


def _identity(value):
    """What changes when a collection is rebound, refilled, or a tensor in it is written in place."""
    if isinstance(value, dict):
        return id(value), tuple((key, _item(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return id(value), tuple(_item(item) for item in value)
    return _item(value), ()


def _item(value):
    return id(value), value._version if torch.is_tensor(value) else None


def changed_attributes(network, snapshot) -> list[str]:
    return [
        name for name, value in _plain_attributes(network)
        if snapshot.attributes.get(name) != _identity(value)
    ]


def changed_parameters(network, snapshot):
    """[(name, before, after)] for every parameter whose value the backward pass changed or replaced."""
    changed = []
    now = dict(network.named_parameters())
    for name, (parameter, before) in snapshot.parameters.items():
        current = now.get(name)
        after = None if current is None else current.detach()
        if current is not parameter or after.shape != before.shape or not torch.equal(after, before):
            changed.append((name, before, after))
    return changed


def changed_grads(network, snapshot):
    changed = []
    for name, parameter in network.named_parameters():
        before, after = snapshot.grads.get(name), parameter.grad
        if before is None and after is None:
            continue
        if before is None or after is None or after.shape != before.shape or not torch.equal(after, before):
            changed.append(name)
    return changed


# ---------------------------------------------------------------- finding the gradients


def collect_gradients(returned, network, layers, snapshot, gradients):
    """(pairs, where) with one (dL_dW, dL_db) float64 pair per layer in forward order."""
    if gradients is None:
        pairs, where = _automatic(returned, network, layers, snapshot)
    elif callable(gradients) and not isinstance(gradients, (str, tuple, list)):
        pairs, where = _from_return(gradients(network), layers, "gradients(model)")
    elif gradients == "return":
        if returned is None:
            raise GdlabError("check_mlp_backward: gradients='return' but the backward pass returned None")
        pairs, where = _from_return(returned, layers, "the return value")
    elif gradients == "grad":
        pairs, where = _from_grad(layers, required=True)
    elif isinstance(gradients, (tuple, list)) and len(gradients) == 2 and all(isinstance(n, str) for n in gradients):
        pairs, where = _from_attributes(network, layers, *gradients)
    else:
        raise GdlabError(
            f"check_mlp_backward: gradients={gradients!r} is not a place; use 'return', 'grad', a pair of "
            "attribute names such as ('dL_dw', 'dL_db'), or a function of the model returning "
            "[(dL_dW, dL_db), ...]"
        )
    return [(_as_float64(w, f"{layer.name} weight gradient", where),
             _as_float64(b, f"{layer.name} bias gradient", where)) for (w, b), layer in zip(pairs, layers)], where


def _as_float64(value, what, where):
    if value is None:
        raise GdlabError(f"check_mlp_backward: {where} holds None as the {what}: it was never computed or stored")
    try:
        return torch.as_tensor(value).detach().double()
    except (TypeError, ValueError, RuntimeError) as error:
        raise GdlabError(
            f"check_mlp_backward: {where} holds {type(value).__name__} as the {what}, not a tensor"
        ) from error


def _automatic(returned, network, layers, snapshot):
    returned_error = None
    if returned is not None:
        try:
            return _from_return(returned, layers, "the return value")
        except GdlabError as error:  # it may return something else (the loss, the model) and store them
            returned_error = error
    changed = changed_attributes(network, snapshot)
    stores = _attribute_stores(network, layers, changed)
    grad = _from_grad(layers, required=False)
    if stores is not None:
        return stores
    if grad is not None:
        return grad
    if returned_error is not None:
        raise returned_error
    names = ", ".join(changed) or "none"
    raise GdlabError(
        "check_mlp_backward: the backward pass returned None, stored no .grad, and wrote no pair of per-layer "
        f"collections on the model (attributes it changed: {names}); return [(dL_dW, dL_db), ...], or store "
        "them as model.dL_dw[l] / model.dL_db[l], or say where with gradients=('weights_attr', 'biases_attr')"
    )


def _attribute_stores(network, layers, changed):
    """The (weights, biases) attribute pair the backward pass wrote, or None; ambiguity is an error."""
    known_w = [n for n in WEIGHT_STORE_NAMES if n in changed]
    known_b = [n for n in BIAS_STORE_NAMES if n in changed]
    if known_w and known_b:
        weight_name = _one(network, layers, known_w, "weight")
        bias_name = _one(network, layers, known_b, "bias")
        return _from_attributes(network, layers, weight_name, bias_name)
    readable = {}
    for name in changed:
        try:
            readable[name] = _read_store(getattr(network, name), layers, f"model.{name}")
        except GdlabError:
            continue
    weights = [n for n, entries in readable.items() if _looks_like(entries, layers, "weight")]
    biases = [n for n, entries in readable.items() if _looks_like(entries, layers, "bias") and n not in weights]
    if not weights and not biases:
        return None
    if len(weights) != 1 or len(biases) != 1:
        raise GdlabError(
            "check_mlp_backward: cannot tell where the backward pass stored its gradients: it wrote "
            f"weight-shaped collections {weights or 'none'} and bias-shaped ones {biases or 'none'}; say which "
            "with gradients=('weights_attr', 'biases_attr')"
        )
    return _from_attributes(network, layers, weights[0], biases[0])


def _one(network, layers, names, kind):
    if len(names) == 1:
        return names[0]
    entries = [_read_store(getattr(network, n), layers, f"model.{n}") for n in names]
    first = entries[0]
    same = all(
        all(torch.is_tensor(a) and torch.is_tensor(b) and a.shape == b.shape and torch.equal(a, b)
            for a, b in zip(first, other))
        for other in entries[1:]
    )
    if same:
        return names[0]
    raise GdlabError(
        f"check_mlp_backward: the backward pass wrote several {kind} gradient collections that differ: "
        f"{', '.join('model.' + n for n in names)}; say which with gradients=('weights_attr', 'biases_attr')"
    )


def _looks_like(entries, layers, kind):
    """Every entry a tensor of the parameter's size: (out, in) or its transpose for weights; for biases
    (out,), (1, out) or one row per example (N, out)."""
    for entry, layer in zip(entries, layers):
        if not torch.is_tensor(entry):
            return False
        weight = layer.module.weight
        outputs = weight.shape[0]
        if kind == "weight":
            if entry.dim() != 2 or entry.numel() != weight.numel():
                return False
        elif entry.dim() not in (1, 2) or entry.shape[-1] != outputs:
            return False
        elif entry.dim() == 2 and entry.numel() == weight.numel():  # weight-sized: not read as a bias
            return False
    return True


def _from_attributes(network, layers, weight_name, bias_name):
    where = f"model.{weight_name} / model.{bias_name}"
    for name in (weight_name, bias_name):
        if not hasattr(network, name):
            raise GdlabError(f"check_mlp_backward: the model has no attribute {name!r} after the backward pass")
    weights = _read_store(getattr(network, weight_name), layers, f"model.{weight_name}")
    biases = _read_store(getattr(network, bias_name), layers, f"model.{bias_name}")
    return list(zip(weights, biases)), where


def _from_grad(layers, required):
    grads = [(layer.module.weight.grad, layer.module.bias.grad) for layer in layers]
    if all(w is not None and b is not None for w, b in grads):
        return grads, ".grad of each parameter"
    if required:
        missing = [layer.name for layer, (w, b) in zip(layers, grads) if w is None or b is None]
        raise GdlabError(f"check_mlp_backward: gradients='grad' but .grad is None in {', '.join(missing)}")
    return None


def _read_store(store, layers, where):
    """The entries of a per-layer collection, one per layer in forward order."""
    count = len(layers)
    if isinstance(store, dict):
        filled = {key: value for key, value in store.items() if value is not None}
        keys = {str(key): key for key in filled}
        full = [layer.name for layer in layers]
        last = [layer.name.rsplit(".", 1)[-1] for layer in layers]
        for names in (full, last):
            if len(set(names)) == count and set(keys) == set(names):
                return [filled[keys[name]] for name in names]
        numbers = sorted(int(key) for key in keys if _is_int(key))
        if len(numbers) == len(keys):
            for start in (1, 0):
                if numbers == list(range(start, start + count)):
                    by_number = {int(key): filled[original] for key, original in keys.items()}
                    return [by_number[number] for number in numbers]
        raise GdlabError(
            f"check_mlp_backward: {where} has keys {sorted(keys)}, which do not name the {count} layers "
            f"{full} (by name, by their last part, or as numbers 1..{count} or 0..{count - 1})"
        )
    if isinstance(store, (list, tuple)):
        entries = list(store)
        if len(entries) == count + 1 and not torch.is_tensor(entries[0]):
            return entries[1:]
        if len(entries) == count:
            return entries
        raise GdlabError(
            f"check_mlp_backward: {where} holds {len(entries)} entries for {count} nn.Linear layers; give one per "
            "layer in forward order (or index them 1..L with entry 0 unused)"
        )
    raise GdlabError(f"check_mlp_backward: {where} is {type(store).__name__}, not a dict or list of gradients")


def _is_int(key):
    try:
        int(key)
    except (TypeError, ValueError):
        return False
    return True


def _from_return(returned, layers, where):
    count = len(layers)
    names = {f"{layer.name}.{kind}" for layer in layers for kind in ("weight", "bias")}
    if isinstance(returned, dict) and set(map(str, returned)) >= names:
        by_name = {str(key): value for key, value in returned.items()}
        return [(by_name[f"{l.name}.weight"], by_name[f"{l.name}.bias"]) for l in layers], where
    if isinstance(returned, dict):
        entries = _read_store(returned, layers, where)
        if all(isinstance(e, (tuple, list)) and len(e) == 2 for e in entries):
            return [tuple(e) for e in entries], where
        raise GdlabError(f"check_mlp_backward: {where} is a dict; give one (dL_dW, dL_db) pair per layer")
    if torch.is_tensor(returned) or not isinstance(returned, (list, tuple)):
        raise GdlabError(
            f"check_mlp_backward: {where} is {type(returned).__name__}; return one (dL_dW, dL_db) pair per "
            "nn.Linear layer, or (weight gradients, bias gradients), or store them on the model"
        )
    items = list(returned)
    as_pairs = as_stores = None
    if len(items) in (count, count + 1):
        candidate = items[1:] if len(items) == count + 1 and items[0] is None else items
        if len(candidate) == count and all(isinstance(i, (tuple, list)) and len(i) == 2 for i in candidate):
            as_pairs = [tuple(i) for i in candidate]
    if len(items) == 2 and all(isinstance(i, (tuple, list, dict)) for i in items):
        try:
            as_stores = list(zip(_read_store(items[0], layers, where), _read_store(items[1], layers, where)))
        except GdlabError:
            as_stores = None
    if len(items) == 2 * count and all(torch.is_tensor(i) for i in items):
        return [(items[2 * i], items[2 * i + 1]) for i in range(count)], where
    if as_pairs is not None and as_stores is not None:
        return (as_stores if _shape_score(as_stores, layers) > _shape_score(as_pairs, layers) else as_pairs), where
    if as_pairs is not None:
        return as_pairs, where
    if as_stores is not None:
        return as_stores, where
    raise GdlabError(
        f"check_mlp_backward: {where} must give one (dL_dW, dL_db) pair for each of the {count} nn.Linear "
        f"layers, got {len(items)} items"
    )


def _shape_score(pairs, layers):
    score = 0
    for (w, b), layer in zip(pairs, layers):
        score += torch.is_tensor(w) and tuple(w.shape) == tuple(layer.module.weight.shape)
        score += torch.is_tensor(b) and tuple(b.shape) == tuple(layer.module.bias.shape)
    return score
