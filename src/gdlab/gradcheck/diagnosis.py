"""Say what kind of mistake makes an analytic gradient differ from the reference.

Per tensor, in this order (the first that fits wins):

- ``not_finite``     it holds NaN or inf;
- ``not_summed_over_batch`` it has one row per example, shape (N, *parameter shape): a bias
  gradient that was never summed over the batch;
- ``shape_mismatch`` its shape is not the parameter's (a transposed 2-D shape is ``transposed``);
- ``all_zero``       it is all zeros while the reference is not;
- a constant factor c, with a = c·r within the tolerances. c is the median of
  a_i / r_i over the elements whose |r_i| is at least 1e-3 of the largest, so
  a few elements near zero cannot sway it. c is then named, when it is a
  product of ±1, 2^(±1) and (batch size | outputs | batch size · outputs)^(±1):
  ``missing_mean`` (N, C or N·C, over what the loss averages), ``extra_mean`` (their inverses),
  ``factor_of_two`` (2 or 1/2), ``sign_flipped`` (-1); other products and
  unnamed factors are ``constant_factor``;
- ``transposed``     a square gradient equal to the reference transposed (or a multiple of it);
- ``no_pattern``     none of these, reported with its errors.

Across tensors named ``<layer>.<parameter>`` (in forward order):

- every tensor off by the same factor: one finding of that kind with ``tensor=None``;
- ``one_layer``      a single layer wrong while the others match (``layer`` names it);
- ``bias_gradient``  only bias gradients wrong, in several layers: dL/dz is right everywhere;
- ``backward_flow``  the last layers match and everything from layer k down is
  wrong: the gradient carried back into layer k is wrong (``layer`` = k);
- ``loss_gradient``  every tensor wrong, with no common factor.
"""

import itertools
from dataclasses import dataclass

import torch

from gdlab.backprop.losses import LOSSES, MEAN_OVER_ENTRIES
from gdlab.gradcheck.comparison import as_named_tensors, is_close, resolve_tolerances

# Elements whose reference is below this fraction of the largest do not vote on the factor.
FACTOR_VOTE_FLOOR = 1e-3
# How close an estimated factor must be to N, 2, -1, ... to be called by that name.
FACTOR_NAME_RTOL = 1e-4
FACTOR_KINDS = {"missing_mean", "extra_mean", "factor_of_two", "sign_flipped", "constant_factor"}


@dataclass(frozen=True)
class Finding:
    kind: str
    message: str  # what is wrong and what to do, in full
    summary: str  # a few words for a table cell
    tensor: str | None = None  # None: a finding about several tensors
    layer: str | None = None
    factor: float | None = None


def diagnose(
    analytic, reference, names=None, batch_size=None, output_size=None, rtol=None, atol=None,
    averaged=("batch", "outputs"), loss_hint=None,
):
    """Findings for every tensor where ``analytic`` and ``reference`` disagree, then across layers.

    ``batch_size`` (N) and ``output_size`` (C, outputs per example; give it for
    a loss averaged over all N·C outputs such as mse) let a constant factor be
    named as a missing or extra mean. ``averaged`` says over which of "batch"
    and "outputs" the loss averages: only there can a mean be missing (a
    summed loss has none to miss). ``loss_hint`` is the loss gradient spelled
    out for the advice when every layer is wrong. Tolerances as in ``compare``.
    """
    analytic, reference, names = as_named_tensors(analytic, reference, names, "diagnose")
    rtol, atol = resolve_tolerances(analytic, reference, rtol, atol)
    counts = _mean_factors(batch_size, output_size, averaged)
    findings = {}
    for name, a, r in zip(names, analytic, reference):
        if not is_close(a, r, rtol, atol):
            findings[name] = _diagnose_tensor(name, a, r, rtol, atol, counts)
    across = _across_tensors(names, findings, counts, loss_hint or DEFAULT_LOSS_HINT)
    return across + list(findings.values())


