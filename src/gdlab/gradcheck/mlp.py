"""Check a hand-written MLP backward pass against autograd and finite differences of the user's own loss."""

import contextlib
import copy
import dataclasses
import itertools

import torch
from torch import nn
from torch.func import functional_call

from gdlab.backprop.losses import LABELS, LOSSES, target_problem
from gdlab.errors import GdlabError
from gdlab.gradcheck import batch
from gdlab.gradcheck.comparison import is_close, resolve_tolerances
from gdlab.gradcheck.diagnosis import FACTOR_NAME_RTOL, Finding, _fitted_factor
from gdlab.gradcheck.locate import (
    Layer,
    backward_caller,
    changed_grads,
    changed_parameters,
    collect_gradients,
    take_snapshot,
)
from gdlab.gradcheck.losses import LossSpec, Reduction, loss_spec, resolve_loss
from gdlab.gradcheck.numerical import autograd_gradient, numerical_gradient
from gdlab.gradcheck.report import GradReport, compare

# The names loss= accepts, each with torch's function (kept for code that imported it).
REFERENCE_LOSSES = {name: loss.forward for name, loss in LOSSES.items()}
# Finite differences cost two forward passes per parameter (about 2 s for this
# many on one CPU core); beyond it the automatic choice leaves them out and
# autograd alone is the reference.
FINITE_DIFFERENCE_LIMIT = 5_000
# Factors left once the reduction is taken out that still let the reduction be read off the output
# layer: a sign flip and the factor 2 of the squared error are mistakes of their own.
NAMED_RESIDUALS = (-1.0, 2.0, 0.5, -2.0, -0.5)


def check_mlp_backward(
    backward,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    model: nn.Module | type | None = None,
    loss="mse",
    reduction: str = "mean",
    gradients=None,
    finite_differences: bool | None = None,
    eps: float = 1e-6,
    rtol: float | None = None,
    atol: float | None = None,
) -> GradReport:
    """Run a hand-written backward pass and compare it with autograd (and finite differences) of your loss.

    ``backward`` is either

    - a function ``backward(model, y_true, y_pred)`` as courses ask for (its
      arguments are recognized by name in any order: ``backward(net, output,
      labels)``), with the network given as ``model=``: your own class (an
      instance, or a class that takes no arguments), any ``nn.Module`` whose
      ``nn.Linear`` layers hold the weights and whose forward caches what your
      backward reads; or
    - a network with its own ``backward(y_true, y_pred)`` method, such as
      ``gdlab.backprop.MLP`` (given ``loss`` as a name when it takes one).

    Its gradients are found where it puts them: its return value (one
    ``(dL_dW, dL_db)`` pair per layer, or ``(weight gradients, bias
    gradients)``), per-layer collections on the model (the course's
    ``model.dL_dw[l]`` / ``model.dL_db[l]``, dicts keyed by layer number or
    name, or lists), or the parameters' ``.grad``. Where that is ambiguous,
    ``gradients=`` says where: "return", "grad", a pair of attribute names
    such as ``("dL_dw", "dL_db")``, or a function of the model returning the
    pairs.

    ``loss`` is the loss you train with: your own function ``loss(y_pred,
    y_true)``, used as given (say ``lambda y_pred, y: nn.MSELoss(reduction=
    "none")(y_pred, y).sum()``), or a name of ``gdlab.backprop.LOSSES``, "mse"
    (``y`` shaped like the output), "cross_entropy" or "nll" (integer labels),
    reduced by ``reduction`` ("mean" or "sum"). The gradients compared with
    are those of that loss.

    A backward pass written for the same loss with the other reduction (the
    summed squared error where the loss given averages, or the reverse) is not
    called wrong: ``report.reduction`` says so and by what factor (N, C or
    N·C), the tables compare with that loss, and the verdict is
    "other_reduction". Mistakes are diagnosed on top of it, layer by layer. A
    backward pass that changes the parameters, their ``.grad``, ``y_pred`` or
    ``y_true`` is flagged in ``report.side_effects`` (verdict
    "changes_model").

    Everything runs on a float64 copy of the network, with float64 as torch's
    default dtype meanwhile, so rounding can neither hide nor fake a mistake
    and the network passed in is left untouched. The forward and the backward
    run under ``torch.no_grad()``: a backward pass that leans on autograd fails
    here. ``finite_differences`` (default: when the network has at most 5,000
    parameters) also compares with central differences of step ``eps``; that
    report is ``result.finite_differences``. Where finite differences and
    autograd disagree with each other (the loss has a kink within ``eps``, as
    ReLU at 0), that report uses autograd's value and says how many elements
    in ``notes``.
    """
    loss, reduction = resolve_loss(loss, reduction)
    network, run_backward = backward_caller(backward, model, loss if isinstance(loss, str) else None)
    network = copy.deepcopy(network).double()
    x = x.detach().double() if x.is_floating_point() else x.detach()
    with _default_dtype(torch.float64):
        return _check(network, run_backward, x, y, loss, reduction, gradients, finite_differences, eps, rtol, atol)


