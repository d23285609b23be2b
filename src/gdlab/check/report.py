"""What a check found, as data (`CheckReport`) and as text a student can act on."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from gdlab.check.compare import TOLERANCE_EPS


@dataclass(frozen=True)
class Divergence:
    """Where the function first parts from torch.

    ``step`` counts from 1 over the whole run; ``epoch`` and ``iteration``
    (both from 1) place it in the loops. ``parameter`` is the first parameter
    (in ``model.named_parameters()`` order) beyond the tolerance, or None
    when the problem is not one parameter's (a missing step, say).
    ``relative_difference`` is the check's measure r for that parameter
    (see `gdlab.check.compare`); ``update_error`` is
    ``||your update - torch's|| / ||torch's update||``, the same difference
    as a fraction of the step torch took.
    """

    step: int
    epoch: int
    iteration: int
    parameter: str | None
    relative_difference: float = float("nan")
    update_error: float = float("nan")
    max_abs_difference: float = float("nan")


@dataclass(frozen=True)
class CheckReport:
    """The verdict on one training function against one torch rule.

    ``passed`` is True when every step matched torch's to rounding and the
    function took exactly ``steps_expected`` steps; otherwise
    ``first_divergence`` says where it first parted from torch and
    ``likely_cause`` why. ``max_relative_difference``
    is the largest r over all parameters and steps compared; ``tolerance`` is
    the r a step may reach and still pass.
    """

    function: str
    reference: str
    hparams: dict[str, float | bool]
    call: str
    problem: str
    dtype: torch.dtype
    epochs: int
    steps_expected: int
    steps_taken: int
    max_relative_difference: float
    tolerance: float
    first_divergence: Divergence | None = None
    likely_cause: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        return self.first_divergence is None

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def verdict(self) -> str:
        """One line: PASS with the largest difference, or FAIL with where it first parts from torch."""
        if self.passed:
            eps = torch.finfo(self.dtype).eps
            return (
                f"PASS  all {self.steps_taken} steps match torch to rounding: largest relative difference "
                f"{self.max_relative_difference:.3g} = {self.max_relative_difference / eps:.2g} eps "
                f"(a step passes up to {TOLERANCE_EPS} eps)"
            )
        where = self.first_divergence
        place = f"step {where.step} (epoch {where.epoch}, iteration {where.iteration})"
        if where.parameter is None:
            return f"FAIL  first difference at {place}"
        return f"FAIL  first difference at {place}, parameter {where.parameter}"

    def setup_rows(self) -> list[tuple[str, str]]:
        """What was run, as (label, text) rows."""
        return [
            ("checked", self.function),
            ("against", self.reference),
            ("called as", self.call),
            ("on", f"{self.problem}; {self.epochs} epochs = {self.steps_expected} steps"),
        ]

    def finding_rows(self) -> list[tuple[str, str]]:
        """Below the verdict, as (label, text) rows: the numbers at the first difference, the cause, notes."""
        rows = []
        where = self.first_divergence
        if where is not None and not math.isnan(where.relative_difference):
            eps = torch.finfo(self.dtype).eps
            rows.append((
                "difference",
                f"{where.max_abs_difference:.3g} at most; relative {where.relative_difference:.3g} = "
                f"{where.relative_difference / eps:.3g} eps (a step passes up to {TOLERANCE_EPS} eps)",
            ))
            rows.append(("your update", f"differs from torch's by {100 * where.update_error:.3g}% of its size"))
        if self.likely_cause is not None:
            rows.append(("likely cause", self.likely_cause))
        rows += [("note", note) for note in self.notes]
        return rows

    def render(self) -> str:
        """The report as plain text: what ran, the verdict, and on failure the numbers and the likely cause."""
        setup = [f"  {label:<13}{text}" for label, text in self.setup_rows()]
        findings = [f"  {label:<13}{text}" for label, text in self.finding_rows()]
        return "\n".join([*setup, "", self.verdict(), *findings])