def _diagnose_tensor(name, a, r, rtol, atol, counts) -> Finding:
    a, r = a.double(), r.double()
    if not torch.isfinite(a).all():
        return Finding(
            "not_finite",
            f"{name} contains NaN or inf. Look for exp() of large values (use a stable softmax: "
            "subtract each row's maximum first) or a division by zero.",
            "NaN or inf",
            tensor=name,
        )
    if a.shape != r.shape:
        if a.dim() == r.dim() + 1 and a.shape[1:] == r.shape and a.shape[0] > 1:
            return _not_summed(name, a, r, rtol, atol, counts)
        if a.dim() == 2 and r.dim() == 2 and a.shape == r.T.shape:
            return _transposed(name, a.T, r, rtol, atol, counts)
        return _shape_mismatch(name, a, r, rtol, atol, counts)
    if (a == 0).all() and (r != 0).any():
        return Finding(
            "all_zero",
            f"{name} is all zeros but the reference is not (largest |reference| "
            f"{r.abs().max().item():.3g}). It was never filled in, or filled into the wrong layer's "
            "slot (check the layer index), or zeroed after it was computed.",
            "all zeros",
            tensor=name,
        )
    factor = _fitted_factor(a, r, rtol, atol)
    if factor is not None:
        return _factor_finding(name, factor, counts)
    square = a.dim() == 2 and a.shape[0] == a.shape[1]
    if square and (is_close(a.T, r, rtol, atol) or _fitted_factor(a.T, r, rtol, atol) is not None):
        return _transposed(name, a.T, r, rtol, atol, counts)
    difference = (a - r).abs()
    relative = difference / (r.abs() + atol / rtol)
    return Finding(
        "no_pattern",
        f"{name} differs from the reference with no simple pattern (not a constant factor, sign "
        f"flip or transpose): max abs error {difference.max().item():.3g}, max rel error "
        f"{relative.max().item():.3g}, largest |reference| {r.abs().max().item():.3g}. "
        "Work one entry out by hand, and check the activation derivative feeding this layer.",
        "different, no simple pattern",
        tensor=name,
    )


def _fitted_factor(a, r, rtol, atol):
    """c with a = c·r within the tolerances, or None. c = 1 counts as no fit."""
    scale = r.abs().max()
    if scale == 0:
        return None
    voters = r.abs() >= FACTOR_VOTE_FLOOR * scale
    factor = (a[voters] / r[voters]).median().item()
    if factor == 0 or abs(factor - 1) <= rtol:
        return None
    fits = ((a - factor * r).abs() <= abs(factor) * atol + rtol * (factor * r).abs()).all()
    return factor if fits else None


def _transposed(name, a_transposed, r, rtol, atol, counts) -> Finding:
    advice = (
        "A weight of shape (out, in) needs the gradient dL/dz.T @ a_prev, shaped (out, in) "
        "like the weight, not a_prev.T @ dL/dz."
    )
    if is_close(a_transposed, r, rtol, atol):
        return Finding(
            "transposed", f"{name} equals the reference transposed. {advice}", "transposed", tensor=name
        )
    factor = _fitted_factor(a_transposed, r, rtol, atol)
    if factor is None:
        return Finding(
            "transposed",
            f"{name} has the transposed shape {tuple(r.T.shape)} of the parameter "
            f"{tuple(r.shape)}, and its values differ even after transposing. {advice}",
            "transposed shape, values differ",
            tensor=name,
        )
    scaled = _factor_finding(name, factor, counts)
    return Finding(
        "transposed",
        f"{name} equals the reference transposed and scaled by {factor:.6g}. {advice} "
        f"Then the factor: {scaled.message}",
        f"transposed, {scaled.summary}",
        tensor=name,
        factor=factor,
    )