@contextlib.contextmanager
def _default_dtype(dtype):
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def _check(network, run_backward, x, y, loss, reduction, gradients, finite_differences, eps, rtol, atol):
    layers = _linear_layers(network, x)
    y = _prepare_targets(network, x, y, loss)
    names = [f"{layer.name}.{kind}" for layer in layers for kind in ("weight", "bias")]
    parameters = [getattr(layer.module, kind).detach() for layer in layers for kind in ("weight", "bias")]
    if finite_differences is None:
        finite_differences = sum(p.numel() for p in parameters) <= FINITE_DIFFERENCE_LIMIT
    with torch.no_grad():
        spec = loss_spec(loss, reduction, network(x), y)

    def loss_of(*tensors):
        y_pred = functional_call(network, dict(zip(names, tensors)), (x,))
        return spec.function(y_pred, y)

    if not torch.equal(loss_of(*parameters), loss_of(*parameters)):
        raise GdlabError(
            f"check_mlp_backward: two forward passes of {type(network).__name__} on the same input gave "
            "different losses, so no gradient can be checked; switch off dropout or other randomness "
            "(model.eval()) before checking"
        )
    autograd_reference = autograd_gradient(loss_of, parameters)
    numerical_reference = numerical_gradient(loss_of, parameters, eps) if finite_differences else None
    traces = batch.trace_layers(network, layers, x, lambda y_pred: spec.function(y_pred, y))

    # The user's forward runs last, so whatever it caches belongs to it; .grad starts empty, as
    # after optimizer.zero_grad(), so that a backward pass writing there can be seen doing so.
    for parameter in network.parameters():
        parameter.grad = None
    with torch.no_grad():
        y_pred = network(x)
        snapshot = take_snapshot(network, y, y_pred)
        returned = run_backward(network, y, y_pred)
    analytic, where = collect_gradients(returned, network, layers, snapshot, gradients)
    flat = [tensor for pair in analytic for tensor in pair]

    n, c = x.shape[0], y_pred[0].numel()
    rtol, atol = resolve_tolerances(flat, autograd_reference, rtol, atol)
    scale, implied, relation = _reduction(flat, autograd_reference, traces, spec, n, c, rtol, atol)
    context = dict(
        names=names,
        rtol=rtol,
        atol=atol,
        batch_size=n,
        output_size=c if spec.elementwise else None,
        averaged=tuple(dim for dim in ("batch", "outputs") if getattr(implied, dim) == "mean"),
        loss_hint=_loss_hint(spec, implied),
    )
    suffix = "" if scale == 1 else f" of the {implied.short()} ({_times(scale)} the loss given)"
    side_effects = _side_effects(network, snapshot, layers, names, flat, where, y, y_pred, rtol, atol)

    def report_against(reference, name, notes=()):
        scaled = [scale * tensor for tensor in reference]
        report = compare(flat, scaled, reference_name=name + suffix, **context)
        findings = _batch_findings(report.findings, flat, names, layers, traces, scale, n, rtol, atol)
        return dataclasses.replace(report, findings=findings, notes=notes)

    report = report_against(autograd_reference, "autograd")
    report = dataclasses.replace(report, reduction=relation, side_effects=side_effects)
    if numerical_reference is None:
        return report
    numerical_reference, notes = _trusted_differences(numerical_reference, autograd_reference, rtol, atol, eps)
    fd_report = report_against(numerical_reference, "finite differences", notes)
    return dataclasses.replace(report, finite_differences=fd_report)


def _trusted_differences(numerical, autograd, rtol, atol, eps):
    """Finite differences, with autograd's value where the two references disagree.

    For a deterministic float64 forward (checked before) they disagree only
    where the loss is not smooth at the scale of ``eps``: a ReLU pre-activation
    within eps of 0 flips sign between f(x + eps) and f(x - eps). There the
    difference quotient measures the kink, not the gradient, and would fail a
    correct backward pass.
    """
    trusted, replaced, total = [], 0, 0
    for fd, exact in zip(numerical, autograd):
        agree = (fd - exact).abs() <= atol + rtol * exact.abs()
        trusted.append(torch.where(agree, fd, exact))
        replaced += int((~agree).sum())
        total += fd.numel()
    if not replaced:
        return trusted, ()
    note = (
        f"at {replaced} of {total} elements central differences (eps={eps:g}) disagree with autograd, "
        "because the loss has a kink within eps there (a ReLU pre-activation near 0); those elements "
        "use autograd's value."
    )
    return trusted, (note,)


