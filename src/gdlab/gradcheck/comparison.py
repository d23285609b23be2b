"""Element-wise comparison of an analytic gradient with a reference gradient.

An element passes when |a - r| <= atol + rtol·|r| (as ``torch.allclose``).
The reported relative error uses the same scale,

    rel = |a - r| / (|r| + atol/rtol),

so it stays finite where r = 0, and a tensor passes exactly when its
largest ``rel`` is at most ``rtol``. Errors are computed in float64.
"""

from dataclasses import dataclass

import torch

from gdlab.errors import GdlabError

# float64 against finite differences (error ~1e-10 for O(1) losses) or autograd.
FLOAT64_TOLERANCES = (1e-5, 1e-8)
# Anything less precise: float32 rounding alone gives relative errors of ~1e-5
# on elements that are small because of cancellation.
LOW_PRECISION_TOLERANCES = (1e-3, 1e-5)


@dataclass(frozen=True)
class TensorComparison:
    name: str
    shape: tuple
    reference_shape: tuple
    max_abs_error: float
    max_rel_error: float
    reference_max: float  # largest |r|: the scale the errors are measured against
    ok: bool


def resolve_tolerances(analytic, reference, rtol, atol) -> tuple[float, float]:
    tensors = list(analytic) + list(reference)
    everything_float64 = all(t.dtype == torch.float64 for t in tensors)
    default_rtol, default_atol = FLOAT64_TOLERANCES if everything_float64 else LOW_PRECISION_TOLERANCES
    rtol = default_rtol if rtol is None else float(rtol)
    atol = default_atol if atol is None else float(atol)
    if not rtol > 0 or not atol >= 0:
        raise GdlabError(
            f"gradient comparison needs rtol > 0 and atol >= 0, got rtol={rtol!r}, atol={atol!r}"
        )
    return rtol, atol


def is_close(analytic: torch.Tensor, reference: torch.Tensor, rtol: float, atol: float) -> bool:
    if analytic.shape != reference.shape:
        return False
    difference = (analytic.double() - reference.double()).abs()
    return bool((difference <= atol + rtol * reference.double().abs()).all())


def compare_tensor(name, analytic, reference, rtol, atol) -> TensorComparison:
    reference_max = reference.double().abs().max().item() if reference.numel() else 0.0
    if analytic.shape != reference.shape:
        return TensorComparison(
            name, tuple(analytic.shape), tuple(reference.shape), float("inf"), float("inf"), reference_max, False
        )
    difference = (analytic.double() - reference.double()).abs()
    if difference.numel() == 0:
        return TensorComparison(name, tuple(analytic.shape), tuple(reference.shape), 0.0, 0.0, 0.0, True)
    relative = difference / (reference.double().abs() + atol / rtol)
    return TensorComparison(
        name=name,
        shape=tuple(analytic.shape),
        reference_shape=tuple(reference.shape),
        max_abs_error=difference.max().item(),
        max_rel_error=relative.max().item(),
        reference_max=reference_max,
        ok=is_close(analytic, reference, rtol, atol),
    )


def as_named_tensors(analytic, reference, names, where: str):
    """Flatten both gradient lists to tensors and pair them with names.

    Either list may hold tensors or ``(dL_dW, dL_db)`` pairs (what
    ``gdlab.backprop.MLP.backward`` returns); pairs get the default names
    ``layers.{i}.weight`` / ``layers.{i}.bias`` of ``gdlab.models.MLP``.
    """
    flat_analytic, default_names = _flatten(analytic, "analytic", where)
    flat_reference, reference_names = _flatten(reference, "reference", where)
    if len(flat_analytic) != len(flat_reference):
        raise GdlabError(
            f"{where}: the analytic gradients hold {len(flat_analytic)} tensors but the reference "
            f"holds {len(flat_reference)}; give one gradient per parameter, in the same order "
            "(for an MLP: one (dL_dW, dL_db) pair per layer)"
        )
    if names is None:
        names = default_names if any("." in name for name in default_names) else reference_names
    names = [str(name) for name in names]
    if len(names) != len(flat_analytic):
        raise GdlabError(
            f"{where}: got {len(names)} names for {len(flat_analytic)} tensors; give one name per tensor"
        )
    return flat_analytic, flat_reference, names


def _flatten(gradients, label, where):
    if isinstance(gradients, torch.Tensor):
        gradients = [gradients]
    tensors, names = [], []
    for index, item in enumerate(gradients):
        if isinstance(item, (tuple, list)):
            if len(item) != 2:
                raise GdlabError(
                    f"{where}: {label} gradient {index} is a sequence of {len(item)} items; "
                    "give tensors, or (dL_dW, dL_db) pairs"
                )
            tensors.extend(item)
            names.extend([f"layers.{index}.weight", f"layers.{index}.bias"])
        else:
            tensors.append(item)
            names.append(f"tensor {index}")
    for name, tensor in zip(names, tensors):
        if not isinstance(tensor, torch.Tensor):
            raise GdlabError(
                f"{where}: {label} gradient {name} is {type(tensor).__name__}, not a tensor; "
                "was it never computed or stored?"
            )
    return tensors, names