def _not_summed(name, a, r, rtol, atol, counts) -> Finding:
    rows = a.shape[0]
    head = (
        f"{name} has shape {tuple(a.shape)}, one row per example, where the parameter has shape "
        f"{tuple(r.shape)}: it was never summed over the batch. A bias gradient is dL/dz.sum(dim=0)"
    )
    summed = a.sum(dim=0)
    if is_close(summed, r, rtol, atol):
        return Finding(
            "not_summed_over_batch", f"{head}; summed over dim 0 it is right.", "not summed over the batch",
            tensor=name,
        )
    factor = _fitted_factor(summed, r, rtol, atol)
    if factor is not None:
        scaled = _factor_finding(name, factor, counts)
        return Finding(
            "not_summed_over_batch",
            f"{head}; summed over dim 0 it is still off: {scaled.message}",
            f"not summed over the batch; {scaled.summary}",
            tensor=name,
            factor=factor,
        )
    return Finding(
        "not_summed_over_batch",
        f"{head}; summed over dim 0 it still differs (the {rows} rows hold something else than dL/dz).",
        "not summed over the batch, values differ",
        tensor=name,
    )


def _shape_mismatch(name, a, r, rtol, atol, counts) -> Finding:
    head = (
        f"{name} has shape {tuple(a.shape)} but the parameter has shape {tuple(r.shape)}; a "
        "gradient must be shaped like its parameter (a bias gradient is dL/dz.sum(dim=0), without keepdim)."
    )
    if a.numel() != r.numel():
        return Finding("shape_mismatch", head, "wrong shape", tensor=name)
    reshaped = a.reshape(r.shape)
    if is_close(reshaped, r, rtol, atol):
        return Finding(
            "shape_mismatch", f"{head} Its values are right once reshaped.", "wrong shape, right values", tensor=name
        )
    inner = _diagnose_tensor(name, reshaped, r, rtol, atol, counts)
    return Finding(
        "shape_mismatch",
        f"{head} Reshaped, its values are still wrong: {inner.message}",
        f"wrong shape; {inner.summary}",
        tensor=name,
        factor=inner.factor,
    )


def _mean_factors(batch_size, output_size, averaged=("batch", "outputs")):
    """(value, what it divides over, what the value is, whether the loss averages there) per count."""
    counts = []
    n = int(batch_size) if batch_size else 1
    c = int(output_size) if output_size else 1
    averaged = set(averaged or ())
    if n > 1:
        counts.append((n, "batch", "the batch size", "batch" in averaged))
    if c > 1:
        counts.append((c, "outputs", "the number of outputs per example", "outputs" in averaged))
    if n > 1 and c > 1:
        counts.append((n * c, "elements", f"the number of elements of y_pred ({n} x {c})",
                       {"batch", "outputs"} <= averaged))
    return counts


_MISSING_MEAN_ADVICE = {
    "batch": "the gradient is summed over the batch where the loss averages over it: a missing mean "
    "over the batch. Divide the loss gradient by the batch size once, where backward starts.",
    "outputs": "the loss averages over all N x C elements of y_pred (as F.mse_loss does) but the "
    "gradient is divided by the batch size only: a missing mean over the outputs. Divide the loss "
    "gradient by y_pred.numel() instead.",
    "elements": "the loss averages over all of them (as F.mse_loss does), so its gradient is "
    "2 (y_pred - y_true) / y_pred.numel(); that division is missing: a missing mean. Divide there; "
    "scaling the update down instead (a tiny learning rate or a fudge factor) only hides it.",
}
_EXTRA_MEAN_ADVICE = (
    "the gradient is divided by it once too often: an extra mean. The loss's own mean, if it has one, "
    "enters once, in the loss gradient where backward starts; dW = dL/dz.T @ a_prev and "
    "db = dL/dz.sum(dim=0) must stay sums over the batch."
)
_TWO_ADVICE = {
    0.5: "the factor 2 of the squared error's derivative is missing: the mse derivative is "
    "2 (y - t), not (y - t).",
    2.0: "an extra factor 2: for example the mse derivative 2 (y - t) used for a loss written "
    "(1/2)(y - t)^2 (whose derivative is (y - t)), or the 2 applied twice.",
}
_SIGN_ADVICE = (
    "the sign is flipped: the loss gradient starts from y_pred - y_true, not y_true - y_pred; "
    "a descent step with this gradient climbs the loss."
)
_LABELS = {
    "missing_mean": "missing mean",
    "extra_mean": "extra mean",
    "factor_of_two": "factor 2",
    "sign_flipped": "sign flipped",
}