# ---------------------------------------------------------------- the network and the targets


def _linear_layers(network, x) -> list[Layer]:
    """The nn.Linear layers in the order the forward calls them (module order if it calls none)."""
    modules = [(name, module) for name, module in network.named_modules() if isinstance(module, nn.Linear)]
    if not modules:
        raise GdlabError(f"check_mlp_backward: {type(network).__name__} has no nn.Linear layers to check")
    for name, module in modules:
        if module.bias is None:
            raise GdlabError(
                f"check_mlp_backward: layer {name!r} has no bias; it checks (dL_dW, dL_db) "
                "pairs, so every nn.Linear needs bias=True"
            )
    order = []
    handles = [
        module.register_forward_hook(lambda m, i, o, name=name: order.append(name) if name not in order else None)
        for name, module in modules
    ]
    try:
        with torch.no_grad():
            network(x)
    finally:
        for handle in handles:
            handle.remove()
    position = {name: index for index, name in enumerate(order)}
    if set(position) == {name for name, _ in modules}:
        modules.sort(key=lambda item: position[item[0]])
    return [Layer(name, module) for name, module in modules]


def _prepare_targets(network, x, y, loss):
    if not isinstance(loss, str):
        return y.detach().double() if y.is_floating_point() else y.detach()
    with torch.no_grad():
        y_pred = network(x)
    problem = target_problem(LOSSES[loss], y_pred, y, target="y")
    if problem is not None:
        raise GdlabError(f"check_mlp_backward: {problem}")
    return y.detach().long() if LOSSES[loss].targets == LABELS else y.detach().double()


# ---------------------------------------------------------------- sum or mean


def _reduction_candidates(given: Reduction, n: int, c: int):
    """(factor, implied reduction) for every other reduction of the loss given: its gradient is
    factor x the loss given's. Summing where the loss given averages multiplies by the count."""
    dims = []
    if given.batch is not None and n > 1:
        dims.append(("batch", n if given.batch == "mean" else 1 / n))
    if given.outputs is not None and c > 1:
        dims.append(("outputs", c if given.outputs == "mean" else 1 / c))
    candidates = []
    for size in range(1, len(dims) + 1):
        for chosen in itertools.combinations(dims, size):
            factor = 1.0
            for _, value in chosen:
                factor *= value
            flipped = given.flipped(batch=any(d == "batch" for d, _ in chosen),
                                    outputs=any(d == "outputs" for d, _ in chosen))
            candidates.append((factor, flipped))
    # Both dimensions flipped first: with N = C, "summed over everything" is the reading to prefer.
    return sorted(candidates, key=lambda item: -len([1 for d in ("batch", "outputs")
                                                      if getattr(item[1], d) != getattr(given, d)]))


def _reduction(flat, reference, traces, spec: LossSpec, n, c, rtol, atol):
    """(scale, implied reduction, finding or None): the reduction the gradients are for, read where backward starts."""
    candidates = _reduction_candidates(spec.reduction, n, c)
    chosen = _read_reduction(flat, reference, traces, candidates, rtol, atol)
    if chosen is None:
        return 1.0, spec.reduction, None
    scale, implied = chosen
    return scale, implied, _reduction_finding(scale, implied, spec, n, c)


def _same(value, target):
    return abs(value - target) <= FACTOR_NAME_RTOL * abs(target)


def _read_reduction(flat, reference, traces, candidates, rtol, atol):
    if not candidates:
        return None
    output = [(flat[-2], reference[-2]), (flat[-1], reference[-1])]
    for a, r in output:  # the output layer's weight, then its bias
        if a.shape != r.shape:
            continue
        factor = 1.0 if is_close(a, r, rtol, atol) else _fitted_factor(a, r, rtol, atol)
        if factor is None:
            continue
        if _same(factor, 1.0):
            return None
        for value, implied in candidates:
            if _same(factor, value):
                return value, implied
        if any(_same(factor, residual) for residual in NAMED_RESIDUALS):
            return None
        for value, implied in candidates:
            if any(_same(factor, value * residual) for residual in NAMED_RESIDUALS):
                return value, implied
        return None
    # The output layer fits no constant factor: it may be a batch-dimension mistake at the output,
    # which still shows the reduction once compared with what that mistake gives.
    if traces is not None:
        expected = batch.summed_first(traces[-1], 1.0)
        if expected is not None:
            k = batch.fitted_scale((flat[-2], flat[-1]), expected, rtol, atol)
            if k is not None:
                for value, implied in candidates:
                    if _same(k, value):
                        return value, implied
                return None
    # Otherwise the factor most tensors share, if it is a reduction's.
    factors = [
        1.0 if a.shape == r.shape and is_close(a, r, rtol, atol)
        else (_fitted_factor(a, r, rtol, atol) if a.shape == r.shape else None)
        for a, r in zip(flat, reference)
    ]
    for value, implied in candidates:
        if sum(f is not None and _same(f, value) for f in factors) * 2 > len(factors):
            return value, implied
    return None


