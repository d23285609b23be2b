"""What a check found, as data (`CheckReport`), as text a student can act on, and as JSON for grading.

``gdlab check --json`` prints `CheckReport.to_json` (or `cannot_check_json`
for code that cannot be checked): one object whose keys are stable, with
the exit status beside it: 0 pass, 1 fail, 2 cannot check.

    verdict    "pass" | "fail" | "cannot_check"
    step       the first step (from 1) where the code parts from the reference, or null
    epoch, iteration   where that step is in the loops, or null
    parameter  the first parameter beyond the tolerance at that step, or null
    cause      what the code does there (the known mistake or variant), or why it cannot be checked
    kind       "bug" | "variant" | "none" (none: passed, or no known pattern, or cannot check)
    evidence   how the cause was established ("this matches all 19 of your steps from step 2 on"), or null
    hint       where to look in the code, or null
    function, entry, against, reference, hparams, dtype, dtype_reason, call, read, steps_expected,
    steps_taken, max_relative_difference, tolerance, notes, exit_code
    criterion  the tolerance in words; ``tolerance`` is its number, ``measured`` the largest
               relative difference found (= max_relative_difference)

The keys verdict, kind, cause, evidence, criterion, tolerance and measured mean what they mean
in every comparison gdlab makes (`gdlab.comparison`): ``gdlab.gradcheck``'s and ``gdlab
verify``'s JSON hold them too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from gdlab.check.compare import TOLERANCE_EPS
from gdlab.comparison import Comparison, Tolerance, Verdict


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
    ``likely_cause`` why (the ``cause`` with its ``evidence`` and ``hint``),
    ``kind`` whether that is a ``"bug"`` or a known ``"variant"``.
    ``entry`` is what was checked: a training function, an update function
    or an Optimizer class. ``max_relative_difference``
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
    entry: str = "training function"
    against: str = ""
    chosen_because: str = ""
    bound: tuple[str, ...] = field(default_factory=tuple)
    cause: str | None = None
    kind: str = "none"
    evidence: str | None = None
    hint: str = ""
    dtype_reason: str = ""

    @property
    def passed(self) -> bool:
        return self.first_divergence is None

    @property
    def exit_code(self) -> int:
        return self.comparison.exit_code

    @property
    def comparison(self) -> Comparison:
        """The verdict in the words every gdlab comparison shares (`gdlab.comparison`); its
        tolerance is the one `gdlab.check.compare` derives, in words and as ``tolerance``."""
        dtype = str(self.dtype).removeprefix("torch.")
        stated = Tolerance(
            f"every step within {TOLERANCE_EPS} eps of the parameter and update sizes: "
            f"||yours - torch's|| <= {self.tolerance:.3g} (||p|| + ||update||), {dtype}",
            self.tolerance,
        )
        return Comparison(
            verdict=Verdict.PASS if self.passed else Verdict.FAIL,
            kind=self.kind,
            cause=self.cause,
            evidence=self.evidence,
            tolerance=stated,
            measured=self.max_relative_difference,
        )

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
        rows = [
            ("checked", self.function if self.entry == "training function" else f"{self.function}, an {self.entry}"),
            ("against", self.reference + (f" ({self.chosen_because})" if self.chosen_because else "")),
            ("called as", self.call),
        ]
        if self.bound:
            rows.append(("read", ", ".join(self.bound)))
        rows.append(("on", f"{self.problem}; {self.epochs} epochs = {self.steps_expected} steps"))
        return rows

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

    def to_json(self) -> dict:
        """The report as one JSON-ready object (the keys are listed in the module docstring)."""
        where = self.first_divergence
        shared = self.comparison.to_json()
        return {
            "verdict": shared["verdict"],
            "step": where.step if where else None,
            "epoch": where.epoch if where else None,
            "iteration": where.iteration if where else None,
            "parameter": where.parameter if where else None,
            "cause": shared["cause"],
            "kind": shared["kind"],
            "evidence": shared["evidence"],
            "hint": self.hint or None,
            "function": self.function,
            "entry": self.entry,
            "against": self.against,
            "reference": self.reference,
            "hparams": {name: list(value) if isinstance(value, tuple) else value for name, value in self.hparams.items()},
            "dtype": str(self.dtype).removeprefix("torch."),
            "dtype_reason": self.dtype_reason or None,
            "call": self.call,
            "read": list(self.bound),
            "steps_expected": self.steps_expected,
            "steps_taken": self.steps_taken,
            "max_relative_difference": shared["measured"],
            "criterion": shared["criterion"],
            "tolerance": shared["tolerance"],
            "measured": shared["measured"],
            "notes": list(self.notes),
            "exit_code": self.exit_code,
        }

    def render(self) -> str:
        """The report as plain text: what ran, the verdict, and on failure the numbers and the likely cause."""
        setup = [f"  {label:<13}{text}" for label, text in self.setup_rows()]
        findings = [f"  {label:<13}{text}" for label, text in self.finding_rows()]
        return "\n".join([*setup, "", self.verdict(), *findings])


def cannot_check_json(message: str) -> dict:
    """The JSON object for code that could not be checked (exit status 2): nothing compared, so no
    tolerance and nothing measured."""
    shared = Comparison(Verdict.CANNOT_CHECK, cause=message)
    return {
        **shared.to_json(), "step": None, "epoch": None, "iteration": None, "parameter": None, "hint": None,
        "exit_code": shared.exit_code,
    }