def _explanations(factor, counts):
    """The simplest products of known causes equal to ``factor``, each a list of (kind, text)."""
    count_options = [(1, [])]
    for value, over, what, averages in counts:
        if averages:
            count_options.append((value, [("missing_mean", f"{value} is {what}: {_MISSING_MEAN_ADVICE[over]}")]))
        count_options.append((1 / value, [("extra_mean", f"1/{value}: {value} is {what} and {_EXTRA_MEAN_ADVICE}")]))
    two_options = [(1, [])] + [(value, [("factor_of_two", text)]) for value, text in _TWO_ADVICE.items()]
    sign_options = [(1, []), (-1, [("sign_flipped", _SIGN_ADVICE)])]
    matches = []
    for (sign, sign_parts), (two, two_parts), (count, count_parts) in itertools.product(
        sign_options, two_options, count_options
    ):
        value = sign * two * count
        parts = sign_parts + two_parts + count_parts
        if parts and abs(factor - value) <= FACTOR_NAME_RTOL * abs(value):
            matches.append(parts)
    if not matches:
        return []
    fewest = min(len(parts) for parts in matches)
    return [parts for parts in matches if len(parts) == fewest]


def _factor_reading(factor, counts):
    """(kind, size, explanation, summary) of a constant factor a = factor x reference."""
    if factor < 0:
        size = f"{abs(factor):.6g} x the reference with the opposite sign"
    elif factor > 1:
        size = f"{factor:.6g} times too large"
    else:
        size = f"{1 / factor:.6g} times too small"
    explanations = _explanations(factor, counts)
    if not explanations:
        explanation = (
            "Every element is off by the same factor, so something scales the whole gradient (a "
            "learning rate or fudge factor mixed into it, or a wrong normalization): find where that "
            "factor enters and remove it."
        )
        return "constant_factor", size, explanation, f"x {_short(factor)} (constant factor)"
    kinds = {tuple(kind for kind, _ in parts) for parts in explanations}
    single = len(kinds) == 1 and len(next(iter(kinds))) == 1
    kind = next(iter(kinds))[0] if single else "constant_factor"
    readings = [" And ".join(text[0].upper() + text[1:] for _, text in parts) for parts in explanations]
    summary = " or ".join(" + ".join(_LABELS[kind] for kind, _ in parts) for parts in explanations)
    return kind, size, " Or: ".join(readings), f"x {_short(factor)} ({summary})"


def _short(factor):
    """1/12 rather than 0.08333 when a factor is one over a whole number."""
    inverse = 1 / factor
    if abs(factor) < 1 and abs(inverse - round(inverse)) <= FACTOR_NAME_RTOL * abs(inverse):
        return f"{'-' if factor < 0 else ''}1/{abs(round(inverse))}"
    return f"{factor:.4g}"


def _factor_finding(name, factor, counts) -> Finding:
    kind, size, explanation, summary = _factor_reading(factor, counts)
    return Finding(
        kind, f"{name} is {size} (factor {factor:.6g}). {explanation}", summary, tensor=name, factor=factor
    )


def _layer_of(name):
    return name.rsplit(".", 1)[0] if "." in name else None


# Every declared loss's gradient where backward starts, for its mean reduction.
DEFAULT_LOSS_HINT = "; ".join(
    f"{name}: {loss.gradient_formula} / {'y_pred.numel()' if loss.mean_over == MEAN_OVER_ENTRIES else 'N'}"
    for name, loss in LOSSES.items()
)