def _times(scale):
    if scale >= 1:
        return f"{scale:g} x"
    return f"1/{round(1 / scale)} x"


def _count_text(scale, given: Reduction, implied: Reduction, n, c):
    """'N·C = 12 x 2 = 24', 'N = 12 (the batch size)', '1/N = 1/12 (N the batch size)'."""
    batch_flips = given.batch != implied.batch
    outputs_flip = given.outputs != implied.outputs
    if batch_flips and outputs_flip:
        text = f"N·C = {n} x {c} = {n * c}"
    elif batch_flips:
        text = f"N = {n} (the batch size)"
    else:
        text = f"C = {c} (outputs per example)"
    if scale < 1:
        symbol = text.split(" = ", 1)[0]
        text = f"1/{symbol} = 1/{round(1 / scale)} ({text})"
    return text


def _reduction_finding(scale, implied: Reduction, spec: LossSpec, n, c) -> Finding:
    given = spec.reduction
    counted = _count_text(scale, given, implied, n, c)
    if spec.name is not None and (implied.outputs is None or implied.outputs == implied.batch):
        pass_it = f'loss="{spec.name}", reduction="{implied.batch}"'
    else:
        pass_it = "pass it as loss="
    direction = "divide" if scale > 1 else "multiply"
    amount = f"{scale:g}" if scale > 1 else f"{round(1 / scale)}"
    message = (
        f"your gradient is for {implied.describe(n, c)}; {spec.label} is {given.describe(n, c)}: the two "
        f"differ by the factor {counted}. That is a choice of loss, not a mistake in the backward pass, so "
        f"the tables compare with autograd of the {implied.short()}. If you train with the {implied.short()}, "
        f"check with it ({pass_it}); if you train with the loss given, {direction} the loss gradient where "
        f"backward starts by {amount}."
    )
    return Finding("reduction", message, f"the {implied.short()}", factor=scale)


def _loss_hint(spec: LossSpec, implied: Reduction) -> str:
    if spec.name is None:
        return "the derivative of your loss with respect to y_pred"
    divisor = {("mean", "mean"): " / y_pred.numel()", ("mean", "sum"): " / N", ("mean", None): " / N",
               ("sum", "mean"): " / C"}.get((implied.batch, implied.outputs), "")
    return f"for this loss {LOSSES[spec.name].gradient_formula}{divisor}"


# ---------------------------------------------------------------- batch-dimension mistakes


def _batch_findings(findings, flat, names, layers, traces, scale, n, rtol, atol):
    """The findings, with the cause named where a layer's gradients are a batch-dimension mistake."""
    if traces is None:
        return findings
    wrong_tensors = {f.tensor for f in findings if f.tensor}
    wrong_layers = [i for i, layer in enumerate(layers) if f"{layer.name}.weight" in wrong_tensors]
    if not wrong_layers:
        return findings
    start = wrong_layers[-1]
    expected = batch.summed_first(traces[start], scale)
    if expected is None:
        return findings
    k = batch.fitted_scale((flat[2 * start], flat[2 * start + 1]), expected, rtol, atol)
    if k is None:
        return findings
    layer = layers[start].name
    if _same(k, 1.0):
        how, short = "sums dL/da over the batch", "summed over the batch before f'(z)"
    elif n > 1 and _same(k, 1 / n):
        how, short = "averages dL/da over the batch", "averaged over the batch before f'(z)"
    else:
        how, short = f"sums dL/da over the batch (then scales by {k:.6g})", "summed over the batch before f'(z)"
    if start == len(layers) - 1:
        after = " It is the output layer: the loss gradient itself lost its batch dimension."
    else:
        after = f" The layers after {layer} match."
    if start > 0:
        after += " The layers before it are wrong because the wrong gradient flows on into them."
    finding = Finding(
        "summed_before_derivative",
        f"{layer}'s gradients are exactly those of a backward pass that {how} before multiplying by the "
        "activation derivative: (dL/da).sum(0) * f'(z) gives every example the batch's total instead of its "
        "own gradient. Keep one row per example until the layer's own gradients: dL/dz = dL/da * f'(z) row "
        "by row, then dW = dL/dz.T @ a_prev and db = dL/dz.sum(dim=0); to carry the gradient back use "
        "dL/dz @ W, not the already summed db @ W." + after,
        short,
        layer=layer,
        factor=None if _same(k, 1.0) else k,
    )
    per_tensor = []
    for f in findings:
        if f.tensor is None:
            continue
        owner = f.tensor.rsplit(".", 1)[0]
        if owner == layer:
            f = Finding("summed_before_derivative", f.message, short, tensor=f.tensor, layer=layer)
        elif owner in {l.name for l in layers[:start]} and f.kind == "no_pattern":
            f = Finding("follows", f.message, f"follows from {layer}", tensor=f.tensor, layer=owner)
        per_tensor.append(f)
    return [finding] + per_tensor