def _across_tensors(names, findings, counts, loss_hint=DEFAULT_LOSS_HINT) -> list[Finding]:
    if not findings:
        return []
    common = _common_factor(names, findings, counts)
    if common is not None:
        return [common]
    layers = list(dict.fromkeys(_layer_of(name) for name in names))
    if None in layers or len(layers) < 2:
        return []
    wrong = [layer for layer in layers if any(_layer_of(name) == layer for name in findings)]
    last_wrong = layers.index(wrong[-1])
    if len(wrong) == 1:
        return [_one_layer(wrong[0], layers, findings)]
    if all(name.endswith(".bias") for name in findings) and any(name.endswith(".weight") for name in names):
        listed = ", ".join(wrong)
        return [
            Finding(
                "bias_gradient",
                f"Only bias gradients are wrong, in {listed}; every weight gradient matches, so dL/dz is right "
                "in every layer and the mistake is in how db is made from it: db = dL/dz.sum(dim=0), summed "
                "over the batch and shaped like the bias.",
                "only bias gradients wrong",
            )
        ]
    if wrong == layers[: last_wrong + 1] and last_wrong + 1 < len(layers):
        after = layers[last_wrong + 1]
        return [
            Finding(
                "backward_flow",
                f"The layers from {after} on match, but {wrong[-1]} and every layer before it are wrong: "
                f"the gradient carried back from {after} into {wrong[-1]} is wrong. That step is "
                "dL/dz = (dL/dz_next @ W_next) * f'(z); most often the activation derivative f'(z) is "
                "the culprit: relu' = 1 where z > 0 else 0; sigmoid' = a (1 - a) and tanh' = 1 - a^2 "
                "take this layer's activation a = f(z) itself (applying f to a again is a common slip).",
                f"wrong from {wrong[-1]} down",
                layer=wrong[-1],
            )
        ]
    if len(findings) == len(names):
        return [
            Finding(
                "loss_gradient",
                "Every gradient is wrong, the output layer's too, and not by one common factor: start "
                f"with the loss gradient where backward starts ({loss_hint}), then the output layer's "
                "dW = dL/dz.T @ a_prev and db = dL/dz.sum(dim=0).",
                "every layer wrong",
            )
        ]
    return []


def _common_factor(names, findings, counts):
    if len(names) < 2 or len(findings) != len(names):
        return None
    factors = [finding.factor for finding in findings.values()]
    kinds = {finding.kind for finding in findings.values()}
    if len(kinds) != 1 or not kinds <= FACTOR_KINDS or None in factors:
        return None
    first = factors[0]
    if any(abs(factor - first) > FACTOR_NAME_RTOL * abs(first) for factor in factors):
        return None
    kind, size, explanation, summary = _factor_reading(first, counts)
    return Finding(
        kind,
        f"Every gradient ({len(names)} tensors) is {size} (factor {first:.6g}). {explanation} "
        "As every layer is off by the same factor, look where backward starts: the loss gradient.",
        summary,
        factor=first,
    )


def _one_layer(layer, layers, findings) -> Finding:
    position = layers.index(layer)
    own = [finding for name, finding in findings.items() if _layer_of(name) == layer]
    what = "; ".join(f"{finding.tensor}: {finding.summary}" for finding in own)
    if all(finding.tensor.endswith(".bias") for finding in own):
        where = (
            "Its weight gradient matches, so dL/dz is right there: the mistake is in how its bias gradient "
            "is made from it, db = dL/dz.sum(dim=0)."
        )
    elif position == len(layers) - 1:
        where = (
            "The layers before it match, so the loss gradient reaching it is right: the mistake is in "
            "its own dW = dL/dz.T @ a_prev or db = dL/dz.sum(dim=0)."
        )
    elif position == 0:
        where = (
            "Either its own dW = dL/dz.T @ a_prev (a_prev is the input here) and db, or the gradient "
            f"carried into it from {layers[1]} (dL/dz_next @ W_next times the activation derivative "
            "f'(z)) is wrong."
        )
    else:
        where = (
            "The layers before it match, so the gradient flowing through it is right: the mistake is "
            "in its own dW = dL/dz.T @ a_prev (a_prev is the previous layer's activation) or "
            "db = dL/dz.sum(dim=0)."
        )
    return Finding(
        "one_layer",
        f"Only {layer} is wrong ({what}); the other {len(layers) - 1} layers match. {where}",
        f"only {layer} wrong",
        layer=layer,
        factor=own[0].factor if len(own) == 1 else None,
    )