# ---------------------------------------------------------------- what it should only read


def _side_effects(network, snapshot, layers, names, flat, where, y, y_pred, rtol, atol):
    effects = []
    gradient_of = dict(zip(names, flat))
    changed = changed_parameters(network, snapshot)
    if changed:
        effects.append(_parameters_finding(changed, gradient_of))
    if where != ".grad of each parameter":
        touched = [
            name for name in changed_grads(network, snapshot)
            if not _grad_equals(network, name, gradient_of.get(name), rtol, atol)
        ]
        if touched:
            effects.append(Finding(
                "changes_grad",
                f"backward changed .grad of {_listing(touched)} although its gradients are read from {where}, "
                "and not to those gradients; a backward pass that stores its results elsewhere should leave "
                ".grad as it found it (a training step reading .grad would use these values).",
                "changes .grad",
            ))
    for label, tensor in (("y_pred", y_pred), ("y_true", y)):
        before = snapshot.inputs[label]
        if tensor.shape != before.shape or not torch.equal(tensor, before):
            largest = (tensor - before).abs().max().item() if tensor.shape == before.shape else float("nan")
            effects.append(Finding(
                "changes_inputs",
                f"backward changed {label} in place (largest change {largest:.3g}). {label} is an input it "
                "should only read; y_pred is also the network's output, and often its own cache of it "
                "(the last activation), so code that runs after backward sees the changed values. Build the "
                "loss gradient in a new tensor: 2 * (y_pred - y_true), not y_pred -= y_true.",
                f"changes {label}",
            ))
    return tuple(effects)


def _grad_equals(network, name, gradient, rtol, atol):
    grad = dict(network.named_parameters())[name].grad
    return grad is not None and gradient is not None and grad.shape == gradient.shape and is_close(
        grad.double(), gradient, rtol, atol
    )


def _listing(names, limit=6):
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _parameters_finding(changed, gradient_of) -> Finding:
    largest = max(
        (after - before).abs().max().item() if after is not None and after.shape == before.shape else float("inf")
        for _, before, after in changed
    )
    names = [name for name, _, _ in changed]
    step = _learning_rate(changed, gradient_of)
    stepped = (
        f" Every change is -{step:.3g} x the gradient it computed: a gradient-descent step with learning rate "
        f"{step:.3g}, taken inside backward."
        if step is not None else ""
    )
    return Finding(
        "changes_parameters",
        f"backward changed the parameters {_listing(names)} (largest change {largest:.3g}).{stepped} A backward "
        "pass computes gradients and leaves the model as it found it: the update belongs to the training step "
        "(optimizer.step() or your update function), which would otherwise move the weights a second time, and "
        "a gradient check run after such a backward compares with gradients at weights that have moved. The "
        "gradients checked here were computed before the change.",
        "changes the parameters",
    )


def _learning_rate(changed, gradient_of):
    """The η with after = before - η·gradient for every changed tensor, or None."""
    rates = []
    for name, before, after in changed:
        gradient = gradient_of.get(name)
        if after is None or gradient is None or gradient.shape != before.shape:
            return None
        step = (before - after).double()
        scale = gradient.abs().max()
        if scale == 0:
            return None
        voters = gradient.abs() >= 1e-3 * scale
        rate = (step[voters] / gradient[voters]).median().item()
        rounding = 8 * torch.finfo(torch.float64).eps * before.abs().max().item()
        if rate <= 0 or not ((step - rate * gradient).abs() <= 1e-6 * (rate * gradient).abs() + rounding).all():
            return None
        rates.append(rate)
    if all(abs(rate - rates[0]) <= 1e-6 * rates[0] for rate in rates):
        return rates[0]
    return None
